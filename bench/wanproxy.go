package main

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// delayProxy forwards TCP connections to a target address and holds every
// chunk of bytes for a one-way delay in each direction, so that a request
// and its answer take a round trip of twice the delay more than they would
// directly. Chunks are forwarded in order after their delay, each
// direction's reading going on meanwhile, so the bandwidth is kept: only
// the latency grows. A new connection costs one round trip more before its
// first bytes go on, as a TCP handshake across the same path would: the
// kernel completes the handshake with the client at once, so the proxy
// holds the first bytes until a round trip after it accepted.
//
// What it does not model: the client's TCP sees the short path to the proxy,
// not the long one, so its congestion window is not held back by the round
// trip; and no packet is lost.
type delayProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration // one way
	now    func() time.Time
	wait   func(until time.Time) // returns at until (or at once when past)

	// up counts the bytes read from clients, down those read from the
	// target.
	up, down atomic.Int64

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// newDelayProxy serves ln, forwarding each connection to target with delay
// each way, until Close.
func newDelayProxy(ln net.Listener, target string, delay time.Duration) *delayProxy {
	p := &delayProxy{ln: ln, target: target, delay: delay, now: time.Now,
		wait: func(until time.Time) { time.Sleep(time.Until(until)) }, conns: map[net.Conn]struct{}{}}
	return p
}

// serve accepts connections until the listener closes.
func (p *delayProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.forward(c)
		}()
	}
}

// track registers c for Close; false once closed.
func (p *delayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *delayProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// Close stops accepting, closes every connection and waits for their
// goroutines.
func (p *delayProxy) Close() error {
	p.mu.Lock()
	p.closed = true
	err := p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// forward carries one client connection to the target and back.
func (p *delayProxy) forward(client net.Conn) {
	defer p.untrack(client)
	defer client.Close()
	// The client could send only after the handshake's round trip.
	open := p.now().Add(2 * p.delay)
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server) {
		server.Close()
		return
	}
	defer p.untrack(server)
	defer server.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.pipe(server, client, open, &p.up)
	}()
	go func() {
		defer wg.Done()
		p.pipe(client, server, time.Time{}, &p.down)
	}()
	wg.Wait()
}

// chunk is bytes read, due to be written at due.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst, each chunk delay after it was read (and not
// before notBefore plus delay), counting the bytes in n. At src's end it
// half-closes dst once the chunks are out; on an error it closes both, so
// that the other direction ends too.
func (p *delayProxy) pipe(dst, src net.Conn, notBefore time.Time, n *atomic.Int64) {
	// A few chunks in flight per direction: enough for the bandwidth of a
	// delayed path, and back-pressure beyond.
	q := make(chan chunk, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		failed := false
		for c := range q {
			if failed {
				continue
			}
			p.wait(c.due)
			if _, err := dst.Write(c.b); err != nil {
				failed = true
				dst.Close()
				src.Close()
			}
		}
		if !failed {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			} else {
				dst.Close()
			}
		}
	}()
	buf := make([]byte, 8<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			n.Add(int64(k))
			t := p.now()
			if t.Before(notBefore) {
				t = notBefore
			}
			q <- chunk{b: append([]byte(nil), buf[:k]...), due: t.Add(p.delay)}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				dst.Close()
			}
			break
		}
	}
	close(q)
	<-done
}
