package tencentscf_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"

	"github.com/gowren/gowren/backends/tencentscf"
	"github.com/gowren/gowren/backends/tencentscf/scftest"
)

// GrantInvoke through the SDK's client against the loopback's CAM: the
// policy is created then updated, attached to the role, and each refusal
// comes back as CAM's error.
func TestGrantInvoke(t *testing.T) {
	const deniedID = "AKIDgowrenNoCamSecretId0000000000000"
	srv := newServer(t, &scftest.Options{OwnerUin: "200000000002", Credentials: map[string]scftest.Credential{
		scftest.TestSecretID: {Key: scftest.TestSecretKey},
		deniedID:             {Key: scftest.TestSecretKey, Deny: []string{"cam:CreatePolicy"}},
	}})
	if err := srv.AddFunction(scftest.Function{Region: "ap-guangzhou", Namespace: "ns1", Name: "fn", Role: "worker", Command: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	client := func(id string) *common.Client {
		c, err := tencentscf.NewClient(common.NewCredential(id, scftest.TestSecretKey), "ap-guangzhou", srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	res := &tencentscf.DeployResult{Function: "fn", Region: "ap-guangzhou", Namespace: "ns1", Role: "worker"}
	const want = `{"version":"2.0","statement":[{"effect":"allow","action":["scf:InvokeFunction"],` +
		`"resource":["qcs::scf:ap-guangzhou:uin/200000000002:namespace/ns1/function/fn"]}]}`
	for range 2 { // created, then updated
		doc, err := tencentscf.GrantInvoke(ctx, client(scftest.TestSecretID), res)
		if err != nil || doc != want {
			t.Fatalf("GrantInvoke = %s, %v; want %s", doc, err, want)
		}
		if got := srv.RolePolicies("worker"); len(got) != 1 || got["gowren-invoke-ns1-fn"] != want {
			t.Fatalf("the role's policies: %v", got)
		}
	}
	for _, tc := range []struct {
		name string
		id   string
		res  tencentscf.DeployResult
		want string
	}{
		{"no role", scftest.TestSecretID, tencentscf.DeployResult{Function: "fn", Region: "ap-guangzhou"}, "has no execution role"},
		{"unknown role", scftest.TestSecretID, tencentscf.DeployResult{Function: "fn", Region: "ap-guangzhou", Role: "nobody"}, "InvalidParameter.RoleNotExist"},
		{"denied", deniedID, tencentscf.DeployResult{Function: "other", Region: "ap-guangzhou", Role: "worker"}, "UnauthorizedOperation"},
	} {
		if _, err := tencentscf.GrantInvoke(ctx, client(tc.id), &tc.res); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: GrantInvoke = %v, want an error with %s", tc.name, err, tc.want)
		}
	}
}
