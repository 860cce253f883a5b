package awslambdatest

import (
	"net/http"
	"regexp"
	"strings"
)

// Patterns of the Lambda API's model: a function name, a qualifier (version
// or alias), an alias name (not all digits) and a version number.
var (
	nameRE      = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	qualifierRE = regexp.MustCompile(`^(\$LATEST|[a-zA-Z0-9_-]{1,128})$`)
	versionRE   = regexp.MustCompile(`^[0-9]{1,19}$`)
	regionRE    = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$`)
	accountRE   = regexp.MustCompile(`^[0-9]{12}$`)
)

// namePattern is the pattern the model gives the FunctionName of Invoke, as
// Lambda quotes it in validation errors.
const namePattern = `(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?`

// latest is the version of the unpublished function.
const latest = "$LATEST"

// ref is a function as a request names it: by name ("my-function"), ARN
// ("arn:aws:lambda:us-east-1:123456789012:function:my-function") or partial
// ARN ("123456789012:function:my-function"), each optionally followed by
// ":QUALIFIER".
type ref struct {
	name, qualifier string
	region, account string // empty unless the reference names them
}

// parseRef parses a function reference; ok is false when it has none of the
// forms Lambda accepts.
func parseRef(s string) (r ref, ok bool) {
	parts := strings.Split(s, ":")
	switch {
	case len(parts) >= 7 && parts[0] == "arn":
		// arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
		if len(parts) > 8 || !strings.HasPrefix(parts[1], "aws") || parts[2] != "lambda" || parts[5] != "function" ||
			!regionRE.MatchString(parts[3]) || !accountRE.MatchString(parts[4]) {
			return r, false
		}
		r = ref{name: parts[6], region: parts[3], account: parts[4]}
		parts = parts[6:]
	case len(parts) >= 3 && parts[1] == "function":
		// ACCOUNT:function:NAME[:QUALIFIER]
		if len(parts) > 4 || !accountRE.MatchString(parts[0]) {
			return r, false
		}
		r = ref{name: parts[2], account: parts[0]}
		parts = parts[2:]
	case len(parts) <= 2:
		r = ref{name: parts[0]}
	default:
		return r, false
	}
	if len(parts) == 2 {
		if !qualifierRE.MatchString(parts[1]) {
			return r, false
		}
		r.qualifier = parts[1]
	}
	return r, nameRE.MatchString(r.name)
}

// apiErr is an error answer of the API.
type apiErr struct {
	status        int
	code, message string
}

func (e *apiErr) write(w http.ResponseWriter) { apiError(w, e.status, e.code, e.message) }

// target is what a function reference resolves to.
type target struct {
	fn      *function // the function
	version string    // latest, or the number of a published version
	arn     string    // the function's ARN as the request names it: with its qualifier, if any
}

// config returns the configuration of the target's version.
func (t target) config(s *Server) map[string]any {
	if t.version == latest {
		return t.fn.config(s)
	}
	return t.fn.versions[versionIndex(t.version)].config(s)
}

func versionIndex(v string) int {
	n := 0
	for _, c := range v {
		n = n*10 + int(c-'0')
	}
	return n - 1
}

// resolveLocked resolves the function reference raw of a request of
// operation op, with the request's Qualifier query parameter q (which may be
// empty), as Lambda does: a qualifier in the name and another in the query
// are refused, a function of another region is not found, one of another
// account is not the caller's to use, and an unknown version or alias is
// not found. s.mu is held.
func (s *Server) resolveLocked(op, raw, q string) (target, *apiErr) {
	r, ok := parseRef(raw)
	if !ok {
		return target{}, &apiErr{http.StatusBadRequest, "ValidationException",
			"1 validation error detected: Value '" + raw + "' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: " + namePattern}
	}
	if q != "" {
		if !qualifierRE.MatchString(q) {
			return target{}, &apiErr{http.StatusBadRequest, "ValidationException",
				"1 validation error detected: Value '" + q + "' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)"}
		}
		if r.qualifier != "" && r.qualifier != q {
			return target{}, &apiErr{http.StatusBadRequest, "InvalidParameterValueException",
				"The derived qualifier from the function name does not match the specified qualifier."}
		}
		r.qualifier = q
	}
	arn := s.arn(r.name)
	if r.qualifier != "" {
		arn += ":" + r.qualifier
	}
	if r.region != "" && r.region != s.o.Region {
		return target{}, &apiErr{http.StatusNotFound, "ResourceNotFoundException",
			"Functions from '" + r.region + "' are not reachable in this region ('" + s.o.Region + "')"}
	}
	if r.account != "" && r.account != s.o.Account {
		action := "lambda:" + op
		if op == "Invoke" {
			action = "lambda:InvokeFunction"
		}
		foreign := "arn:aws:lambda:" + s.o.Region + ":" + r.account + ":function:" + r.name
		return target{}, &apiErr{http.StatusForbidden, "AccessDeniedException",
			"User: arn:aws:iam::" + s.o.Account + ":user/awslambdatest is not authorized to perform: " + action +
				" on resource: " + foreign + " because no resource-based policy allows the " + action + " action"}
	}
	notFound := &apiErr{http.StatusNotFound, "ResourceNotFoundException", "Function not found: " + arn}
	f := s.functions[r.name]
	if f == nil {
		return target{}, notFound
	}
	t := target{fn: f, version: latest, arn: arn}
	switch {
	case r.qualifier == "" || r.qualifier == latest:
	case versionRE.MatchString(r.qualifier):
		i := versionIndex(r.qualifier)
		if i < 0 || i >= len(f.versions) {
			return target{}, notFound
		}
		t.version = f.versions[i].version
	default:
		a := f.aliases[r.qualifier]
		if a == nil {
			return target{}, notFound
		}
		t.version = a.version
	}
	return t, nil
}

// resolveUnqualifiedLocked resolves the reference of an operation on the
// function itself (updates, publishing, aliases), which takes no
// qualifier.
func (s *Server) resolveUnqualifiedLocked(op, raw string) (*function, *apiErr) {
	if r, ok := parseRef(raw); ok && r.qualifier != "" {
		return nil, &apiErr{http.StatusBadRequest, "InvalidParameterValueException",
			op + " acts on the function itself: name it without a version or alias (got '" + raw + "')"}
	}
	t, e := s.resolveLocked(op, raw, "")
	return t.fn, e
}

// notReadyLocked returns the refusal of an operation that needs f to be
// neither Pending nor updating, as Lambda words it; nil when f is ready.
func (s *Server) notReadyLocked(f *function) *apiErr {
	switch {
	case f.state == "Pending":
		return &apiErr{http.StatusConflict, "ResourceConflictException",
			"The operation cannot be performed at this time. The function is currently in the following state: Pending"}
	case f.update == "InProgress":
		return &apiErr{http.StatusConflict, "ResourceConflictException",
			"The operation cannot be performed at this time. An update is in progress for resource: " + s.arn(f.name)}
	}
	return nil
}
