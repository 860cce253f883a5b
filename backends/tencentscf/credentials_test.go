package tencentscf

import (
	"os"
	"testing"
)

func TestShareRoleCredentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("TENCENTCLOUD_SECRETID", "AKIDrole")
	t.Setenv("TENCENTCLOUD_SECRETKEY", "rolekey")
	t.Setenv("TENCENTCLOUD_SESSIONTOKEN", "roletoken")
	shareRoleCredentials()
	if os.Getenv("AWS_ACCESS_KEY_ID") != "AKIDrole" || os.Getenv("AWS_SECRET_ACCESS_KEY") != "rolekey" || os.Getenv("AWS_SESSION_TOKEN") != "roletoken" {
		t.Fatalf("role keys not shared: %q %q %q", os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN"))
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "explicit")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "explicitkey")
	shareRoleCredentials()
	if os.Getenv("AWS_ACCESS_KEY_ID") != "explicit" {
		t.Fatal("explicit keys were overwritten")
	}
}
