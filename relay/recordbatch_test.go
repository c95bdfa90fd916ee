package relay

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"net"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the writes that reach a real socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestRecordBatchOneWritePerFlush: over a TLS connection to a real TLS
// server, a 64 KiB write (one flush of the HostClient's buffer: four
// records) reaches the socket in one write instead of four, a larger write
// in one write per 64 KiB or so, and the server reads exactly the bytes
// written. Between writes the connection holds no buffer.
func TestRecordBatchOneWritePerFlush(t *testing.T) {
	p := startTLSPair(t, true)
	var sent bytes.Buffer
	write := func(size int) int64 {
		t.Helper()
		b := bytes.Repeat([]byte{byte(size)}, size)
		before := p.raw.writes.Load()
		if n, err := p.ic.Write(b); err != nil || n != size {
			t.Fatalf("write of %d: %d, %v", size, n, err)
		}
		sent.Write(b)
		if p.batch.buf != nil {
			t.Errorf("a buffer is held after the write of %d", size)
		}
		return p.raw.writes.Load() - before
	}
	for _, w := range []struct {
		size      int
		maxWrites int64
	}{
		{64 << 10, 1},  // four records, one system call
		{1 << 10, 1},   // one small record
		{256 << 10, 4}, // sixteen records
		{100, 1},
	} {
		if n := write(w.size); n < 1 || n > w.maxWrites {
			t.Errorf("a write of %d bytes took %d socket writes, want 1 to %d", w.size, n, w.maxWrites)
		}
	}
	if p.close() != sha256.Sum256(sent.Bytes()) {
		t.Errorf("the server did not read the %d bytes written", sent.Len())
	}
}

// tlsPair is an upstream connection as dialUpstream makes it (an idleConn
// over TLS over a recordBatch) to a real TLS server on loopback, which
// reads everything sent: decrypted, or (to keep the server's own
// allocations out of a measurement) as it comes off the socket after the
// handshake.
type tlsPair struct {
	ic    *idleConn
	batch *recordBatch
	raw   *countingConn
	got   chan [32]byte // the SHA-256 of what the server read, when the connection closed
}

func startTLSPair(t testing.TB, decrypt bool) *tlsPair {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS() // for its certificate; the listener below serves it
	srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &tlsPair{got: make(chan [32]byte, 1)}
	go func() {
		h := sha256.New()
		defer func() { p.got <- [32]byte(h.Sum(nil)) }()
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		defer raw.Close()
		tc := tls.Server(raw, srv.TLS)
		if err := tc.Handshake(); err != nil {
			return
		}
		c := net.Conn(tc)
		if !decrypt {
			c = raw
		}
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			h.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p.raw = &countingConn{Conn: raw}
	p.batch = &recordBatch{Conn: p.raw}
	tc := tls.Client(p.batch, &tls.Config{InsecureSkipVerify: true, DynamicRecordSizingDisabled: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	p.ic = &idleConn{Conn: tc, idle: 10 * time.Second, response: 10 * time.Second, batch: p.batch}
	return p
}

// close closes the client's side and returns the SHA-256 of what the
// server read.
func (p *tlsPair) close() [32]byte {
	_ = p.ic.Close()
	return <-p.got
}
