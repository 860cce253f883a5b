package backends

import (
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct{ in, host, query, err string }{
		{in: "lambda://fn?region=us-east-1", host: "fn", query: "region=us-east-1"},
		{in: "lambda://fn:prod", host: "fn", query: "qualifier=prod"},
		{in: "lambda://fn:7?region=eu-west-1", host: "fn:7", query: "region=eu-west-1"}, // a port: url.Parse's reading
		{in: "scf://fn:$LATEST?region=ap-guangzhou", host: "fn", query: "qualifier=%24LATEST&region=ap-guangzhou"},
		{in: "lambda://fn:prod?qualifier=prod", host: "fn", query: "qualifier=prod"},
		{in: "lambda://fn:prod?qualifier=dev", err: `qualifier "prod" in the name and "dev" in the query`},
		{in: "lambda://fn:a:b", err: "invalid port"},
		{in: "lambda://:prod", err: "invalid port"},
		{in: "lambda://fn%zz", err: "invalid URL escape"},
	} {
		u, err := ParseURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseURL(%q) = %v, %v; want an error containing %q", tc.in, u, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.in, err)
			continue
		}
		if u.Host != tc.host || u.RawQuery != tc.query {
			t.Errorf("ParseURL(%q) = host %q query %q; want %q, %q", tc.in, u.Host, u.RawQuery, tc.host, tc.query)
		}
	}
}
