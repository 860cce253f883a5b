package tencentscf_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gowren/gowren/backends/tencentscf"
	"github.com/gowren/gowren/backends/tencentscf/internal/testfuncs"
	"github.com/gowren/gowren/backends/tencentscf/scftest"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage/filestore"
)

// Temporary keys of the execution role the tests' functions run as.
const (
	roleName   = "gowren-worker"
	roleID     = "AKIDgowrenRoleSecretId000000000000"
	roleKey    = "gowrenRoleSecretKey0000000000000000"
	roleToken  = "gowren-role-session-token"
	deniedID   = "AKIDgowrenDeniedSecretId0000000000"
	childTimer = time.Minute // the functions' timeout: a guard, see conformanceTimeout
)

// childCalls returns the calls of srv signed with secretID.
func childCalls(srv *scftest.Server, secretID string) []scftest.Call {
	var out []scftest.Call
	for _, c := range srv.Calls() {
		if c.SecretID == secretID {
			out = append(out, c)
		}
	}
	return out
}

// checkChildCalls checks that calls, the children's, all invoked function
// in region and namespace synchronously, the version the worker runs.
func checkChildCalls(t *testing.T, calls []scftest.Call, region, namespace, function string) {
	t.Helper()
	if len(calls) == 0 {
		t.Fatal("no call signed with the role's keys reached the server")
	}
	for _, c := range calls {
		if c.Action != "InvokeFunction" || c.ErrorCode != "" || c.Region != region ||
			c.Params["FunctionName"] != function || c.Params["Namespace"] != namespace || c.Params["Qualifier"] != "$LATEST" {
			t.Errorf("a child's call: %s in %s with %v (error %q); want a successful InvokeFunction of %s/%s $LATEST in %s",
				c.Action, c.Region, c.Params, c.ErrorCode, namespace, function, region)
		}
	}
}

