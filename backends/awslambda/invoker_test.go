package awslambda_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/awslambda"
	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
	"github.com/gowren/gowren/backends/awslambda/internal/testfuncs"
	"github.com/gowren/gowren/fanout"
)

// runChildren runs InvokeChildren once on the loopback Lambda srv, through
// its function fn, and returns its report.
func runChildren(t *testing.T, srv *awslambdatest.Server, fn string, c testfuncs.Children) (testfuncs.ChildrenReport, error) {
	t.Helper()
	b := awslambda.New(newClient(t, srv.URL(), nil), fn, &awslambda.Options{Concurrency: 1, Timeout: time.Minute})
	ex := fanout.NewExecutor(sameHost{b}, &fanout.Options{Store: fileStore(t), Concurrency: 1})
	defer ex.Close()
	out, err := fanout.Map(guard(t, 2*time.Minute), ex, testfuncs.InvokeChildren, []testfuncs.Children{c})
	if len(out) != 1 {
		t.Fatalf("Map returned %d results: %v", len(out), err)
	}
	return out[0], err
}

// A worker of the real binary, served by the loopback Lambda's worker
// processes, finds in its handler's context a backend of its own function
// (backends.InvokerOf), which runs a nested gowren job on that function
// through the loopback Lambda, signed with the role's credentials Lambda
// puts in the worker's environment, and queues asynchronous invocations.
func TestWorkerInvokesItsFunction(t *testing.T) {
	events := make(chan awslambdatest.EventResult, 4)
	srv := newFake(t, awslambdatest.Options{Workers: 2, Concurrency: 10, Timeout: time.Minute,
		OnEvent: func(r awslambdatest.EventResult) { events <- r }})

	rep, err := runChildren(t, srv, "function", testfuncs.Children{N: 3})
	if err != nil {
		t.Fatalf("the invoker's job: %v", err)
	}
	if !strings.Contains(rep.Invoker, `lambda function "function" in us-east-1`) || !rep.Nested {
		t.Errorf("invoker %q (Nested %v); want one of the function itself, Nested", rep.Invoker, rep.Nested)
	}
	if !slices.Equal(rep.Results, []int{0, 1, 2}) {
		t.Errorf("children's results %v, want [0 1 2]", rep.Results)
	}
	st := srv.Stats()
	if st.FunctionInvocations["function"] != 4 || st.KeyInvocations["AKIDTEST"] != 1 || st.KeyInvocations[awslambdatest.RoleAccessKeyID] != 3 {
		t.Errorf("invocations by function %v, by access key %v; want 4 of the function: the driver's 1 (AKIDTEST), the worker's 3 (%s)",
			st.FunctionInvocations, st.KeyInvocations, awslambdatest.RoleAccessKeyID)
	}

	// Asynchronous children: queued by the worker, then run.
	if _, err := runChildren(t, srv, "function", testfuncs.Children{N: 2, Async: true}); err != nil {
		t.Fatalf("the invoker's asynchronous children: %v", err)
	}
	ctx := guard(t, 2*time.Minute)
	for range 2 {
		select {
		case r := <-events:
			if r.Attempts != 1 || r.FunctionError != "" || !strings.Contains(string(r.Payload), `{"gowren":`) {
				t.Errorf("asynchronous child %+v; want one run answered by the gowren worker", r)
			}
		case <-ctx.Done():
			t.Fatalf("the asynchronous children did not run: %v", srv.Stats())
		}
	}
	if st := srv.Stats(); st.Events != 2 || st.KeyInvocations[awslambdatest.RoleAccessKeyID] != 5 {
		t.Errorf("%d events, invocations by access key %v; want 2 more from the worker's key", st.Events, st.KeyInvocations)
	}
}

// On shard NAME-i of K (GOWREN_SHARDS=K, as `gowren deploy lambda -shards
// K` sets it), a worker's children go to the K shards in turn.
func TestWorkerInvokesShards(t *testing.T) {
	isolateAWS(t, "AKIDTEST", "us-east-1")
	srv := newFake(t, awslambdatest.Options{Function: "app-0", Workers: 2, Concurrency: 10, PendingPolls: -1,
		Timeout: time.Minute, Env: []string{awslambda.EnvShards + "=3"}})
	createFunctions(guard(t, time.Minute), t, newClient(t, srv.URL(), nil), "app-1", "app-2")

	rep, err := runChildren(t, srv, "app-0", testfuncs.Children{N: 6})
	if err != nil {
		t.Fatalf("the invoker's job: %v", err)
	}
	if !strings.Contains(rep.Invoker, "3 shards of app in us-east-1") || !slices.Equal(rep.Results, []int{0, 1, 2, 3, 4, 5}) {
		t.Errorf("invoker %q, results %v; want the 3 shards of app, [0 ... 5]", rep.Invoker, rep.Results)
	}
	// The driver's one invocation of app-0, and two children on each shard.
	st := srv.Stats()
	want := map[string]int{"app-0": 3, "app-1": 2, "app-2": 2}
	for fn, n := range want {
		if st.FunctionInvocations[fn] != n {
			t.Errorf("invocations by function %v, want %v", st.FunctionInvocations, want)
			break
		}
	}
}

