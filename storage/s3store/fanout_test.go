package s3store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage/s3store/s3test"
)

// bigInput is larger than the 6 MB payload limit of the local backend (as
// of AWS Lambda), so it travels through the store.
type bigInput struct {
	Seed uint64
	Data []byte
}

// reverse returns its input reversed (as large as the input), after
// writing a digest of it to the job's store under "digests/<index>".
var reverse = fanout.Register("s3store-test.reverse", func(ctx context.Context, in bigInput) ([]byte, error) {
	sum := sha256.Sum256(in.Data)
	key := fmt.Sprintf("digests/%d", fanout.Task(ctx).Index)
	if err := fanout.Store(ctx).Put(ctx, key, sum[:]); err != nil {
		return nil, err
	}
	out := make([]byte, len(in.Data))
	for i, b := range in.Data {
		out[len(out)-1-i] = b
	}
	return out, nil
})

// A job whose inputs and outputs are over the backends' payload limits runs
// with an s3store on versitygw as its store, on the local backend and on
// worker processes that open the store from its URL; the results are right,
// the tasks wrote to the job's store, and the job's own objects are gone
// once it is gathered.
func TestFanoutLargePayloads(t *testing.T) {
	const size = 7 << 20
	for _, tc := range []struct {
		name    string
		backend func() backends.Backend
	}{
		{"local", func() backends.Backend { return local.New(nil) }},
		{"process", func() backends.Backend {
			env := append(s3test.Env(), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
			return process.New(&process.Options{Workers: 2, Env: env})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			st := server.Store(t, "gowren", nil)
			ex := fanout.NewExecutor(tc.backend(), &fanout.Options{
				Store:  st,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			defer ex.Close()
			inputs := make([]bigInput, 3)
			for i := range inputs {
				inputs[i] = bigInput{Seed: uint64(i), Data: randBytes(size+i, uint64(100+i))}
			}
			job, err := fanout.Start(ctx, ex, reverse, inputs)
			if err != nil {
				t.Fatal(err)
			}
			outs, err := job.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i, out := range outs {
				in := inputs[i].Data
				if len(out) != len(in) || out[0] != in[len(in)-1] || !bytes.Equal(out[len(out)-1000:], reversed(in[:1000])) {
					t.Fatalf("output %d: %d bytes, not the input of %d bytes reversed", i, len(out), len(in))
				}
				sum := sha256.Sum256(in)
				got, err := st.Get(ctx, fmt.Sprintf("digests/%d", i))
				if err != nil || !bytes.Equal(got, sum[:]) {
					t.Fatalf("digest the task wrote to fanout.Store: %x, %v; want %x", got, err, sum)
				}
			}
			stats := job.Stats()
			if stats.StoreWrites == 0 {
				t.Errorf("JobStats.StoreWrites = 0: the inputs of %d bytes did not go through the store", size)
			}
			if keys := listKeys(t, st, "jobs/"); len(keys) != 0 {
				t.Fatalf("objects of the job left in the store after it was gathered: %q", keys)
			}
			// The job did use the bucket: the objects are gone, not never
			// written. The digests stay: they are the task's own.
			var all []string
			for info, err := range st.List(ctx, "") {
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, info.Key)
			}
			if len(all) != len(inputs) {
				t.Fatalf("objects in the store after the job: %q, want the %d digests", all, len(inputs))
			}
		})
	}
}

func reversed(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[len(b)-1-i] = c
	}
	return out
}
