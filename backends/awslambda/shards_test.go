package awslambda_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/awslambda"
	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
	"github.com/gowren/gowren/backends/awslambda/internal/testfuncs"
	"github.com/gowren/gowren/fanout"
)

// sameHostShards is sameHost for shards: the loopback Lambda's workers run
// on this machine, so a file:// store will do.
type sameHostShards struct{ *awslambda.Shards }

func (s sameHostShards) Limits() backends.Limits {
	l := s.Shards.Limits()
	l.SameHost = true
	return l
}

// lockedBuilder collects log output written from several goroutines.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// createFunctions creates functions on the loopback Lambda through the SDK,
// as a deployment would (the server runs its own worker command for all).
func createFunctions(ctx context.Context, t *testing.T, c *lambda.Client, names ...string) {
	t.Helper()
	code, err := awslambda.Zip([]byte("not run: the loopback Lambda runs its worker command"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String(name), Runtime: awslambda.Runtime, Handler: aws.String("bootstrap"),
			Role: aws.String("arn:aws:iam::123456789012:role/gowren"), Code: &types.FunctionCode{ZipFile: code},
		}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
}

func TestOpenShardsURL(t *testing.T) {
	isolateAWS(t, "AKIDTEST", "eu-west-1")
	ctx := context.Background()
	b, err := backends.Open(ctx, "lambda://app:live?shards=3&concurrency=6&timeout=45s&memory=2048&arch=x86_64")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, ok := b.(*awslambda.Shards)
	if !ok {
		t.Fatalf("backends.Open = %T, want *awslambda.Shards", b)
	}
	if _, ok := b.(backends.AsyncBackend); !ok {
		t.Error("shards do not invoke asynchronously")
	}
	// concurrency= is the total: the group and each shard report it.
	if l := s.Limits(); l.Concurrency != 6 || l.Timeout != 45*time.Second || l.MemoryMB != 2048 || l.Platform != backends.PlatformLambdaX86 {
		t.Errorf("Limits = %+v; want concurrency 6 in all, 45s, 2048 MB, x86_64", l)
	}
	var names []string
	for i, m := range s.Members() {
		sb := m.(*awslambda.Backend)
		names = append(names, sb.Function())
		if sb != s.Shards()[i] || m.Limits().Concurrency != 6 {
			t.Errorf("member %d: %v with concurrency %d; want shard %d with the whole 6", i, sb.Function(), m.Limits().Concurrency, i)
		}
	}
	if got := strings.Join(names, " "); got != "app-0:live app-1:live app-2:live" {
		t.Errorf("shards %q, want app-0:live app-1:live app-2:live", got)
	}
	if _, err := awslambda.Open(ctx, "lambda://app?shards=3"); err == nil || !strings.Contains(err.Error(), "OpenShards") {
		t.Errorf("Open of a sharded URL: %v; want an error pointing to OpenShards", err)
	}
	if _, err := awslambda.OpenShards(ctx, "lambda://app"); err == nil || !strings.Contains(err.Error(), "no shards=K") {
		t.Errorf("OpenShards without shards=: %v; want an error saying so", err)
	}
	for _, tc := range []struct{ url, want string }{
		{"lambda://app?shards=0", `shards="0": not a number of functions from 1 to 1000`},
		{"lambda://app?shards=1001", `shards="1001"`},
		{"lambda://app?shards=three", `shards="three"`},
		{"lambda://" + strings.Repeat("f", 62) + "?shards=11", "too long for 11 shards"},
	} {
		if _, err := backends.Open(ctx, tc.url); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v, want an error containing %q", tc.url, err, tc.want)
		}
	}
}