// A worker whose environment lacks what invoking its function needs gets
// no invoker (so an invoker tree fails with a clear error), and a worker
// whose credentials AWS refuses gets the refusal, naming the role's key it
// signed with.
func TestWorkerInvokerEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		err  []string
	}{
		{name: "no credentials", env: []string{"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN="}},
		{name: "no region", env: []string{"AWS_REGION=", "AWS_DEFAULT_REGION="}},
		{name: "not a shard", env: []string{awslambda.EnvShards + "=3"}},
		// The task fails, so its report does not come back: the error
		// says that the invoker signed with the role's key.
		{name: "wrong secret", env: []string{"AWS_SECRET_ACCESS_KEY=not-the-secret"},
			err: []string{"InvalidSignatureException", "signed with access key " + awslambdatest.RoleAccessKeyID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFake(t, awslambdatest.Options{Workers: 2, Concurrency: 10, Timeout: time.Minute, Env: tc.env})
			rep, err := runChildren(t, srv, "function", testfuncs.Children{N: 1})
			if rep.Invoker != "" {
				t.Errorf("invoker %q, want none", rep.Invoker)
			}
			for _, want := range tc.err {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v, want one containing %q", err, want)
				}
			}
			if tc.err == nil && err != nil {
				t.Errorf("error %v", err)
			}
			if st := srv.Stats(); st.KeyInvocations[awslambdatest.RoleAccessKeyID] != 0 {
				t.Errorf("the worker's invocations were accepted: %v", st.KeyInvocations)
			}
		})
	}
}

