package awslambda_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// s3Actions maps the S3 API calls of storage/s3store to the IAM action that
// allows each. A call missing here fails TestREADMEPolicy: add it, and its
// action to README's policy when it is a new one.
var s3Actions = map[string]string{
	"GetObject":               "s3:GetObject",
	"HeadObject":              "s3:GetObject",
	"PutObject":               "s3:PutObject",
	"CreateMultipartUpload":   "s3:PutObject",
	"UploadPart":              "s3:PutObject",
	"CompleteMultipartUpload": "s3:PutObject",
	"AbortMultipartUpload":    "s3:AbortMultipartUpload",
	"DeleteObject":            "s3:DeleteObject",
	"DeleteObjects":           "s3:DeleteObject",
	"ListObjectsV2":           "s3:ListBucket",
	"HeadBucket":              "s3:ListBucket",
}

// TestREADMEPolicy checks the IAM policy of README's AWS Lambda section
// against the S3 calls the store (driver and workers) makes: every action
// they need is allowed, on the objects under the prefix or, for listing, on
// the bucket.
func TestREADMEPolicy(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n### AWS Lambda\n")
	if !ok {
		t.Fatal(`README has no "### AWS Lambda" section`)
	}
	section, _, _ = strings.Cut(section, "\n### ")
	section, _, _ = strings.Cut(section, "\n## ")
	_, rest, ok := strings.Cut(section, "```json\n")
	if !ok {
		t.Fatal("the AWS Lambda section of README has no JSON policy")
	}
	doc, _, _ := strings.Cut(rest, "```")
	var policy struct {
		Statement []struct {
			Effect    string
			Action    any
			Resource  any
			Condition map[string]map[string]string
		}
	}
	if err := json.Unmarshal([]byte(doc), &policy); err != nil {
		t.Fatalf("README's policy is not valid JSON: %v\n%s", err, doc)
	}
	strs := func(v any) []string {
		switch v := v.(type) {
		case string:
			return []string{v}
		case []any:
			var s []string
			for _, e := range v {
				s = append(s, e.(string))
			}
			return s
		}
		return nil
	}
	// allowed reports whether a statement allows action on resource,
	// and with what condition on the listed prefix.
	allowed := func(action, resource string) (prefix string, ok bool) {
		for _, st := range policy.Statement {
			if st.Effect == "Allow" && slices.Contains(strs(st.Action), action) && slices.Contains(strs(st.Resource), resource) {
				return st.Condition["StringLike"]["s3:prefix"], true
			}
		}
		return "", false
	}

	if _, ok := allowed("lambda:InvokeFunction", "arn:aws:lambda:REGION:ACCOUNT:function:montecarlo"); !ok {
		t.Error("README's policy does not allow lambda:InvokeFunction on the function")
	}
	files, err := filepath.Glob("../../storage/s3store/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no source of storage/s3store: %v", err)
	}
	call := regexp.MustCompile(`\.client\.([A-Z][A-Za-z0-9]*)\(`)
	needed := map[string][]string{} // action -> the calls that need it
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range call.FindAllStringSubmatch(string(src), -1) {
			api := m[1]
			if api == "Options" {
				continue
			}
			action, ok := s3Actions[api]
			if !ok {
				t.Errorf("%s calls S3's %s, whose IAM action this test does not know: add it to s3Actions and to README's policy", filepath.Base(f), api)
				continue
			}
			needed[action] = append(needed[action], api)
		}
	}
	for _, want := range []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListBucket"} {
		if needed[want] == nil {
			t.Errorf("storage/s3store makes no call needing %s; update this test", want)
		}
	}
	for action, apis := range needed {
		if action == "s3:ListBucket" {
			prefix, ok := allowed(action, "arn:aws:s3:::BUCKET")
			if !ok || prefix != "PREFIX/*" {
				t.Errorf("README's policy does not allow %s on the bucket for the keys under PREFIX/ (needed by %v)", action, apis)
			}
			continue
		}
		if _, ok := allowed(action, "arn:aws:s3:::BUCKET/PREFIX/*"); !ok {
			t.Errorf("README's policy does not allow %s on arn:aws:s3:::BUCKET/PREFIX/* (needed by %v)", action, slices.Compact(slices.Sorted(slices.Values(apis))))
		}
	}
}