// TestShardsJob runs jobs over lambda://app?shards=3 on the loopback
// Lambda, whose worker processes run the test worker: the invocations
// spread over the three functions; with one shard deleted the job
// finishes on the other two, and the one warning names the missing shard
// and says how to deploy the shards.
func TestShardsJob(t *testing.T) {
	isolateAWS(t, "AKIDTEST", "us-east-1")
	srv := newFake(t, awslambdatest.Options{Function: "app-0", Workers: 3, Concurrency: 100, PendingPolls: -1, Timeout: time.Minute})
	ctx := guard(t, 2*time.Minute)
	c := newClient(t, srv.URL(), nil)
	createFunctions(ctx, t, c, "app-1", "app-2")

	s, err := awslambda.OpenShards(ctx, "lambda://app?shards=3&concurrency=3&timeout=60s&endpoint="+srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check with every shard deployed: %v", err)
	}
	logs := &lockedBuilder{}
	ex := fanout.NewExecutor(sameHostShards{s}, &fanout.Options{Store: fileStore(t), BatchSize: 1,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	defer ex.Close()
	in := make([]int, 30)
	for i := range in {
		in[i] = i * 7
	}
	run := func() {
		t.Helper()
		out, err := fanout.Map(ctx, ex, testfuncs.Noop, in)
		if err != nil {
			t.Fatalf("Map: %v\n%s", err, logs.String())
		}
		for i, v := range out {
			if v != in[i] {
				t.Fatalf("out[%d] = %d, want %d", i, v, in[i])
			}
		}
	}

	run()
	st := srv.Stats()
	for _, fn := range []string{"app-0", "app-1", "app-2"} {
		if st.FunctionInvocations[fn] == 0 {
			t.Errorf("invocations by function %v: none of %s", st.FunctionInvocations, fn)
		}
	}
	if st.Invocations != len(in) || len(st.FunctionInvocations) != 3 {
		t.Errorf("%d invocations over %v; want %d, over the three shards only", st.Invocations, st.FunctionInvocations, len(in))
	}

	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("app-1")}); err != nil {
		t.Fatal(err)
	}
	err = s.Check(ctx)
	if !errors.Is(err, awslambda.ErrFunctionNotFound) || !strings.Contains(err.Error(), `"app-1"`) ||
		strings.Contains(err.Error(), "app-0") || strings.Contains(err.Error(), "app-2") {
		t.Errorf("Check with app-1 deleted: %v; want ErrFunctionNotFound naming app-1 only", err)
	}
	run()
	after := srv.Stats()
	if after.FunctionInvocations["app-1"] != st.FunctionInvocations["app-1"] ||
		after.Invocations-st.Invocations != len(in) {
		t.Errorf("invocations by function %v after %v: want %d more, none of them on the deleted app-1",
			after.FunctionInvocations, st.FunctionInvocations, len(in))
	}
	log := logs.String()
	t.Log(log)
	if n := strings.Count(log, "refuses the job"); n != 1 {
		t.Errorf("%d warnings about a refusing shard, want 1:\n%s", n, log)
	}
	for _, want := range []string{`function \"app-1\" not found`, "gowren deploy lambda -name app -shards 3"} {
		if !strings.Contains(log, want) {
			t.Errorf("the warning lacks %q:\n%s", want, log)
		}
	}
}

