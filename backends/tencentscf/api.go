package tencentscf

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tchttp "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/http"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
)

// The Tencent Cloud API 3.0 product and version of SCF.
const (
	apiService = "scf"
	apiVersion = "2018-04-16"
)

// Environment variables holding Tencent Cloud credentials, as the Tencent
// Cloud SDKs and tccli read them.
const (
	EnvSecretID     = "TENCENTCLOUD_SECRET_ID"
	EnvSecretKey    = "TENCENTCLOUD_SECRET_KEY"
	EnvSessionToken = "TENCENTCLOUD_SESSION_TOKEN"
	// EnvRegion is the region used when a URL or flag names none. SCF
	// sets it in a function's process to the function's region.
	EnvRegion = "TENCENTCLOUD_REGION"
	// EnvEndpoint, in a worker's environment, is the Cloud API endpoint
	// through which the worker invokes its children (an invoker tree,
	// fanout.Options.Tree), written as NewClient takes it: host[:port]
	// or http(s)://host:port. Unset, it is the public endpoint
	// scf.tencentcloudapi.com. Tests point it at a loopback server.
	EnvEndpoint = "GOWREN_SCF_ENDPOINT"
)

// clientTimeout bounds one API request: SCF's longest function timeout
// (900 s) plus room for the platform's own overhead. Invocations are
// bounded more tightly by their context.
const clientTimeout = 960 * time.Second

// EnvCredential returns the credentials in TENCENTCLOUD_SECRET_ID,
// TENCENTCLOUD_SECRET_KEY and, if set, TENCENTCLOUD_SESSION_TOKEN, or an
// error naming the variables that are missing.
func EnvCredential() (*common.Credential, error) {
	id, key := os.Getenv(EnvSecretID), os.Getenv(EnvSecretKey)
	var missing []string
	if id == "" {
		missing = append(missing, EnvSecretID)
	}
	if key == "" {
		missing = append(missing, EnvSecretKey)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("tencentscf: no Tencent Cloud credentials: set %s (an API key from the CAM console; add %s for temporary credentials)",
			strings.Join(missing, " and "), EnvSessionToken)
	}
	return common.NewTokenCredential(id, key, os.Getenv(EnvSessionToken)), nil
}

// NewClient returns a Tencent Cloud API client for SCF in region, signing
// with cred (TC3-HMAC-SHA256). Endpoint is where requests go: "" for the
// public endpoint scf.tencentcloudapi.com, a host[:port] reached over
// HTTPS, or a URL "http://host:port" or "https://host:port" (a loopback
// server in tests). The client allows requests of up to 16 minutes (SCF's
// longest function timeout plus overhead; invocations are bounded more
// tightly by their context) and keeps up to 256 idle connections, each
// closed after 30 s of disuse. It is safe for concurrent use.
func NewClient(cred common.CredentialIface, region, endpoint string) (*common.Client, error) {
	c, _, err := newClient(cred, region, endpoint)
	return c, err
}

// newClient is NewClient that also returns the client's transport, so
// that a Backend that made the client can close its idle connections.
func newClient(cred common.CredentialIface, region, endpoint string) (*common.Client, *http.Transport, error) {
	prof := profile.NewClientProfile()
	prof.HttpProfile.ReqTimeout = int(clientTimeout / time.Second)
	prof.HttpProfile.ReqMethod = "POST"
	prof.Language = "en-US"
	if endpoint != "" {
		scheme, host, ok := strings.Cut(endpoint, "://")
		if !ok {
			scheme, host = "https", endpoint
		}
		scheme = strings.ToLower(scheme)
		host = strings.TrimSuffix(host, "/")
		if (scheme != "http" && scheme != "https") || host == "" || strings.ContainsAny(host, "/?#@ ") {
			return nil, nil, fmt.Errorf("tencentscf: endpoint %q: want host[:port] or http(s)://host[:port]", endpoint)
		}
		if _, _, err := net.SplitHostPort(host); err != nil && strings.Count(host, ":") > 0 {
			return nil, nil, fmt.Errorf("tencentscf: endpoint %q: %w", endpoint, err)
		}
		prof.HttpProfile.Scheme = strings.ToUpper(scheme)
		prof.HttpProfile.Endpoint = host
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 256
	tr.IdleConnTimeout = 30 * time.Second
	c := common.NewCommonClient(cred, region, prof)
	c.WithHttpTransport(tr)
	return c, tr, nil
}

// call sends one API action with params and decodes the "Response" member
// of the reply into out (a pointer to a struct; nil to discard it). Errors
// are the SDK's: *errors.TencentCloudSDKError for error responses and for
// failures to send or read.
func call(ctx context.Context, c *common.Client, action string, params map[string]any, out any) error {
	return callService(ctx, c, apiService, apiVersion, action, params, out)
}

// callService is call for an action of another service's API (CAM).
func callService(ctx context.Context, c *common.Client, service, version, action string, params map[string]any, out any) error {
	req := tchttp.NewCommonRequest(service, version, action)
	req.SetContext(ctx)
	if err := req.SetActionParameters(params); err != nil {
		return err
	}
	return c.Send(req, &apiResponse{BaseResponse: &tchttp.BaseResponse{}, out: out})
}

// apiResponse decodes a reply's "Response" member into out. The SDK has
// already turned replies with an "Error" member into errors when it reads
// the body (TryReadErr), so the second error parse it would do on every
// reply, which for a 6 MB invocation reply is not free, is skipped.
type apiResponse struct {
	*tchttp.BaseResponse
	out any
}

func (r *apiResponse) ParseErrorFromHTTPResponse([]byte) error { return nil }

func (r *apiResponse) UnmarshalJSON(b []byte) error {
	var env struct {
		Response json.RawMessage
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return err
	}
	if r.out == nil || len(env.Response) == 0 {
		return nil
	}
	return json.Unmarshal(env.Response, r.out)
}
