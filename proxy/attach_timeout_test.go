package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fakejira"
)

// TestStalledCallerIsCutOff: a caller that stops sending mid-body is cut off
// after --stream-idle-timeout; its slot is freed and Jira gets no complete upload.
func TestStalledCallerIsCutOff(t *testing.T) {
	j := startJira(t, false, func(c *configs.Config) {
		c.StreamIdleTimeout = 500 * time.Millisecond
		c.InstanceMaxStreams = 1
	})
	conn, err := net.Dial("tcp", strings.TrimPrefix(j.relay.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/instances/%s/issues/ITSM-5/attachments?filename=a.bin HTTP/1.1\r\nHost: relay\r\nX-Relay-Key: %s\r\nAuthorization: Basic x\r\nContent-Length: 1000000\r\n\r\n", j.tenant.ID, j.tenant.Client)
	conn.Write(make([]byte, 100000)) // then nothing
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled caller: %v", err)
	}
	if resp.StatusCode != 408 || time.Since(start) > 5*time.Second {
		t.Fatalf("stalled caller: %d after %v", resp.StatusCode, time.Since(start))
	}
	if ups, _ := j.jira.WaitUploads(1, 5*time.Second); len(ups) != 1 || ups[0].Complete {
		t.Fatalf("Jira saw %+v", ups)
	}
	// The stream slot is free again (max streams is 1).
	body := strings.NewReader("hello")
	if res := send(t, j.uploadReq(t, "ITSM-5", "filename=b.txt", "text/plain", body, 5)); res.Status != 200 {
		t.Fatalf("upload after the stalled one: %d %s", res.Status, res.Body)
	}
}

// TestHungJiraTimesOut: Jira reads the body and never answers: the caller
// gets 504 after --upstream-response-timeout, and the breaker counts it.
func TestHungJiraTimesOut(t *testing.T) {
	j := startJira(t, false, func(c *configs.Config) {
		c.UpstreamResponseTimeout = 500 * time.Millisecond
		c.StreamIdleTimeout = 300 * time.Millisecond
	})
	j.jira.SetFault(fakejira.Fault{Kind: fakejira.FaultHang, Count: 1})
	start := time.Now()
	res := send(t, j.uploadReq(t, "ITSM-6", "filename=a.txt", "text/plain", strings.NewReader("abc"), 3))
	if res.Status != 504 || res.ErrCode(t) != "upstream_timeout" {
		t.Fatalf("hung Jira: %d %s", res.Status, res.Body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	if res := send(t, j.uploadReq(t, "ITSM-6", "filename=a.txt", "text/plain", strings.NewReader("abc"), 3)); res.Status != 200 {
		t.Fatalf("after the hang: %d %s", res.Status, res.Body)
	}
}

// TestUnreachableJira: nothing listens at the instance's URL → 502.
func TestUnreachableJira(t *testing.T) {
	t.Parallel()
	j := startJira(t, false, nil)
	j.jira.Close()
	res := send(t, j.uploadReq(t, "ITSM-7", "filename=a.txt", "text/plain", strings.NewReader("abc"), 3))
	if res.Status != 502 || res.ErrCode(t) != "upstream_unreachable" {
		t.Fatalf("unreachable Jira: %d %s", res.Status, res.Body)
	}
}

// TestConcurrentUploadsMemoryStaysFlat: 32 concurrent 64 MiB uploads; the
// heap stays within 64 MiB of idle.
func TestConcurrentUploadsMemoryStaysFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 2 GiB")
	}
	j := startJira(t, false, func(c *configs.Config) {
		c.InstanceMaxStreams = 64
		c.InstanceBurst = 1000
		c.IPBurst = 1000
	})
	const size = 64 << 20
	var failed atomic.Int32
	idle, peak := heapDuring(func() {
		var wg sync.WaitGroup
		for i := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := j.uploadReq(t, fmt.Sprintf("ITSM-%d", 100+i), "filename=c.bin", "application/octet-stream", io.LimitReader(fakejira.NewContent(size, int64(i)), size), size)
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
				}
				if resp != nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
	})
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of 32 uploads failed", n)
	}
	if n := len(j.jira.CompletedUploads()); n != 32 {
		t.Fatalf("%d completed uploads at Jira", n)
	}
	t.Logf("heap in use: idle %d MiB, peak %d MiB during 32 concurrent 64 MiB uploads", idle>>20, peak>>20)
	if grew := int64(peak) - int64(idle); grew > 64<<20 {
		t.Fatalf("heap grew by %d MiB; want < 64 MiB", grew>>20)
	}
}

// TestUpstreamConnectionsArePooled: uploads to one instance reuse pooled
// connections to its Jira, at most --upstream-max-conns of them.
func TestUpstreamConnectionsArePooled(t *testing.T) {
	t.Parallel()
	j := startJira(t, false, func(c *configs.Config) {
		c.UpstreamMaxConns = 2
		c.InstanceMaxStreams = 16
	})
	for i := range 10 {
		if res := send(t, j.uploadReq(t, fmt.Sprintf("ITSM-%d", 300+i), "filename=a.txt", "text/plain", strings.NewReader("abc"), 3)); res.Status != 200 {
			t.Fatalf("upload %d: %d %s", i, res.Status, res.Body)
		}
	}
	if n := j.jira.OpenConnections(); n != 1 {
		t.Fatalf("after 10 sequential uploads Jira has %d connections open, want 1 (reused)", n)
	}
	j.jira.SetFault(fakejira.Fault{Kind: fakejira.FaultSlow, Delay: 300 * time.Millisecond})
	var wg sync.WaitGroup
	var peak atomic.Int32
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				if n := int32(j.jira.OpenConnections()); n > peak.Load() {
					peak.Store(n)
				}
			}
		}
	}()
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			send(t, j.uploadReq(t, fmt.Sprintf("ITSM-%d", 400+i), "filename=a.txt", "text/plain", strings.NewReader("abc"), 3))
		}()
	}
	wg.Wait()
	close(stop)
	if p := peak.Load(); p > 2 || p < 1 {
		t.Fatalf("6 concurrent uploads opened %d connections to Jira, want at most 2 (--upstream-max-conns)", p)
	}
}