// TestStaleShard runs a job over three shards of which one runs another
// build of the program (its function has another signature): that shard's
// worker answers "stale worker", and the job finishes on the other two,
// with one warning naming the stale shard.
func TestStaleShard(t *testing.T) {
	// The stale build: the same function name with other types.
	stale := fanout.NewRegistry()
	fanout.RegisterTo(stale, testfuncs.Noop.Name(), func(_ context.Context, x string) (string, error) { return x, nil })
	current := awslambda.NewHandler(fanout.Handle)
	old := awslambda.NewHandler(stale.Handle)
	srv := newFake(t, awslambdatest.Options{Function: "app-0", Concurrency: 100, PendingPolls: -1, Timeout: time.Minute,
		Handler: handlerFunc(func(ctx context.Context, event []byte) ([]byte, error) {
			lc, ok := lambdacontext.FromContext(ctx)
			if ok && strings.HasSuffix(lc.InvokedFunctionArn, ":function:app-2") {
				return old.Invoke(ctx, event)
			}
			return current.Invoke(ctx, event)
		})})
	ctx := guard(t, 2*time.Minute)
	c := newClient(t, srv.URL(), nil)
	createFunctions(ctx, t, c, "app-1", "app-2")
	s := awslambda.NewShards(c, "app", 3, &awslambda.Options{Concurrency: 3, Timeout: time.Minute})
	logs := &lockedBuilder{}
	ex := fanout.NewExecutor(sameHostShards{s}, &fanout.Options{Store: fileStore(t), BatchSize: 1,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	defer ex.Close()
	in := make([]int, 30)
	for i := range in {
		in[i] = i + 1
	}
	out, err := fanout.Map(ctx, ex, testfuncs.Noop, in)
	if err != nil {
		t.Fatalf("Map: %v\n%s", err, logs.String())
	}
	for i, v := range out {
		if v != in[i] {
			t.Fatalf("out[%d] = %d, want %d", i, v, in[i])
		}
	}
	log := logs.String()
	t.Log(log)
	if n := strings.Count(log, "refuses the job"); n != 1 {
		t.Errorf("%d warnings about a refusing shard, want 1:\n%s", n, log)
	}
	for _, want := range []string{`lambda function \"app-2\"`, "stale worker", "gowren deploy lambda -name app -shards 3"} {
		if !strings.Contains(log, want) {
			t.Errorf("the warning lacks %q:\n%s", want, log)
		}
	}
	if st := srv.Stats(); st.FunctionInvocations["app-2"] == 0 || st.FunctionInvocations["app-0"] == 0 || st.FunctionInvocations["app-1"] == 0 {
		t.Errorf("invocations by function %v: want every shard tried", st.FunctionInvocations)
	}
}

// handlerFunc is an in-process handler of the loopback Lambda.
type handlerFunc func(ctx context.Context, event []byte) ([]byte, error)

func (f handlerFunc) Invoke(ctx context.Context, event []byte) ([]byte, error) { return f(ctx, event) }

// barriers holds the state of the barrier function's meetings, by key.
var barriers sync.Map // string -> *meeting

// meeting is a barrier: all is closed once need tasks have arrived.
type meeting struct {
	mu      sync.Mutex
	arrived int
	all     chan struct{}
}

// barrier returns once need tasks with the same key ("KEY/need") run at
// once, in this process (the loopback Lambda's in-process handler), or
// fails when its context ends first.
var barrier = fanout.Register("awslambda_test.barrier", func(ctx context.Context, key string) (int, error) {
	var need int
	if _, err := fmt.Sscanf(key[strings.LastIndexByte(key, '/')+1:], "%d", &need); err != nil {
		return 0, err
	}
	v, _ := barriers.LoadOrStore(key, &meeting{all: make(chan struct{})})
	m := v.(*meeting)
	m.mu.Lock()
	m.arrived++
	if m.arrived == need {
		close(m.all)
	}
	m.mu.Unlock()
	select {
	case <-m.all:
		return need, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("barrier %s: %d of %d arrived: %w", key, m.arrived, need, ctx.Err())
	}
})

// TestShardsRampApart runs three tasks that only finish when all three run
// at once, over three shards on a loopback Lambda that lets each function
// add one execution environment per hour: one function could run one of
// them at a time, three shards run them side by side.
func TestShardsRampApart(t *testing.T) {
	srv := newFake(t, awslambdatest.Options{Function: "app-0", Concurrency: 100, Ramp: 1, RampWindow: time.Hour,
		PendingPolls: -1, Timeout: time.Minute, Handler: awslambda.NewHandler(fanout.Handle)})
	ctx := guard(t, 2*time.Minute)
	c := newClient(t, srv.URL(), nil)
	createFunctions(ctx, t, c, "app-1", "app-2")
	s := awslambda.NewShards(c, "app", 3, &awslambda.Options{Concurrency: 3, Timeout: time.Minute})
	ex := fanout.NewExecutor(sameHostShards{s}, &fanout.Options{Store: fileStore(t), BatchSize: 1, Logger: slog.New(slog.DiscardHandler)})
	defer ex.Close()
	key := t.Name() + "/3"
	out, err := fanout.Map(ctx, ex, barrier, []string{key, key, key})
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	if out[0] != 3 || out[1] != 3 || out[2] != 3 {
		t.Errorf("out = %v, want [3 3 3]", out)
	}
	st := srv.Stats()
	if len(st.Environments) != 3 || len(st.FunctionInvocations) != 3 {
		t.Errorf("%d environments, invocations by function %v; want one environment for each of the three shards",
			len(st.Environments), st.FunctionInvocations)
	}
}