// NewHandler in a process that is not a Lambda function gives handlers no
// invoker, and keeps one a wrapper set first.
func TestNewHandlerInvoker(t *testing.T) {
	isolateAWS(t, "AKIDTEST", "us-east-1")
	t.Setenv("AWS_LAMBDA_FUNCTION_NAME", "")
	var got []backends.Backend
	h := awslambda.NewHandler(func(ctx context.Context, _ []byte) []byte {
		got = append(got, backends.InvokerOf(ctx))
		return []byte("ok")
	})
	outer := awslambda.New(newClient(t, "http://127.0.0.1:1", nil), "outer", nil)
	for _, ctx := range []context.Context{context.Background(), backends.WithInvoker(context.Background(), outer)} {
		if _, err := h.Invoke(ctx, backends.EncodeJSON([]byte("x"))); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || got[0] != nil || got[1] != outer {
		t.Errorf("invokers %v; want none outside Lambda, and the one set before", got)
	}

	// In a function's environment, the handler's invoker reaches the
	// Lambda endpoint of AWS_ENDPOINT_URL_LAMBDA.
	srv, err := awslambdatest.New(&awslambdatest.Options{Function: "self", Stderr: testWriter{t},
		Handler: awslambda.NewHandler(func(context.Context, []byte) []byte { return []byte("child") })})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	t.Setenv("AWS_LAMBDA_FUNCTION_NAME", "self")
	t.Setenv("AWS_ENDPOINT_URL_LAMBDA", srv.URL())
	got = nil
	var reply []byte
	h = awslambda.NewHandler(func(ctx context.Context, _ []byte) []byte {
		inv := backends.InvokerOf(ctx)
		got = append(got, inv)
		if inv == nil {
			return nil
		}
		reply, err = inv.Invoke(ctx, []byte("to the child"))
		return []byte("parent")
	})
	if _, err := h.Invoke(guard(t, time.Minute), backends.EncodeJSON([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] == nil || fmt.Sprint(got[0]) != `the worker's invoker of lambda function "self" in us-east-1` {
		t.Fatalf("invokers %v; want the function's own", got)
	}
	if err != nil || string(reply) != "child" {
		t.Errorf("the child's reply %q, %v; want %q", reply, err, "child")
	}
	if st := srv.Stats(); st.FunctionInvocations["self"] != 1 || st.KeyInvocations["AKIDTEST"] != 1 {
		t.Errorf("invocations by function %v, by key %v; want 1 of self signed with the environment's AKIDTEST", st.FunctionInvocations, st.KeyInvocations)
	}
	if !got[0].Limits().Nested {
		t.Error("the invoker's Limits().Nested is false")
	}
}

// A job with an invoker tree on the loopback Lambda: the driver sends
// invokers, whose workers start sub-invokers with Event invocations and
// call their children, signed with the role's credentials; each leaf
// invoker runs one child itself and writes its children's replies to the
// store in bundles. Lambda gives each invocation an environment of its
// own (beyond the account's concurrency it throttles); the loopback queues
// what its Workers cannot run, so it gets a worker per admitted
// invocation: invokers waiting for their children never hold every worker.
func TestTreeJob(t *testing.T) {
	srv, _, j := runTreeJob(t, fanout.Options{Store: fileStore(t)})
	s := j.Stats()
	// A leaf invoker has 2 or 3 children (Tree 3), and runs one of them
	// itself: at least half the children are calls signed with the role's
	// key.
	if n := srv.Stats().KeyInvocations[awslambdatest.RoleAccessKeyID]; n < s.ViaTree/2 {
		t.Errorf("%d invocations signed with the role's key, for %d started by invokers", n, s.ViaTree)
	}
	// Their replies come in bundles of 2 or 3: fewer reads than children.
	if s.StoreReads >= s.ViaTree {
		t.Errorf("the driver read %d objects for %d children: the invokers did not bundle their replies", s.StoreReads, s.ViaTree)
	}
}

// TestTreeJobAsync runs an async job through collecting invokers, which
// the driver queues as it queues the job's invocations: their bundles are
// read instead of a reply per child, and a driver that attaches afterwards,
// and JobProgress, find every result in them.
func TestTreeJobAsync(t *testing.T) {
	st := fileStore(t)
	opts := fanout.Options{Store: st, Async: true, KeepData: true}
	srv, b, j := runTreeJob(t, opts)
	in := treeJobInputs()
	s := j.Stats()
	if s.StoreReads >= s.ViaTree {
		t.Errorf("the driver read %d objects for %d children: the invokers did not bundle their replies", s.StoreReads, s.ViaTree)
	}
	if ev := srv.Stats().Events; ev < s.Invokers {
		t.Errorf("%d asynchronous invocations for %d invokers: the driver waited for its invokers", ev, s.Invokers)
	}

	p, err := fanout.JobProgress(guard(t, time.Minute), st, j.ID())
	if err != nil {
		t.Fatal(err)
	}
	if p.Succeeded != len(in) || p.Failed != 0 {
		t.Errorf("JobProgress = %+v: want all %d succeeded", p, len(in))
	}

	before := srv.Stats()
	opts.KeepData = false
	opts.Tree, opts.BatchSize, opts.Concurrency, opts.Retries = 3, 1, 12, -1 // as runTreeJob's
	ex2 := fanout.NewExecutor(sameHost{b}, &opts)
	defer ex2.Close()
	j2, err := fanout.Attach(guard(t, time.Minute), ex2, testfuncs.Noop, j.ID())
	if err != nil {
		t.Fatal(err)
	}
	out, err := j2.Wait(guard(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out, in) {
		t.Fatalf("attached: results %v, want %v", out, in)
	}
	if after := srv.Stats(); after.Invocations != before.Invocations || after.Events != before.Events {
		t.Errorf("attaching sent %d invocations and %d events: it did not find the results in the bundles",
			after.Invocations-before.Invocations, after.Events-before.Events)
	}
}

// treeJobInputs are the inputs of runTreeJob's job.
func treeJobInputs() []int {
	in := make([]int, 30)
	for i := range in {
		in[i] = i
	}
	return in
}

// runTreeJob runs 30 no-op tasks on a loopback Lambda through invokers of
// fan-out 3 (opts gives the store and the mode), checks their results and
// that the first window of 12 went through invokers, and returns the
// server, the backend and the job.
func runTreeJob(t *testing.T, opts fanout.Options) (*awslambdatest.Server, *awslambda.Backend, *fanout.Job[int]) {
	t.Helper()
	srv := newFake(t, awslambdatest.Options{Workers: 40, Concurrency: 40, Timeout: time.Minute})
	b := awslambda.New(newClient(t, srv.URL(), nil), "function", &awslambda.Options{Concurrency: 12, Timeout: time.Minute})
	opts.Tree, opts.BatchSize, opts.Concurrency, opts.Retries = 3, 1, 12, -1
	ex := fanout.NewExecutor(sameHost{b}, &opts)
	t.Cleanup(func() { ex.Close() })
	in := treeJobInputs()
	j, err := fanout.Start(guard(t, 2*time.Minute), ex, testfuncs.Noop, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := j.Wait(guard(t, 2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out, in) {
		t.Fatalf("results %v, want %v", out, in)
	}
	if s := j.Stats(); s.Invokers < 1 || s.ViaTree < 12 {
		t.Fatalf("invokers %d, via the tree %d: want the first window of 12 through invokers", s.Invokers, s.ViaTree)
	}
	return srv, b, j
}
