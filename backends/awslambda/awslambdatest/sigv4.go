package awslambdatest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/smithy-go/encoding/httpbinding"
)

// DefaultSecretAccessKey is the default Options.SecretAccessKey: the secret
// the tests of this module sign their requests with.
const DefaultSecretAccessKey = "secret"

// The credentials of the functions' role that worker processes find in
// their environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN), as Lambda gives a function the temporary credentials
// of its execution role: RoleAccessKeyID (Options.AccessKeyID when set)
// with Options.SecretAccessKey, and RoleSessionToken. The server accepts
// them, so a worker can invoke functions of the server.
const (
	RoleAccessKeyID  = "ASIAAWSLAMBDATESTROLE"
	RoleSessionToken = "awslambdatest-role-session"
)

// roleKey returns the access key ID of the workers' role credentials.
func (s *Server) roleKey() string {
	if s.o.AccessKeyID != "" {
		return s.o.AccessKeyID
	}
	return RoleAccessKeyID
}

// maxSkew is how far a request's X-Amz-Date may be from the server's clock,
// as AWS allows for signed requests.
const maxSkew = 5 * time.Minute

// authError is a refusal of a request's authentication: HTTP 403 with one of
// the codes AWS answers for it.
type authError struct {
	code, message string
}

// Messages of the refusals, as AWS words them.
const (
	msgMissingToken   = "Missing Authentication Token"
	msgUnknownKey     = "The security token included in the request is invalid."
	msgBadSignature   = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	codeMissingToken  = "MissingAuthenticationTokenException"
	codeIncomplete    = "IncompleteSignatureException"
	codeUnknownKey    = "UnrecognizedClientException"
	codeBadSignature  = "InvalidSignatureException"
	sigV4Algorithm    = "AWS4-HMAC-SHA256"
	sigV4Service      = "lambda"
	sigV4Terminator   = "aws4_request"
	amzDateFormat     = "20060102T150405Z"
	credentialDateFmt = "20060102"
)

// verify checks a request's Signature Version 4 Authorization header the way
// AWS does: it recomputes the signature over the received method, path,
// query, signed headers and body with the secret of the access key, and
// refuses the request when anything differs. body is the whole request body.
// It returns nil when the request is authentic.
func (s *Server) verify(r *http.Request, body []byte, now time.Time) *authError {
	return s.verifyScope(r, body, now, s.o.Region, sigV4Service)
}

