package tencentscf

import (
	"testing"
)

func TestSameCode(t *testing.T) {
	t.Parallel()
	const sha = "5077f5203547b225b532434dd6fcf7c9897025d7581a9f3d474a7afee88bc696"
	for _, tc := range []struct {
		name     string
		deployed string
		want     bool
	}{
		{"Hex", sha, true},
		{"UpperHex", "5077F5203547B225B532434DD6FCF7C9897025D7581A9F3D474A7AFEE88BC696", true},
		{"Base64", "UHf1IDVHsiW1MkNN1vz3yYlwJddYGp89R0p6/uiLxpY=", true},
		{"Other", "0077f5203547b225b532434dd6fcf7c9897025d7581a9f3d474a7afee88bc696", false},
		{"Empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameCode(tc.deployed, sha); got != tc.want {
				t.Errorf("sameCode(%q) = %v, want %v", tc.deployed, got, tc.want)
			}
		})
	}
}
