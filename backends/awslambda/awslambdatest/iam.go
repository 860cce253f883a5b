package awslambdatest

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// IAM. The server also answers the one IAM action `gowren deploy lambda`
// makes, PutRolePolicy, as IAM's Query API does (a form-encoded POST to /
// with Action and Version 2010-05-08, signed for service "iam" in
// us-east-1, IAM being global; answers and errors in XML), so that the
// deploy's grant of lambda:InvokeFunction to the function's role is
// checked with the real aws-sdk-go-v2 IAM client. A client reaches it with
// AWS_ENDPOINT_URL_IAM (or its BaseEndpoint) set to URL(). A role exists
// when a function of the server runs as it (its ARN's last element); roles
// have no other state here than their inline policies (RolePolicy).
//
// Source: IAM API Reference, PutRolePolicy and Common Errors
// (docs.aws.amazon.com/IAM/latest/APIReference/API_PutRolePolicy.html).

const (
	iamVersion = "2010-05-08"
	iamRegion  = "us-east-1"
	iamService = "iam"
	iamXMLNS   = "https://iam.amazonaws.com/doc/2010-05-08/"
)

var (
	iamRoleName   = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	iamPolicyName = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)
)

// isIAM reports whether r is a request of IAM's Query API.
func isIAM(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/" &&
		strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded")
}

// iamAuthCodes are IAM's codes for the refusals verify gives in Lambda's.
var iamAuthCodes = map[string]string{
	codeMissingToken: "MissingAuthenticationToken",
	codeIncomplete:   "IncompleteSignature",
	codeUnknownKey:   "InvalidClientTokenId",
	codeBadSignature: "SignatureDoesNotMatch",
}

// serveIAM answers an authenticated IAM request.
func (s *Server) serveIAM(w http.ResponseWriter, r *http.Request, body []byte) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		iamError(w, http.StatusBadRequest, "MalformedQueryString", err.Error())
		return
	}
	if v := form.Get("Version"); v != iamVersion {
		iamError(w, http.StatusBadRequest, "InvalidAction", fmt.Sprintf("Could not find operation %s for version %s", form.Get("Action"), v))
		return
	}
	switch form.Get("Action") {
	case "PutRolePolicy":
		s.putRolePolicy(w, form)
	default:
		iamError(w, http.StatusBadRequest, "InvalidAction", fmt.Sprintf("Could not find operation %s for version %s", form.Get("Action"), iamVersion))
	}
}

func (s *Server) putRolePolicy(w http.ResponseWriter, form url.Values) {
	role, name, doc := form.Get("RoleName"), form.Get("PolicyName"), form.Get("PolicyDocument")
	switch {
	case !iamRoleName.MatchString(role):
		iamError(w, http.StatusBadRequest, "ValidationError", fmt.Sprintf("1 validation error detected: Value '%s' at 'roleName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+", role))
		return
	case !iamPolicyName.MatchString(name):
		iamError(w, http.StatusBadRequest, "ValidationError", fmt.Sprintf("1 validation error detected: Value '%s' at 'policyName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+", name))
		return
	case !json.Valid([]byte(doc)):
		iamError(w, http.StatusBadRequest, "MalformedPolicyDocument", "Syntax errors in policy.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.o.DenyIAM {
		iamError(w, http.StatusForbidden, "AccessDenied", fmt.Sprintf("User is not authorized to perform: iam:PutRolePolicy on resource: role %s because no identity-based policy allows the iam:PutRolePolicy action", role))
		return
	}
	known := false
	for _, f := range s.functions {
		if f.role != "" && f.role[strings.LastIndexByte(f.role, '/')+1:] == role {
			known = true
		}
	}
	if !known {
		iamError(w, http.StatusNotFound, "NoSuchEntity", fmt.Sprintf("The role with name %s cannot be found.", role))
		return
	}
	if s.rolePolicies == nil {
		s.rolePolicies = map[string]string{}
	}
	s.rolePolicies[role+"/"+name] = doc
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<PutRolePolicyResponse xmlns="%s"><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></PutRolePolicyResponse>`, iamXMLNS, requestID())
}

// RolePolicy returns the inline policy name of role, as PutRolePolicy
// left it.
func (s *Server) RolePolicy(role, name string) (doc string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	doc, ok = s.rolePolicies[role+"/"+name]
	return doc, ok
}

// iamError writes an error of IAM's Query API.
func iamError(w http.ResponseWriter, status int, code, message string) {
	typ := "Sender"
	if status >= 500 {
		typ = "Receiver"
	}
	var b strings.Builder
	b.WriteString(`<ErrorResponse xmlns="` + iamXMLNS + `"><Error><Type>` + typ + `</Type><Code>`)
	_ = xml.EscapeText(&b, []byte(code))
	b.WriteString(`</Code><Message>`)
	_ = xml.EscapeText(&b, []byte(message))
	b.WriteString(`</Message></Error><RequestId>` + requestID() + `</RequestId></ErrorResponse>`)
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-ErrorType", code) // for the server's error counts only
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}