// verifyScope is verify for a request that must be signed for service in
// region.
func (s *Server) verifyScope(r *http.Request, body []byte, now time.Time, wantRegion, wantService string) *authError {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return &authError{codeMissingToken, msgMissingToken}
	}
	rest, ok := strings.CutPrefix(auth, sigV4Algorithm+" ")
	if !ok {
		return &authError{codeIncomplete, "Authorization header requires the " + sigV4Algorithm + " scheme with 'Credential', 'SignedHeaders' and 'Signature' parameters. Authorization=" + firstWord(auth)}
	}
	params := map[string]string{}
	for _, p := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		params[k] = v
	}
	var missing []string
	for _, k := range []string{"Credential", "SignedHeaders", "Signature"} {
		if params[k] == "" {
			missing = append(missing, "Authorization header requires '"+k+"' parameter.")
		}
	}
	amzDate := r.Header.Get("X-Amz-Date")
	signedAt, err := time.Parse(amzDateFormat, amzDate)
	if err != nil {
		missing = append(missing, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
	}
	if len(missing) > 0 {
		return &authError{codeIncomplete, strings.Join(missing, " ") + " Authorization=" + auth}
	}
	scope := strings.Split(params["Credential"], "/")
	if len(scope) != 5 || scope[4] != sigV4Terminator {
		return &authError{codeIncomplete, "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '" + params["Credential"] + "'"}
	}
	key, day, region, service := scope[0], scope[1], scope[2], scope[3]
	if s.o.AccessKeyID != "" && key != s.o.AccessKeyID {
		return &authError{codeUnknownKey, msgUnknownKey}
	}
	if region != wantRegion {
		return &authError{codeBadSignature, "Credential should be scoped to a valid region, not '" + region + "'. "}
	}
	if service != wantService {
		return &authError{codeBadSignature, "Credential should be scoped to correct service: '" + wantService + "'. "}
	}
	if day != signedAt.Format(credentialDateFmt) {
		return &authError{codeBadSignature, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '" +
			day + "' != '" + signedAt.Format(credentialDateFmt) + "', from '" + amzDate + "'."}
	}
	switch {
	case signedAt.Before(now.Add(-maxSkew)):
		return &authError{codeBadSignature, "Signature expired: " + amzDate + " is now earlier than " +
			now.Add(-maxSkew).UTC().Format(amzDateFormat) + " (" + now.UTC().Format(amzDateFormat) + " - 5 min.)"}
	case signedAt.After(now.Add(maxSkew)):
		return &authError{codeBadSignature, "Signature not yet current: " + amzDate + " is still later than " +
			now.Add(maxSkew).UTC().Format(amzDateFormat) + " (" + now.UTC().Format(amzDateFormat) + " + 5 min.)"}
	}
	signed := strings.Split(params["SignedHeaders"], ";")
	if !containsHost(signed) {
		return &authError{codeBadSignature, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."}
	}
	canonical := canonicalRequest(r, signed, body)
	toSign := sigV4Algorithm + "\n" + amzDate + "\n" + strings.Join(scope[1:], "/") + "\n" + hexSHA256([]byte(canonical))
	want := hex.EncodeToString(hmacSHA256(s.signingKey(day, region, service), toSign))
	if !hmac.Equal([]byte(want), []byte(params["Signature"])) {
		// As AWS does, say what was signed, so that a client can compare.
		return &authError{codeBadSignature, msgBadSignature + "\n\nThe Canonical String for this request should have been\n'" +
			canonical + "'\n\nThe String-to-Sign should have been\n'" + toSign + "'\n"}
	}
	return nil
}

// accessKeyOf returns the access key ID of r's Authorization header, ""
// when it has none.
func accessKeyOf(r *http.Request) string {
	_, cred, ok := strings.Cut(r.Header.Get("Authorization"), "Credential=")
	if !ok {
		return ""
	}
	key, _, _ := strings.Cut(cred, "/")
	return key
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	return w
}

func containsHost(signed []string) bool {
	for _, h := range signed {
		if h == "host" {
			return true
		}
	}
	return false
}

// canonicalRequest builds SigV4's canonical request of r: method, the path
// URI-encoded once more (as every service but S3 signs it), the query sorted
// and strictly encoded, the signed headers with their values trimmed, the
// list of signed headers, and the body's SHA-256.
func canonicalRequest(r *http.Request, signed []string, body []byte) string {
	var b strings.Builder
	b.WriteString(r.Method + "\n")
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	b.WriteString(httpbinding.EscapePath(path, false) + "\n")
	b.WriteString(canonicalQuery(r.URL.Query()) + "\n")
	for _, h := range signed {
		var values []string
		switch h {
		case "host":
			values = []string{r.Host}
		case "content-length":
			values = r.Header.Values("Content-Length")
			if len(values) == 0 && r.ContentLength >= 0 {
				values = []string{strconv.FormatInt(r.ContentLength, 10)}
			}
		default:
			values = r.Header.Values(h)
		}
		for i, v := range values {
			values[i] = strings.Join(strings.Fields(v), " ")
		}
		b.WriteString(h + ":" + strings.Join(values, ",") + "\n")
	}
	b.WriteString("\n" + strings.Join(signed, ";") + "\n")
	b.WriteString(hexSHA256(body))
	return b.String()
}

// canonicalQuery sorts the parameters by name, then value, each encoded as
// RFC 3986 says (space as %20, only unreserved characters left as they are).
func canonicalQuery(q url.Values) string {
	var pairs [][2]string
	for k, vs := range q {
		for _, v := range vs {
			pairs = append(pairs, [2]string{uriEncode(k), uriEncode(v)})
		}
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i][0] != pairs[j][0] {
			return pairs[i][0] < pairs[j][0]
		}
		return pairs[i][1] < pairs[j][1]
	})
	out := make([]string, len(pairs))
	for i, p := range pairs {
		out[i] = p[0] + "=" + p[1]
	}
	return strings.Join(out, "&")
}

func uriEncode(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// signingKey derives the signing key of the server's secret for a day,
// region and service, remembering the last one: a day's requests share it,
// and the derivation is four of the five HMACs of a verification.
func (s *Server) signingKey(day, region, service string) []byte {
	scope := day + "/" + region + "/" + service
	s.sigMu.Lock()
	defer s.sigMu.Unlock()
	if s.sigScope == scope {
		return s.sigKey
	}
	k := hmacSHA256([]byte("AWS4"+s.o.SecretAccessKey), day)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	k = hmacSHA256(k, sigV4Terminator)
	s.sigScope, s.sigKey = scope, k
	return k
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func hexSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
