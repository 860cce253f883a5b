// Package multi runs one job on several backends at once: Lambda in two
// regions, SCF and the laptop's own cores, or K copies of one function
// (each Lambda function ramps on its own). The executor schedules each
// member apart, with a window, ramp and throttle accounting of its own, and
// sends tasks to whichever member has room; a member that throttles, fails
// or refuses for good (bad credentials, a deleted function: its error is
// logged once) never holds the others back. Every task still settles once.
//
// Every member must reach the job's store: with members in several clouds
// that is one cloud's object store, and the others pay its egress.
//
//	b, err := backends.Open(ctx, "multi://?b="+url.QueryEscape("lambda://f?region=us-east-1")+
//		"&b="+url.QueryEscape("lambda://f?region=eu-west-1"))
package multi

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	"github.com/gowren/gowren/backends"
)

// Scheme is the URL scheme of this backend: multi://?b=URL&b=URL, each
// member's URL query-escaped.
const Scheme = "multi"

func init() {
	backends.Register(Scheme, open)
}

// Backend is a group of backends. It implements backends.Group; when every
// member invokes asynchronously, the value New returns implements
// backends.AsyncBackend too.
type Backend struct {
	members []backends.Backend
	limits  backends.Limits
	next    atomic.Uint64
	closed  atomic.Bool
}

// asyncBackend is a Backend whose members all invoke asynchronously.
type asyncBackend struct{ *Backend }

// New returns a backend made of bs, in this order. It owns them: Close
// closes them all. It panics without a member.
func New(bs ...backends.Backend) backends.Group {
	if len(bs) == 0 {
		panic("multi: New with no member")
	}
	b := &Backend{members: slices.Clone(bs), limits: combine(bs)}
	for _, m := range bs {
		if _, ok := m.(backends.AsyncBackend); !ok {
			return b
		}
	}
	return asyncBackend{b}
}

// combine describes the group: payload limits every member accepts, the
// sum of the members' concurrency, and what all of them share.
func combine(bs []backends.Backend) backends.Limits {
	var l backends.Limits
	for k, m := range bs {
		ml := m.Limits()
		if k == 0 {
			l = ml
			continue
		}
		l.MaxRequestBytes = minLimit(l.MaxRequestBytes, ml.MaxRequestBytes)
		l.MaxResponseBytes = minLimit(l.MaxResponseBytes, ml.MaxResponseBytes)
		l.MaxAsyncRequestBytes = minLimit(l.MaxAsyncRequestBytes, ml.MaxAsyncRequestBytes)
		l.Timeout = minLimit(l.Timeout, ml.Timeout)
		l.Parallel = max(1, min(max(l.Parallel, 1), max(ml.Parallel, 1)))
		if l.Concurrency > 0 && ml.Concurrency > 0 {
			l.Concurrency += ml.Concurrency
		} else {
			l.Concurrency = 0 // one without a limit: the executor's default
		}
		if l.Platform != ml.Platform || l.MemoryMB != ml.MemoryMB {
			l.Platform, l.MemoryMB = "", 0 // mixed: no single price list
		}
		l.InProcess = l.InProcess && ml.InProcess
		l.SameHost = l.SameHost && ml.SameHost
		l.Nested = l.Nested || ml.Nested // the executor uses a tree on the members that can
	}
	return l
}

// minLimit is the smaller of two limits where 0 means none.
func minLimit[T int | time.Duration](a, b T) T {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// Members returns the members, in the order given.
func (b *Backend) Members() []backends.Backend { return slices.Clone(b.members) }

// Limits describes the group: see combine.
func (b *Backend) Limits() backends.Limits { return b.limits }

// Invoke sends payload to the members in turn. An executor does not call
// it: it schedules the members itself.
func (b *Backend) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	if b.closed.Load() {
		return nil, backends.ErrClosed
	}
	m := b.members[int(b.next.Add(1)-1)%len(b.members)]
	return m.Invoke(ctx, payload)
}

// InvokeAsync sends payload asynchronously to the members in turn.
func (b asyncBackend) InvokeAsync(ctx context.Context, payload []byte) error {
	if b.closed.Load() {
		return backends.ErrClosed
	}
	m := b.members[int(b.next.Add(1)-1)%len(b.members)]
	return m.(backends.AsyncBackend).InvokeAsync(ctx, payload)
}

// Close closes every member.
func (b *Backend) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, m := range b.members {
		errs = append(errs, m.Close())
	}
	return errors.Join(errs...)
}

// open opens multi://?b=URL&b=URL: each member from its URL.
func open(ctx context.Context, u *url.URL) (backends.Backend, error) {
	q := u.Query()
	urls := q["b"]
	for k := range q {
		if k != "b" {
			return nil, fmt.Errorf("multi: unknown parameter %q in %q: want only b=URL, once per member", k, u.Redacted())
		}
	}
	if u.Host != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("multi: %q: members go in b= parameters (multi://?b=URL&b=URL), not in the host or path", u.Redacted())
	}
	if len(urls) == 0 {
		return nil, fmt.Errorf("multi: %q names no member: add b=URL (query-escaped) for each", u.Redacted())
	}
	var bs []backends.Backend
	for k, m := range urls {
		mb, err := backends.Open(ctx, m)
		if err != nil {
			for _, o := range bs {
				o.Close()
			}
			return nil, fmt.Errorf("multi: member %d (%s): %w", k, m, err)
		}
		bs = append(bs, mb)
	}
	return New(bs...), nil
}
