package fanout

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/gowren/gowren/backends"
)

// EnvWorkerStores is the environment variable that lists the stores a worker
// deployed to a cloud platform may open: the allow-list that `gowren deploy`
// writes into the function's environment. A request naming any other store
// fails before the worker opens it (ErrStoreRefused).
//
// Its value is a comma-separated list of entries:
//   - "*" allows every store;
//   - a scheme ("s3") allows every store of that scheme;
//   - a store URL ("s3://bucket/gowren?region=eu-west-1") allows that store
//     and those under its path. The query parameters the entry names must be
//     present in the job's store URL with the same values, and a job's store
//     URL that names an endpoint must name the entry's.
//
// When it is unset, the worker runtime decides: the Lambda and SCF runtimes
// allow the s3 scheme, the process runtime (whose only caller is its own
// driver) every store. A worker not started by a runtime (Handle called by a
// program) allows every store.
const EnvWorkerStores = "GOWREN_WORKER_STORES"

// workerStores is the allow-list of this process's worker, set by Init; nil
// allows every store.
var workerStorePolicy atomic.Pointer[storePolicy]

// storePolicy is a parsed allow-list.
type storePolicy struct {
	spec    string // as written, for messages
	source  string // where it came from, for messages
	any     bool
	schemes []string
	urls    []*url.URL
	err     error // a malformed spec: every store is refused, saying why
}

// setWorkerStores installs the allow-list of a worker started by rt.
func setWorkerStores(rt backends.Runtime) {
	spec, source := os.Getenv(EnvWorkerStores), EnvWorkerStores
	if spec == "" {
		spec, source = rt.Stores, "the "+rt.Name+" runtime's default"
		if spec == "" {
			spec = "*"
		}
	}
	workerStorePolicy.Store(parseStorePolicy(spec, source))
}

// parseStorePolicy parses an allow-list (see EnvWorkerStores). A malformed
// one gives a policy that refuses every store with the parse error.
func parseStorePolicy(spec, source string) *storePolicy {
	p := &storePolicy{spec: spec, source: source}
	for _, e := range strings.Split(spec, ",") {
		e = strings.TrimSpace(e)
		switch {
		case e == "":
			continue
		case e == "*":
			p.any = true
		case !strings.Contains(e, ":") || strings.HasSuffix(e, ":") || strings.HasSuffix(e, "://"):
			s := strings.TrimSuffix(strings.TrimSuffix(e, "//"), ":")
			if !validScheme(s) {
				p.err = fmt.Errorf("%s: entry %q is neither a scheme nor a store URL", source, e)
				return p
			}
			p.schemes = append(p.schemes, strings.ToLower(s))
		default:
			u, err := url.Parse(e)
			if err != nil || !validScheme(u.Scheme) {
				p.err = fmt.Errorf("%s: entry %q is neither a scheme nor a store URL", source, e)
				return p
			}
			p.urls = append(p.urls, u)
		}
	}
	if !p.any && len(p.schemes) == 0 && len(p.urls) == 0 {
		p.err = fmt.Errorf("%s is empty: it allows no store", source)
	}
	return p
}

func validScheme(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// ErrStoreRefused is the error of a job whose store the worker may not open:
// its URL is not in the worker's allow-list (EnvWorkerStores). The job
// fails at once; redeploy the function allowing the store, or use an
// allowed one.
var ErrStoreRefused = errors.New("fanout: store refused by the worker")

// check reports whether raw may be opened; the error says why not, and what
// to do.
func (p *storePolicy) check(raw string) error {
	if p == nil || p.any && p.err == nil {
		return nil
	}
	if p.err != nil {
		return fmt.Errorf("the worker's store allow-list is malformed (%v); fix %s in the function's environment", p.err, EnvWorkerStores)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("store URL %q: %v", raw, err)
	}
	for _, s := range p.schemes {
		if strings.EqualFold(u.Scheme, s) {
			return nil
		}
	}
	for _, a := range p.urls {
		if allowsURL(a, u) {
			return nil
		}
	}
	return fmt.Errorf("the worker may open only the stores %q (%s) and the job's store is %q: "+
		"deploy the function again allowing it (gowren deploy ... -stores), or run the job on an allowed store",
		p.spec, p.source, raw)
}

// allowsURL reports whether the store URL entry a allows the store u: same
// scheme and host, u's path equal to a's or under it, a's query parameters in
// u with the same values, and the same endpoint.
func allowsURL(a, u *url.URL) bool {
	if !strings.EqualFold(a.Scheme, u.Scheme) || a.Host != u.Host || a.User.String() != u.User.String() {
		return false
	}
	ap, up := cleanPath(a.Path), cleanPath(u.Path)
	if ap != "/" && up != ap && !strings.HasPrefix(up, ap+"/") {
		return false
	}
	aq, uq := a.Query(), u.Query()
	for k, vs := range aq {
		if !slices.Equal(vs, uq[k]) {
			return false
		}
	}
	// Where requests go is not left to the request.
	return slices.Equal(aq["endpoint"], uq["endpoint"])
}

func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	return path.Clean("/" + p)
}
