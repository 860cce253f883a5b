package awslambdatest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
)

// iamClient returns the real IAM client for s, signing with secret in
// region (IAM's is us-east-1), retries off.
func iamClient(s *awslambdatest.Server, secret, region string) *iam.Client {
	return iam.New(iam.Options{
		Region:       region,
		BaseEndpoint: aws.String(s.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", secret, ""),
		Retryer:      aws.NopRetryer{},
	})
}

// The loopback's IAM answers PutRolePolicy as IAM does, checked with the
// real aws-sdk-go-v2 IAM client: the policy is kept for a role a function
// runs as; an unknown role, a bad document, a refusal and a bad signature
// get IAM's error codes, which the SDK decodes.
func TestIAMPutRolePolicy(t *testing.T) {
	for _, deny := range []bool{false, true} {
		s, err := awslambdatest.New(&awslambdatest.Options{DenyIAM: deny})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := client(s, "AKIDTEST").CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("app"),
			Runtime: types.RuntimeProvidedal2023, Handler: aws.String("bootstrap"), Role: aws.String("arn:aws:iam::123456789012:role/path/worker"),
			Code: &types.FunctionCode{ZipFile: zipOf(t, "app")}}); err != nil {
			t.Fatal(err)
		}
		c := iamClient(s, awslambdatest.DefaultSecretAccessKey, "us-east-1")
		put := func(c *iam.Client, role, doc string) error {
			_, err := c.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String("gowren-invoke-app"),
				PolicyDocument: aws.String(doc)})
			return err
		}
		code := func(err error) string {
			var ae smithy.APIError
			if errors.As(err, &ae) {
				return ae.ErrorCode()
			}
			return ""
		}
		const doc = `{"Version":"2012-10-17","Statement":[]}`
		err = put(c, "worker", doc)
		if deny {
			if code(err) != "AccessDenied" {
				t.Fatalf("DenyIAM: PutRolePolicy = %v, want AccessDenied", err)
			}
			if _, ok := s.RolePolicy("worker", "gowren-invoke-app"); ok {
				t.Fatal("DenyIAM: the policy was kept")
			}
			continue
		}
		if err != nil {
			t.Fatalf("PutRolePolicy: %v", err)
		}
		if got, ok := s.RolePolicy("worker", "gowren-invoke-app"); !ok || got != doc {
			t.Fatalf("RolePolicy = %q, %v; want %q", got, ok, doc)
		}
		for _, tc := range []struct {
			name string
			err  error
			want string
		}{
			{"unknown role", put(c, "nobody", doc), "NoSuchEntity"},
			{"bad document", put(c, "worker", "{"), "MalformedPolicyDocument"},
			{"bad role name", put(c, "a b", doc), "ValidationError"},
			{"wrong secret", put(iamClient(s, "wrong", "us-east-1"), "worker", doc), "SignatureDoesNotMatch"},
			{"wrong region", put(iamClient(s, awslambdatest.DefaultSecretAccessKey, "eu-west-1"), "worker", doc), "SignatureDoesNotMatch"},
		} {
			if got := code(tc.err); got != tc.want {
				t.Errorf("%s: %v (code %q), want %s", tc.name, tc.err, got, tc.want)
			}
		}
	}
}
