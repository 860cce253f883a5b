package awslambda

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"golang.org/x/sync/errgroup"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/multi"
)

// Shards is one job's invocations spread over K identical functions, NAME-0
// ... NAME-(K-1), as `gowren deploy lambda -name NAME -shards K` deploys
// them. Lambda adds at most 1,000 execution environments every 10 seconds
// to each function, and each function scales on its own: K shards ramp up
// K times faster than one function. The account's concurrency limit (per
// region, shared by every function) still caps them together.
//
// Shards is a backends.Group: an executor schedules each shard apart, with
// a window, ramp and throttle accounting of its own. A shard that refuses
// for good (it does not exist, or runs another build of the program, whose
// worker answers "stale worker") is dropped with one warning naming it, and
// the other shards finish the job.
//
// Options.Concurrency is the total for all the shards, not per shard: the
// group reports it as its Limits().Concurrency, and each shard may use all
// of it, so that when some shards are dropped or throttled the others take
// their share. An executor's own Options.Concurrency, when set, replaces
// the total, each shard still taking at most Options.Concurrency. It is
// safe for concurrent use.
type Shards struct {
	name   string
	shards []*Backend
	group  backends.Group
	limits backends.Limits
}

var (
	_ backends.Group        = (*Shards)(nil)
	_ backends.AsyncBackend = (*Shards)(nil)
)

// ShardName returns the name of shard i of the functions named name:
// name-i.
func ShardName(name string, i int) string { return name + shardSuffix(i) }

func shardSuffix(i int) string { return "-" + strconv.Itoa(i) }

// NewShards returns the Shards of the k functions name-0 ... name-(k-1),
// each a Backend made by New(client, ShardName(name, i), opts). It does not
// call Lambda. A nil opts gives the defaults. It panics when k is not
// between 1 and MaxShards.
func NewShards(client *lambda.Client, name string, k int, opts *Options) *Shards {
	if k < 1 || k > MaxShards {
		panic(fmt.Sprintf("awslambda: NewShards with %d shards, want 1 to %d", k, MaxShards))
	}
	s := &Shards{name: name, shards: make([]*Backend, k)}
	members := make([]backends.Backend, k)
	for i := range k {
		b := New(client, ShardName(name, i), opts)
		b.shardOf, b.shardCount = name, k
		s.shards[i], members[i] = b, b
	}
	s.group = multi.New(members...)
	s.limits = s.group.Limits()
	// Every shard reports the whole concurrency, and so does the group:
	// the account's limit is shared, not multiplied.
	s.limits.Concurrency = s.shards[0].limits.Concurrency
	return s
}

// Name returns the functions' common name, NAME of NAME-0 ... NAME-(K-1).
func (s *Shards) Name() string { return s.name }

// Shards returns the shards' backends, shard i at index i.
func (s *Shards) Shards() []*Backend { return append([]*Backend(nil), s.shards...) }

// Members returns the shards' backends, shard i at index i.
func (s *Shards) Members() []backends.Backend { return s.group.Members() }

// Limits reports Lambda's payload limits, the timeout, parallelism, memory
// and platform of the shards, and their total concurrency
// (Options.Concurrency).
func (s *Shards) Limits() backends.Limits { return s.limits }

// Invoke invokes the shards in turn, for callers other than an executor
// (which schedules the shards itself).
func (s *Shards) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	return s.group.Invoke(ctx, payload)
}

// InvokeAsync queues an asynchronous invocation of the shards in turn, for
// callers other than an executor.
func (s *Shards) InvokeAsync(ctx context.Context, payload []byte) error {
	return s.group.(backends.AsyncBackend).InvokeAsync(ctx, payload)
}

// Close closes every shard's Backend.
func (s *Shards) Close() error { return s.group.Close() }

// Check makes a DryRun invocation of every shard (see Backend.Check) and
// returns the errors of those that fail, each naming its function: a
// missing shard is an ErrFunctionNotFound that says how to deploy the
// shards.
func (s *Shards) Check(ctx context.Context) error {
	errs := make([]error, len(s.shards))
	var g errgroup.Group
	g.SetLimit(16)
	for i, b := range s.shards {
		g.Go(func() error {
			errs[i] = b.Check(ctx)
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

// deployHint says how to deploy the function of b: its shards when it is
// one.
func (b *Backend) deployHint() string {
	if b.shardOf != "" {
		return fmt.Sprintf("it is one of the %d shards of %s: deploy them with `gowren deploy lambda -name %s -shards %d -region %s`",
			b.shardCount, b.shardOf, b.shardOf, b.shardCount, b.regionName())
	}
	return fmt.Sprintf("deploy it with `gowren deploy lambda -name %s -region %s`", b.function, b.regionName())
}

// String names the function, and the shards it belongs to, for logs: an
// executor names the member of a group it drops with it.
func (b *Backend) String() string {
	s := fmt.Sprintf("lambda function %q in %s", b.Function(), b.regionName())
	if b.shardOf != "" {
		s += fmt.Sprintf(" (one of the %d shards of %s: if it is missing or runs another build, redeploy them with `gowren deploy lambda -name %s -shards %d`)",
			b.shardCount, b.shardOf, b.shardOf, b.shardCount)
	}
	return s
}
