package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	tchttp "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/http"
)

// Before a deploy builds anything (a minute or more on a cold cache), it
// makes the API call the deploy starts with once the code is built: reading
// the function. Wrong or expired credentials, a missing permission or an
// unreachable endpoint then fail in a second, and so does a new Lambda
// function without -role.

// awsCredentialErrors are the error codes by which AWS refuses a request's
// credentials (not its permissions: AccessDeniedException means the
// credentials are valid).
var awsCredentialErrors = map[string]bool{
	"UnrecognizedClientException":         true,
	"InvalidSignatureException":           true,
	"IncompleteSignatureException":        true,
	"MissingAuthenticationTokenException": true,
	"ExpiredTokenException":               true,
	"InvalidClientTokenId":                true,
	"SignatureDoesNotMatch":               true,
}

// checkLambda reads the function name as Deploy will: GetFunction.
func checkLambda(ctx context.Context, client *lambda.Client, cfg aws.Config, name, role string) error {
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return fmt.Errorf("deploy lambda: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE or -profile); nothing was built: %w", err)
	}
	_, err := client.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)})
	var nf *types.ResourceNotFoundException
	var api smithy.APIError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nf):
		if role == "" {
			return fmt.Errorf("deploy lambda: function %q does not exist in %s, and creating it needs a role: pass -role ARN (an IAM role Lambda can assume); nothing was built",
				name, client.Options().Region)
		}
		return nil
	case errors.As(err, &api) && awsCredentialErrors[api.ErrorCode()]:
		return fmt.Errorf("deploy lambda: AWS refused the credentials (%s: %s): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or -profile, or renew an expired session; nothing was built",
			api.ErrorCode(), api.ErrorMessage())
	default:
		return fmt.Errorf("deploy lambda: read function %q before building: %w", name, err)
	}
}

// lambdaNameChars are the characters a Lambda function name cannot have.
var lambdaNameChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// lambdaDefaultName returns the name awslambda.Deploy gives a function by
// default, after the last element of the package's import path, as go list
// reports it for Lambda's platform; ok is false when go list fails (Deploy
// then says why, before building).
func lambdaDefaultName(ctx context.Context, pkg, arch string, tags []string) (name string, ok bool) {
	if pkg == "" {
		pkg = "."
	}
	goarch := "arm64"
	if arch == "x86_64" {
		goarch = "amd64"
	}
	cmd := exec.CommandContext(ctx, "go", "list", "-tags", strings.Join(append([]string{"lambda.norpc"}, tags...), ","), "-f", "{{.ImportPath}}", "--", pkg)
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+goarch, "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return "", false
	}
	path := strings.TrimSpace(out.String())
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		path = path[i+1:]
	}
	name = strings.Trim(lambdaNameChars.ReplaceAllString(path, "-"), "-")
	if len(name) > 64 {
		name = name[:64]
	}
	return name, name != ""
}

// checkSCF reads the function as tencentscf.Deploy will: GetFunction.
func checkSCF(ctx context.Context, client *common.Client, function, namespace string) error {
	req := tchttp.NewCommonRequest("scf", "2018-04-16", "GetFunction")
	req.SetContext(ctx)
	if err := req.SetActionParameters(map[string]any{"FunctionName": function, "Namespace": namespace}); err != nil {
		return fmt.Errorf("deploy scf: read function %s: %w", function, err)
	}
	err := client.Send(req, tchttp.NewCommonResponse())
	var se *tcerr.TencentCloudSDKError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se) && (se.Code == "ResourceNotFound.Function" || se.Code == "ResourceNotFound.FunctionName"):
		return nil // Deploy creates it
	case errors.As(err, &se) && strings.HasPrefix(se.Code, "AuthFailure") && se.Code != "AuthFailure.UnauthorizedOperation":
		return fmt.Errorf("deploy scf: Tencent Cloud refused the credentials (%s: %s): check TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY, or renew TENCENTCLOUD_SESSION_TOKEN; nothing was built",
			se.Code, se.Message)
	default:
		return fmt.Errorf("deploy scf: read function %s (namespace %s) before building: %w", function, namespace, err)
	}
}
