package main

import (
	"bytes"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestDelayProxy sends a megabyte each way through the proxy, on a frozen
// clock: every byte arrives in order, the proxy counts them, and each chunk
// waits until the delay after it was read, the client's first ones until a
// round trip more (the handshake).
func TestDelayProxy(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		c, err := echo.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const delay = 40 * time.Millisecond
	t0 := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	p := newDelayProxy(ln, echo.Addr().String(), delay)
	p.now = func() time.Time { return t0 }
	var mu sync.Mutex
	waits := map[time.Duration]int{}
	p.wait = func(until time.Time) {
		mu.Lock()
		waits[until.Sub(t0)]++
		mu.Unlock()
	}
	go p.serve()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(rand.IntN(256))
	}
	go func() {
		c.Write(want)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes back, not the %d sent (or not in order)", len(got), len(want))
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if up, down := p.up.Load(), p.down.Load(); up != int64(len(want)) || down != int64(len(want)) {
		t.Errorf("counted %d bytes up and %d down; want %d each", up, down, len(want))
	}
	// Upstream chunks were read at t0, before the handshake's round trip
	// ended: due at t0 + 2 delay + delay. Downstream ones at t0 + delay.
	keys := slices.Sorted(maps.Keys(waits))
	if !slices.Equal(keys, []time.Duration{delay, 3 * delay}) {
		t.Errorf("chunks waited until %v after t0; want %v (downstream) and %v (upstream)", keys, delay, 3*delay)
	}
}

// TestDelayProxyClose closes the proxy with a connection open: Close ends
// it and returns.
func TestDelayProxyClose(t *testing.T) {
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := target.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := newDelayProxy(ln, target.Addr().String(), 0)
	go p.serve()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-accepted // the proxy is connected through
	defer s.Close()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes from a connection of a closed proxy", n)
	}
	if _, err := s.Read(make([]byte, 1)); err == nil {
		t.Fatal("the target's side stayed open after Close")
	}
}

func TestParseTrees(t *testing.T) {
	got, err := parseTrees("0, 100,,2")
	if err != nil || !slices.Equal(got, []int{0, 100, 2}) {
		t.Errorf("parseTrees(\"0, 100,,2\") = %v, %v", got, err)
	}
	for _, bad := range []string{"1", "-3", "x", "10.5"} {
		if _, err := parseTrees(bad); err == nil {
			t.Errorf("parseTrees(%q) accepted it", bad)
		}
	}
}

// TestAllLeavesOutBurst: all runs neither the burst scenarios nor
// burst-tree-wan, which take minutes and need root; both run by name.
func TestAllLeavesOutBurst(t *testing.T) {
	all, err := selectScenarios("all")
	if err != nil {
		t.Fatal(err)
	}
	if all["burst"] || all["wan"] || !all["cut"] {
		t.Errorf("all selected %v; want cut and the others but burst and wan", all)
	}
	wan, err := selectScenarios("wan")
	if err != nil || len(wan) != 1 || !wan["wan"] {
		t.Errorf("selectScenarios(\"wan\") = %v, %v", wan, err)
	}
}

func TestParseTBFStats(t *testing.T) {
	out := "qdisc tbf 8018: root refcnt 3 rate 20Mbit burst 32Kb lat 100ms \n Sent 13923106 bytes 41022 pkt (dropped 12, overlimits 3456 requeues 0) \n backlog 0b 0p requeues 0\n"
	got, err := parseTBFStats(out)
	if err != nil || got != [2]int64{12, 3456} {
		t.Errorf("parseTBFStats = %v, %v; want [12 3456]", got, err)
	}
	if _, err := parseTBFStats("qdisc noqueue 0: root refcnt 2\n"); err == nil {
		t.Error("parseTBFStats accepted output without counts")
	}
}
