//go:build unix

package relay_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
)

// TestStalledDownloadsAreCutOff: callers who send a download's GET and
// never read (a receive buffer of a few KiB) take every connection of the
// instance's upstream pool and every stream slot. Within a few
// --stream-idle-timeouts the relay cuts them off: their connections are
// closed before the whole attachment was sent, the connections to Jira are
// closed (Jira sees none left open), the slots are free, and the next
// download and upload of the tenant succeed instead of waiting for a
// connection (502 upstream_unreachable, then 503 once the breaker opens).
func TestStalledDownloadsAreCutOff(t *testing.T) {
	const (
		idle    = time.Second
		stalled = 4
		size    = 64 << 20 // far more than the socket buffers between Jira and the caller
	)
	rg := startRig(t, false, func(c *configs.Config) {
		c.StreamIdleTimeout = idle
		c.UpstreamMaxConns = stalled
		c.InstanceMaxStreams = stalled
		c.UpstreamDialTimeout = 2 * time.Second // also how long a request waits for a pooled connection
		c.BreakerFailures = 3
		c.BreakerOpenTimeout = time.Minute
	})
	bigID, _ := rg.jira.AddAttachment("big.bin", "application/octet-stream", size, 1)
	small := []byte("a small attachment")
	smallID := rg.jira.AddAttachmentBytes("small.txt", "text/plain", small)

	// The receive buffer is set before connecting, so that the window the
	// caller offers is small from the start (shrinking it later makes the
	// relay's kernel back off its retransmissions for seconds).
	dialer := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	conns := make([]net.Conn, stalled)
	for i := range conns {
		c, err := dialer.Dial("tcp", strings.TrimPrefix(rg.relay.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /v1/instances/%s/attachments/%s/content HTTP/1.1\r\nHost: relay\r\nX-Relay-Key: %s\r\nAuthorization: Bearer t\r\n\r\n",
			rg.id, bigID, rg.key)
		conns[i] = c
	}
	eventually(t, "every stalled download reaches Jira", 10*time.Second, func() bool {
		return rg.jira.Requests() >= stalled
	})
	// The relay must let go of Jira's connections within a few idle
	// timeouts (generous: a loaded machine); before the fix it held them
	// until the callers went away.
	eventually(t, "the relay closes its connections to Jira", 10*idle, func() bool {
		return rg.jira.OpenConnections() == 0
	})
	for i, c := range conns {
		// The relay closed the caller's connection (EOF after what the
		// buffers held), short of the whole attachment.
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("stalled caller %d: its connection is still open after %d bytes", i+1, n)
		}
		if n >= size {
			t.Fatalf("stalled caller %d got %d bytes: the whole attachment", i+1, n)
		}
	}
	if res := rg.download(t, smallID); res.Status != 200 || string(res.Body) != string(small) {
		t.Fatalf("download after the stalled ones: %s", res)
	}
	if res := rg.upload(t, "ITSM-2", 64<<10, 1, false); res.Status != 200 {
		t.Fatalf("upload after the stalled downloads: %s", res)
	}
	// Every slot is free again: as many downloads at once as there are slots.
	results := make(chan answer, stalled)
	for range stalled {
		req, err := http.NewRequest("GET", rg.relay.URL+"/v1/instances/"+rg.id+"/attachments/"+smallID+"/content", nil)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			res, err := rg.trySend(req)
			if err != nil {
				res = answer{Body: []byte(err.Error())}
			}
			results <- res
		}()
	}
	for range stalled {
		if res := <-results; res.Status != 200 {
			t.Fatalf("one of %d concurrent downloads after the stalled ones: %s", stalled, res)
		}
	}
}

// TestDownloadIdleDeadlineEndsWithTheAnswer: the write deadline a download
// moves forward while it streams is cleared with its answer, so a
// keep-alive connection that then idles longer than --stream-idle-timeout
// still serves its next requests, downloads and others.
func TestDownloadIdleDeadlineEndsWithTheAnswer(t *testing.T) {
	const idle = 500 * time.Millisecond
	rg := startRig(t, false, func(c *configs.Config) { c.StreamIdleTimeout = idle })
	id, _ := rg.jira.AddAttachment("a.bin", "application/octet-stream", 256<<10, 3)
	c, err := net.Dial("tcp", strings.TrimPrefix(rg.relay.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	download := "GET /v1/instances/" + rg.id + "/attachments/" + id + "/content"
	for i, target := range []string{download, "GET /healthz", download, "GET /healthz"} {
		if i > 0 {
			time.Sleep(3 * idle)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(c, "%s HTTP/1.1\r\nHost: relay\r\nX-Relay-Key: %s\r\nAuthorization: Bearer t\r\n\r\n", target, rg.key)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s, request %d on one connection: %v", target, i+1, err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || (target == download && n != 256<<10) || resp.Close {
			t.Fatalf("%s, request %d on one connection: %d, %d bytes, %v, Connection: close %v", target, i+1, resp.StatusCode, n, err, resp.Close)
		}
	}
}

// TestStalledTLSHandshakeIsCutOff: a Jira that accepts the connection and
// never completes the TLS handshake is given --upstream-dial-timeout (the
// relay makes the TLS connection as part of dialling), not the time a
// request may wait for an answer: 504 upstream_timeout.
func TestStalledTLSHandshakeIsCutOff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent until the test ends
		}
	}()
	rg := startRig(t, false, func(c *configs.Config) {
		c.UpstreamDialTimeout = 500 * time.Millisecond
		c.UpstreamResponseTimeout = 5 * time.Minute
	})
	silent := rg.register(t, "https://"+ln.Addr().String())
	res, err := silent.tryUpload("ITSM-3", 1<<10, 1, false)
	if err != nil {
		t.Fatalf("upload to a Jira that never shakes hands: %v", err)
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if res.Status != 504 || json.Unmarshal(res.Body, &e) != nil || e.Error.Code != "upstream_timeout" {
		t.Fatalf("upload to a Jira that never shakes hands: %s, want 504 upstream_timeout", res)
	}
}

// eventually polls cond until it holds, failing the test after within.
func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(within); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, within)
		}
	}
}
