package awslambdatest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
)

// signedRequest builds an Invoke request of the function "function" signed
// by the SDK's own SigV4 signer with the given secret, region and time.
func signedRequest(t *testing.T, s *awslambdatest.Server, key, secret, region string, at time.Time, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL()+"/2015-03-31/functions/function/invocations?Qualifier=%24LATEST", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Invocation-Type", "DryRun")
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256([]byte(body))
	err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: key, SecretAccessKey: secret},
		req, hex.EncodeToString(sum[:]), "lambda", region, at)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// send sends req and returns its status, error code and message.
func send(t *testing.T, req *http.Request) (status int, code, message string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v struct {
		Message string `json:"message"`
	}
	json.Unmarshal(b, &v)
	return resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), v.Message
}

// TestAuthentication checks that the server verifies Signature Version 4 as
// AWS does, with the SDK's client and signer on the other side: what is
// signed right passes, and each way of getting it wrong gets AWS's 403.
func TestAuthentication(t *testing.T) {
	s := newServer(t, awslambdatest.Options{AccessKeyID: "GOOD"})
	ctx := timeout(t, time.Minute)
	withCreds := func(key, secret, region string) *lambda.Client {
		return lambda.New(lambda.Options{Region: region, BaseEndpoint: aws.String(s.URL()), Retryer: aws.NopRetryer{},
			Credentials: credentials.NewStaticCredentialsProvider(key, secret, "")})
	}
	for _, tc := range []struct {
		name    string
		client  *lambda.Client
		code    string // "" for success
		inMsg   string
		payload string
	}{
		{"signed right", withCreds("GOOD", awslambdatest.DefaultSecretAccessKey, "us-east-1"), "", "", `{"op":"echo"}`},
		{"signed right with a session token", lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.URL()),
			Credentials: credentials.NewStaticCredentialsProvider("GOOD", awslambdatest.DefaultSecretAccessKey, "token/with+odd=chars")}),
			"", "", `{"op":"echo"}`},
		{"unsigned", lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.URL()), Credentials: aws.AnonymousCredentials{}}),
			"MissingAuthenticationTokenException", "Missing Authentication Token", `{}`},
		{"unknown access key", withCreds("BAD", awslambdatest.DefaultSecretAccessKey, "us-east-1"),
			"UnrecognizedClientException", "security token included in the request is invalid", `{}`},
		{"wrong secret", withCreds("GOOD", "not the secret", "us-east-1"),
			"InvalidSignatureException", "signature we calculated does not match", `{}`},
		{"wrong region", withCreds("GOOD", awslambdatest.DefaultSecretAccessKey, "eu-west-1"),
			"InvalidSignatureException", "Credential should be scoped to a valid region, not 'eu-west-1'", `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("function"),
				InvocationType: types.InvocationTypeDryRun, Payload: []byte(tc.payload)})
			if tc.code == "" {
				if err != nil {
					t.Fatalf("Invoke: %v", err)
				}
				return
			}
			var api smithy.APIError
			if !errors.As(err, &api) || api.ErrorCode() != tc.code || !strings.Contains(api.ErrorMessage(), tc.inMsg) {
				t.Fatalf("err = %v, want %s containing %q", err, tc.code, tc.inMsg)
			}
			var re interface{ HTTPStatusCode() int }
			if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusForbidden {
				t.Errorf("status of %v, want 403", err)
			}
		})
	}
	// Requests signed by hand with the SDK's signer: a signature of another
	// time, a body changed after signing, an Authorization header cut short.
	now := time.Now()
	for _, tc := range []struct {
		name   string
		req    func() *http.Request
		status int
		code   string
		inMsg  string
	}{
		{"signed now", func() *http.Request {
			return signedRequest(t, s, "GOOD", awslambdatest.DefaultSecretAccessKey, "us-east-1", now, `{}`)
		}, http.StatusNoContent, "", ""},
		{"signed 10 minutes ago", func() *http.Request {
			return signedRequest(t, s, "GOOD", awslambdatest.DefaultSecretAccessKey, "us-east-1", now.Add(-10*time.Minute), `{}`)
		}, http.StatusForbidden, "InvalidSignatureException", "Signature expired"},
		{"signed 10 minutes ahead", func() *http.Request {
			return signedRequest(t, s, "GOOD", awslambdatest.DefaultSecretAccessKey, "us-east-1", now.Add(10*time.Minute), `{}`)
		}, http.StatusForbidden, "InvalidSignatureException", "Signature not yet current"},
		{"body changed after signing", func() *http.Request {
			req := signedRequest(t, s, "GOOD", awslambdatest.DefaultSecretAccessKey, "us-east-1", now, `{"a":1}`)
			req.Body = io.NopCloser(bytes.NewReader([]byte(`{"a":2}`)))
			return req
		}, http.StatusForbidden, "InvalidSignatureException", "signature we calculated does not match"},
		{"signed header changed", func() *http.Request {
			req := signedRequest(t, s, "GOOD", awslambdatest.DefaultSecretAccessKey, "us-east-1", now, `{}`)
			req.Header.Set("X-Amz-Invocation-Type", "Event")
			return req
		}, http.StatusForbidden, "InvalidSignatureException", "signature we calculated does not match"},
		{"no signature", func() *http.Request {
			req := signedRequest(t, s, "GOOD", awslambdatest.DefaultSecretAccessKey, "us-east-1", now, `{}`)
			auth := req.Header.Get("Authorization")
			req.Header.Set("Authorization", auth[:strings.Index(auth, ", Signature=")])
			return req
		}, http.StatusForbidden, "IncompleteSignatureException", "requires 'Signature' parameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, code, msg := send(t, tc.req())
			if status != tc.status || code != tc.code || !strings.Contains(msg, tc.inMsg) {
				t.Errorf("answer %d %s %q, want %d %s containing %q", status, code, msg, tc.status, tc.code, tc.inMsg)
			}
		})
	}
	st := s.Stats()
	if st.Errors["InvalidSignatureException"] != 6 || st.Errors["MissingAuthenticationTokenException"] != 1 ||
		st.Errors["UnrecognizedClientException"] != 1 || st.Errors["IncompleteSignatureException"] != 1 {
		t.Errorf("error answers %v; want 6 invalid signatures and one of each other refusal", st.Errors)
	}
}