// TestChildren runs, on the loopback SCF, a task that invokes children of
// its own function through the backend its invocation's context offers:
// the worker signs with the keys of the function's execution role, which
// the server checks, session token included.
func TestChildren(t *testing.T) {
	t.Parallel()
	bin := workerBinary(t)
	const region, namespace = "ap-shanghai", "trees"
	srv := newServer(t, &scftest.Options{Credentials: map[string]scftest.Credential{
		scftest.TestSecretID: {Key: scftest.TestSecretKey},
		roleID:               {Key: roleKey, Token: roleToken, Role: roleName},
		deniedID:             {Key: roleKey, Token: roleToken, Role: "no-invoke", Deny: []string{"InvokeFunction"}},
	}})
	endpoint := map[string]string{tencentscf.EnvEndpoint: srv.URL()}
	for _, f := range []scftest.Function{
		{Region: region, Namespace: namespace, Name: "tree", Role: roleName, Command: []string{bin}, Timeout: childTimer, Env: endpoint},
		{Region: region, Namespace: namespace, Name: "norole", Command: []string{bin}, Timeout: childTimer, Env: endpoint},
		{Region: region, Namespace: namespace, Name: "denied", Role: "no-invoke", Command: []string{bin}, Timeout: childTimer, Env: endpoint},
	} {
		if err := srv.AddFunction(f); err != nil {
			t.Fatal(err)
		}
	}
	ctx := hangGuard(t)
	start := func(t *testing.T, function string, in []int) (testfuncs.ChildReport, error) {
		t.Helper()
		b := newBackend(t, srv, testCred(), region, function, &tencentscf.Options{Namespace: namespace, Timeout: childTimer})
		if !b.Limits().Nested {
			t.Error("the driver's backend does not report Nested")
		}
		ex := fanout.NewExecutor(b, &fanout.Options{Retries: -1})
		defer ex.Close()
		got, err := fanout.Map(ctx, ex, testfuncs.Children, [][]int{in})
		return got[0], err
	}
	run := func(t *testing.T, function string, in []int) testfuncs.ChildReport {
		t.Helper()
		r, err := start(t, function, in)
		if err != nil {
			t.Fatalf("Children on %s: %v", function, err)
		}
		return r
	}

	t.Run("Role", func(t *testing.T) {
		r := run(t, "tree", []int{1, 2, 3})
		if r.Invoker == "" || r.Async || !r.Nested {
			t.Errorf("the task saw %+v; want an invoker, not async, Nested", r)
		}
		if fmt.Sprint(r.Doubled) != "[2 4 6]" {
			t.Errorf("the children returned %v, want [2 4 6]", r.Doubled)
		}
		checkChildCalls(t, childCalls(srv, roleID), region, namespace, "tree")
	})
	tree := func(t *testing.T, async bool) {
		// A job with an invoker tree: the driver sends invokers (queued
		// in an async job), whose children run through the role's keys
		// and reply through the store.
		st, err := filestore.New(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		before := len(childCalls(srv, roleID))
		// sameHost: the loopback's workers share this machine's files.
		b := sameHost{newBackend(t, srv, testCred(), region, "tree", &tencentscf.Options{Namespace: namespace, Timeout: childTimer})}
		ex := fanout.NewExecutor(b, &fanout.Options{Store: st, Tree: 3, BatchSize: 1, Concurrency: 12, Retries: -1, Async: async})
		defer ex.Close()
		in := make([]int, 24)
		for i := range in {
			in[i] = i
		}
		j, err := fanout.Start(ctx, ex, testfuncs.Double, in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := j.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range out {
			if v != 2*i {
				t.Fatalf("result %d is %d, want %d", i, v, 2*i)
			}
		}
		s := j.Stats()
		if s.Invokers < 1 || s.ViaTree < 12 {
			t.Fatalf("invokers %d, invocations via the tree %d: want the first window of 12 through invokers", s.Invokers, s.ViaTree)
		}
		// A leaf invoker has 2 or 3 children (Tree 3) and runs one of them
		// itself; it writes their replies to the store in bundles.
		calls := childCalls(srv, roleID)[before:]
		if len(calls) < s.ViaTree/2 {
			t.Fatalf("%d calls signed with the role's keys for %d invocations via the tree", len(calls), s.ViaTree)
		}
		if s.StoreReads >= s.ViaTree {
			t.Errorf("the driver read %d objects for %d children: the invokers did not bundle their replies", s.StoreReads, s.ViaTree)
		}
		checkChildCalls(t, calls, region, namespace, "tree")
	}
	t.Run("Tree", func(t *testing.T) { tree(t, false) })
	t.Run("TreeAsync", func(t *testing.T) { tree(t, true) })
	t.Run("NoRole", func(t *testing.T) {
		before := len(childCalls(srv, roleID))
		r := run(t, "norole", []int{1})
		if r.Invoker != "" || r.Doubled != nil {
			t.Errorf("a function without a role: the task saw %+v, want no invoker", r)
		}
		if n := len(childCalls(srv, roleID)); n != before {
			t.Errorf("%d calls with the role's keys from a function without a role", n-before)
		}
	})
	t.Run("Denied", func(t *testing.T) {
		// A role whose policy lacks scf:InvokeFunction: the task's error
		// says to fix the role.
		_, err := start(t, "denied", []int{1})
		var te *fanout.TaskError
		if !errors.As(err, &te) || !strings.Contains(te.Message, "UnauthorizedOperation.CAM") || !strings.Contains(te.Message, "execution role") {
			t.Fatalf("err = %v, want the task's error naming the CAM refusal and the execution role", err)
		}
		if calls := childCalls(srv, deniedID); len(calls) == 0 || calls[0].ErrorCode != "UnauthorizedOperation.CAM" {
			t.Errorf("the denied role's calls: %+v", calls)
		}
	})
}

// TestChildrenRenewedKeys runs one worker process, started as SCF starts
// it, twice: its children are signed with the keys in its environment, and
// after SCF passes renewed keys in a request's Environment, with those, by
// the same backend.
func TestChildrenRenewedKeys(t *testing.T) {
	t.Parallel()
	bin := workerBinary(t)
	const renewedID, renewedKey, renewedToken = "AKIDgowrenRenewedId00000000000000", "renewedKey", "renewed-token"
	srv := newServer(t, &scftest.Options{Credentials: map[string]scftest.Credential{
		roleID:    {Key: roleKey, Token: roleToken},
		renewedID: {Key: renewedKey, Token: renewedToken},
	}})
	// The children run on the server, as function "tree".
	if err := srv.AddFunction(scftest.Function{Region: testRegion, Name: "tree", Command: []string{bin}, Timeout: childTimer}); err != nil {
		t.Fatal(err)
	}
	w := startWorkerEnv(t, "SCF_FUNCTIONNAME=tree", "SCF_NAMESPACE=default", "SCF_FUNCTIONVERSION=$LATEST", "TENCENTCLOUD_REGION="+testRegion,
		"TENCENTCLOUD_SECRETID="+roleID, "TENCENTCLOUD_SECRETKEY="+roleKey, "TENCENTCLOUD_SESSIONTOKEN="+roleToken,
		tencentscf.EnvEndpoint+"="+srv.URL())
	ctx := hangGuard(t)
	run := func(t *testing.T, env map[string]string, in []int) testfuncs.ChildReport {
		t.Helper()
		ex := fanout.NewExecutor(&rpcBackend{w: w, window: childTimer, env: env}, &fanout.Options{Retries: -1})
		defer ex.Close()
		got, err := fanout.Map(ctx, ex, testfuncs.Children, [][]int{in})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got[0].Doubled) != fmt.Sprint(double(in)) {
			t.Errorf("the children returned %v, want %v", got[0].Doubled, double(in))
		}
		return got[0]
	}
	first := run(t, nil, []int{4, 5})
	checkChildCalls(t, childCalls(srv, roleID), testRegion, "default", "tree")
	second := run(t, map[string]string{"TENCENTCLOUD_SECRETID": renewedID, "TENCENTCLOUD_SECRETKEY": renewedKey, "TENCENTCLOUD_SESSIONTOKEN": renewedToken}, []int{6})
	checkChildCalls(t, childCalls(srv, renewedID), testRegion, "default", "tree")
	if first.PID != second.PID || first.Invoker == "" || first.Invoker != second.Invoker {
		t.Errorf("one process gave its invocations the backends %q (pid %d) and %q (pid %d), want one", first.Invoker, first.PID, second.Invoker, second.PID)
	}
	if st := srv.Stats(); len(st.Errors) != 0 {
		t.Errorf("API errors %v", st.Errors)
	}
}

func double(xs []int) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = 2 * x
	}
	return out
}
