package awslambda_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/awslambda"
	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
	"github.com/gowren/gowren/backends/awslambda/internal/testfuncs"
	"github.com/gowren/gowren/fanout"
)

// TestAuthLoopback runs jobs with wrong credentials against the loopback
// Lambda, which checks SigV4 signatures as Lambda does: each job stops after
// one refused request with one error that names the access key and region
// and says what to check.
func TestAuthLoopback(t *testing.T) {
	srv := newFake(t, awslambdatest.Options{AccessKeyID: "AKIDTEST"})
	ctx := guard(t, time.Minute)
	for _, tc := range []struct {
		name                string
		key, secret, region string
		code                string
		inMsg               []string
	}{
		{"wrong secret", "AKIDTEST", "not the secret", "us-east-1", "InvalidSignatureException",
			[]string{"access key AKIDTEST", "check AWS_SECRET_ACCESS_KEY"}},
		{"wrong region", "AKIDTEST", awslambdatest.DefaultSecretAccessKey, "eu-west-1", "InvalidSignatureException",
			[]string{"region eu-west-1", "signed for another region than the endpoint's"}},
		{"unknown access key", "AKIDOTHER", awslambdatest.DefaultSecretAccessKey, "us-east-1", "UnrecognizedClientException",
			[]string{"access key AKIDOTHER", "check AWS_ACCESS_KEY_ID"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			c := lambda.New(lambda.Options{Region: tc.region, BaseEndpoint: aws.String(srv.URL()), HTTPClient: &http.Client{Transport: tr},
				Credentials: credentials.NewStaticCredentialsProvider(tc.key, tc.secret, "")})
			ex := fanout.NewExecutor(sameHost{awslambda.New(c, "function", nil)}, &fanout.Options{Store: fileStore(t)})
			defer ex.Close()
			before := srv.Stats().Errors[tc.code]
			_, err := fanout.Map(ctx, ex, testfuncs.Noop, []int{1})
			t.Logf("the user sees: %v", err)
			if !errors.Is(err, awslambda.ErrAuth) || backends.Retryable(err) {
				t.Fatalf("err = %v, want a non-retryable ErrAuth", err)
			}
			for _, want := range append(tc.inMsg, tc.code) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q", want)
				}
			}
			if n := srv.Stats().Errors[tc.code] - before; n != 1 {
				t.Errorf("%d requests refused with %s, want 1: a refused credential is not retried", n, tc.code)
			}
		})
	}
	if st := srv.Stats(); st.Invocations != 0 || st.WorkersStarted != 0 {
		t.Errorf("stats %+v: an invocation with wrong credentials ran", st)
	}
}

// TestQualifierLoopback runs jobs on an alias of the function, given as
// Options.Qualifier and as lambda://FUNCTION:QUALIFIER, and on an alias that
// does not exist, which stops the job at once with ErrFunctionNotFound.
func TestQualifierLoopback(t *testing.T) {
	isolateAWS(t, "AKIDTEST", "us-east-1")
	srv := newFake(t, awslambdatest.Options{Workers: 1})
	c := newClient(t, srv.URL(), nil)
	ctx := guard(t, time.Minute)
	if _, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("function")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("function"), Name: aws.String("live"),
		FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	byURL, err := backends.Open(ctx, "lambda://function:live?endpoint="+srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]backends.Backend{
		"Options.Qualifier": awslambda.New(c, "function", &awslambda.Options{Qualifier: "live"}),
		"URL":               byURL,
	} {
		ex := fanout.NewExecutor(sameHost{b.(*awslambda.Backend)}, &fanout.Options{Store: fileStore(t)})
		out, err := fanout.Map(ctx, ex, testfuncs.Noop, []int{4, 5})
		ex.Close()
		if err != nil || len(out) != 2 || out[1] != 5 {
			t.Fatalf("%s: Map on the alias = %v, %v", name, out, err)
		}
	}
	ex := fanout.NewExecutor(sameHost{awslambda.New(c, "function", &awslambda.Options{Qualifier: "nope"})}, &fanout.Options{Store: fileStore(t)})
	defer ex.Close()
	_, err = fanout.Map(ctx, ex, testfuncs.Noop, []int{1})
	t.Logf("the user sees: %v", err)
	if !errors.Is(err, awslambda.ErrFunctionNotFound) || backends.Retryable(err) {
		t.Fatalf("err = %v, want a non-retryable ErrFunctionNotFound", err)
	}
	for _, want := range []string{`"function:nope"`, `create the alias "nope"`, "Function not found: arn:aws:lambda:us-east-1:123456789012:function:function:nope"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
	if n := srv.Stats().Errors["ResourceNotFoundException"]; n != 1 {
		t.Errorf("%d requests refused as not found, want 1", n)
	}
}

// TestPendingLoopback invokes a function just created, as a driver started
// right after CreateFunction would: Lambda refuses it while it is Pending
// (409 ResourceConflictException), the backend reports a throttle that says
// so, and a job waits it out and completes.
func TestPendingLoopback(t *testing.T) {
	srv := newFake(t, awslambdatest.Options{PendingPolls: 1})
	c := newClient(t, srv.URL(), nil)
	ctx := guard(t, time.Minute)
	create := func(name string) {
		t.Helper()
		code, err := awslambda.Zip([]byte("bootstrap"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(name),
			Role: aws.String("arn:aws:iam::123456789012:role/gowren"), Runtime: types.RuntimeProvidedal2023,
			Handler: aws.String("bootstrap"), Code: &types.FunctionCode{ZipFile: code}}); err != nil {
			t.Fatal(err)
		}
	}
	create("fresh")
	b := awslambda.New(c, "fresh", nil)
	defer b.Close()
	_, err := b.Invoke(ctx, []byte("x"))
	var te *backends.ThrottleError
	if !errors.As(err, &te) || te.Reason != "ResourceConflictException" || te.RetryAfter != time.Second ||
		!strings.Contains(err.Error(), "following state: Pending") {
		t.Fatalf("err = %v, want a 1 s throttle saying the function is Pending", err)
	}

	create("fresh2")
	ex := fanout.NewExecutor(sameHost{awslambda.New(c, "fresh2", nil)}, &fanout.Options{Store: fileStore(t)})
	defer ex.Close()
	j, err := fanout.Start(ctx, ex, testfuncs.Noop, []int{7})
	if err != nil {
		t.Fatal(err)
	}
	out, err := j.Wait(ctx)
	if err != nil || out[0] != 7 {
		t.Fatalf("job on a function created just before: %v, %v", out, err)
	}
	if n := srv.Stats().Errors["ResourceConflictException"]; n != 2 || j.Stats().Throttles != 1 {
		t.Errorf("%d invocations refused as Pending, %d throttles seen by the job; want 2 (one per function) and 1",
			n, j.Stats().Throttles)
	}
}
