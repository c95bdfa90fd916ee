package resiliencetest

// Client faults: callers that abort mid-upload, slowloris on headers and on
// bodies, ten thousand connections held open, and floods of distinct client
// addresses and instance ids. The relay must serve everyone else meanwhile,
// leave no complete upload at Jira for a broken body, free every slot, and
// keep its memory bounded.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
)

// rawUploadHead is the head of an upload sent on a raw connection.
func rawUploadHead(tn tenant, issue, kind string, length int) string {
	q, ct := "?filename=abort.bin", "application/octet-stream"
	switch kind {
	case kindBase64:
		q += "&encoding=base64"
	case kindMultipart:
		q, ct = "", "multipart/form-data; boundary=XyZ"
	}
	return fmt.Sprintf("POST /v1/instances/%s/issues/%s/attachments%s HTTP/1.1\r\nHost: relay\r\nX-Relay-Key: %s\r\nAuthorization: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		tn.ID, issue, q, tn.Client, jiraAuth, ct, length)
}

// rawUploadBody is length bytes of a valid body of kind (the multipart one
// is a file part that never gets its closing boundary within length).
func rawUploadBody(kind string, length int) []byte {
	switch kind {
	case kindBase64:
		return bytes.Repeat([]byte("QUFB"), length/4+1)[:length]
	case kindMultipart:
		head := "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"abort.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
		return append([]byte(head), bytes.Repeat([]byte("x"), length)...)[:length]
	}
	return bytes.Repeat([]byte("r"), length)
}

func TestClientAbortsMidUpload(t *testing.T) {
	fj := relaytest.StartJira(t, fakejira.Options{})
	logs := &relaytest.LogBuffer{}
	relay := relaytest.StartWith(t, relaytest.Options{Logger: logs.Logger(), Mutate: func(c *configs.Config) {
		relaxedLimits(c)
		c.InstanceMaxStreams = 4
	}})
	a := newAPI(t, relay.URL)
	tn := a.MustRegister(t, fj.URL())
	if res := a.upload(tn, "AB-1", "warm.bin", content(1<<10, 1), kindRaw); res.Status != 200 {
		t.Fatalf("warm-up: %s", res)
	}
	a.HTTP.CloseIdleConnections()
	base := settled()

	const total = 1 << 20
	type point struct {
		name string
		sent int // body bytes sent before the caller goes away
	}
	points := []point{{"after the headers", 0}, {"mid-body", 256 << 10}, {"one byte short", total - 1}}
	aborts := 0
	abort := func(kind string, p point, issue string) {
		c, err := net.DialTimeout("tcp", relay.Addr, 5*time.Second)
		if err != nil {
			t.Error(err)
			return
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, rawUploadHead(tn, issue, kind, total))
		_, _ = c.Write(rawUploadBody(kind, p.sent))
		time.Sleep(150 * time.Millisecond) // let the relay stream what it got to Jira
		_ = c.Close()
	}
	for _, kind := range []string{kindRaw, kindBase64, kindMultipart} {
		for _, p := range points {
			abort(kind, p, "AB-2")
			aborts++
		}
	}
	// The same, twelve at once.
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			abort([]string{kindRaw, kindBase64, kindMultipart}[i%3], points[i%3], fmt.Sprintf("AB-%d", 10+i))
		}()
	}
	wg.Wait()
	aborts += 12
	time.Sleep(300 * time.Millisecond)
	attempts := fj.Uploads()[1:] // all but the warm-up
	for _, u := range attempts {
		if u.Complete {
			t.Errorf("an aborted upload completed at Jira: issue %s, %d bytes, parts %d", u.Issue, u.Size, u.Parts)
		}
	}
	t.Logf("%d aborts; %d reached Jira as upload attempts, none complete", aborts, len(attempts))

	// Every stream slot (4) is free again: four uploads held open at once are
	// all admitted, then complete.
	var held []*io.PipeWriter
	results := make(chan answer, 4)
	for i := range 4 {
		pr, pw := io.Pipe()
		held = append(held, pw)
		req, _ := http.NewRequest("POST", relay.URL+"/v1/instances/"+tn.ID+"/issues/AB-"+strconv.Itoa(30+i)+"/attachments?filename=after.bin", pr)
		req.ContentLength = 8
		req.Header.Set("X-Relay-Key", tn.Client)
		req.Header.Set("Authorization", jiraAuth)
		go func() { results <- a.Send(req) }()
		_, _ = pw.Write([]byte("1234"))
	}
	time.Sleep(200 * time.Millisecond)
	for _, pw := range held {
		_, _ = pw.Write([]byte("5678"))
		_ = pw.Close()
	}
	for range 4 {
		if res := <-results; res.Err != nil || res.Status != 200 {
			t.Errorf("upload after the aborts (stream slots must be free): %s", res)
		}
	}
	noPanics(t, logs)
	a.HTTP.CloseIdleConnections()
	noLeak(t, "after the aborts", base, 12, 10, 15*time.Second)
}

// readUntilClosed reads from c until it is closed; it returns what came and
// how long it took.
func readUntilClosed(c net.Conn, start time.Time) ([]byte, time.Duration, error) {
	b, err := io.ReadAll(c)
	return b, time.Since(start), err
}

func TestSlowlorisHeaders(t *testing.T) {
	relay := relaytest.StartWith(t, relaytest.Options{Mutate: func(c *configs.Config) {
		relaxedLimits(c)
		c.HeaderReadTimeout = time.Second
	}})
	a := newAPI(t, relay.URL)
	tn := a.MustRegister(t, "https://slow.atlassian.net")
	base := settled()

	const n = 60
	type result struct {
		got  []byte
		took time.Duration
		err  error
	}
	results := make(chan result, n)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		c, err := net.DialTimeout("tcp", relay.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		start := time.Now()
		switch i % 3 {
		case 0: // a partial header line, then nothing
			_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ")
		case 1: // a partial request line, then nothing
			_, _ = io.WriteString(c, "GET /heal")
		case 2: // a header line trickled one byte every 200 ms
			_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ")
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(200 * time.Millisecond):
					}
					if _, err := c.Write([]byte("a")); err != nil {
						return
					}
				}
			}()
		}
		go func() {
			got, took, err := readUntilClosed(c, start)
			_ = c.Close()
			results <- result{got, took, err}
		}()
	}
	// Meanwhile other callers are served, promptly.
	var served, slow int
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		start := time.Now()
		res := a.Do("GET", "/v1/instances/"+tn.ID+"/config", tn.Client, nil)
		if res.Err != nil || res.Status != 200 {
			t.Errorf("a caller during the slowloris: %s", res)
		}
		if time.Since(start) > 500*time.Millisecond {
			slow++
		}
		served++
		time.Sleep(20 * time.Millisecond)
	}
	if slow > 0 {
		t.Errorf("%d of %d requests during the slowloris took over 500 ms", slow, served)
	}
	var longest time.Duration
	answers := map[string]int{}
	for range n {
		r := <-results
		longest = max(longest, r.took)
		switch {
		case errors.Is(r.err, syscall.ECONNRESET):
			// A trickling client still writing when the relay closes gets
			// a reset (unread bytes at close): closed all the same.
			answers["closed by a reset"]++
		case r.err != nil:
			t.Errorf("a slowloris connection was not closed: %v after %v", r.err, r.took)
		case len(r.got) == 0:
			answers["closed without an answer"]++
		default:
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(r.got)), nil)
			if err != nil {
				t.Errorf("slowloris answer is not HTTP: %q", r.got)
				continue
			}
			res := relaytest.ReadAnswer(resp)
			code, ok := res.RelayError()
			if !ok {
				code = "(not the JSON error shape) " + relaytest.Clip(res.Body)
			}
			answers[fmt.Sprintf("%d %s", resp.StatusCode, code)]++
		}
		if r.took > 3*time.Second {
			t.Errorf("a slowloris connection was held %v (header read timeout 1s)", r.took)
		}
	}
	close(stop)
	wg.Wait()
	for a, k := range answers {
		if a != "408 request_timeout" && a != "closed without an answer" && a != "closed by a reset" {
			t.Errorf("%d of %d slowloris connections were answered %s, want 408 request_timeout (or a bare close)", k, n, a)
		}
	}
	t.Logf("%d slowloris connections: %v, the last closed after %v; %d other requests served meanwhile", n, answers, longest.Round(time.Millisecond), served)
	a.HTTP.CloseIdleConnections()
	noLeak(t, "after the slowloris", base, 10, 6, 15*time.Second)
}

func TestSlowlorisBodies(t *testing.T) {
	fj := relaytest.StartJira(t, fakejira.Options{})
	relay := relaytest.StartWith(t, relaytest.Options{Mutate: func(c *configs.Config) {
		relaxedLimits(c)
		c.StreamIdleTimeout = time.Second
		c.HeaderReadTimeout = 2 * time.Second
		c.InstanceMaxStreams = 1
	}})
	a := newAPI(t, relay.URL)
	tn := a.MustRegister(t, fj.URL())
	keys := relaytest.CountKeys(t, relay.Etcd, relay.Config.EtcdPrefix)

	t.Run("upload stalls mid-body", func(t *testing.T) {
		c := dialRelay(t, relay.Addr, 10*time.Second)
		_, _ = io.WriteString(c, rawUploadHead(tn, "SL-1", kindRaw, 1<<20))
		_, _ = c.Write(rawUploadBody(kindRaw, 100<<10))
		start := time.Now()
		// The one stream slot is taken meanwhile.
		time.Sleep(200 * time.Millisecond)
		res := a.upload(tn, "SL-2", "meanwhile.bin", []byte("x"), kindRaw)
		wantErr(t, "upload while the stalled one holds the only slot", res, 429, "rate_limited_streams")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer to a stalled body: %v", err)
		}
		wantErr(t, "stalled body", relaytest.ReadAnswer(resp), 408, "body_timeout")
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("stalled body answered after %v (stream idle timeout 1s)", d)
		}
		for _, u := range fj.Uploads() {
			if u.Issue == "SL-1" && u.Complete {
				t.Errorf("the stalled upload completed at Jira")
			}
		}
		// The slot is free again.
		ok := relaytest.Eventually(2*time.Second, func() bool {
			return a.upload(tn, "SL-3", "after.bin", []byte("after"), kindRaw).Status == 200
		})
		if !ok {
			t.Errorf("the stream slot was not freed after the stalled body")
		}
	})

	t.Run("JSON body stalls", func(t *testing.T) {
		c := dialRelay(t, relay.Addr, 10*time.Second)
		body := `{"name":"Slow Loris","email":"slow@example.com"}`
		fmt.Fprintf(c, "PUT /v1/instances/%s/users/slow HTTP/1.1\r\nHost: relay\r\nX-Relay-Key: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			tn.ID, tn.Client, len(body), body[:10])
		start := time.Now()
		got, took, err := readUntilClosed(c, start)
		if err != nil {
			t.Fatalf("stalled JSON body: connection not closed: %v after %v", err, took)
		}
		if took > 4*time.Second {
			t.Errorf("stalled JSON body held %v (header read timeout 2s)", took)
		}
		if len(got) > 0 {
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil)
			if err != nil {
				t.Fatalf("answer is not HTTP: %q", got)
			}
			res := relaytest.ReadAnswer(resp)
			if code, ok := res.RelayError(); !ok || resp.StatusCode != 408 {
				t.Errorf("stalled JSON body: %s (code %q), want 408 in the JSON error shape", res, code)
			}
		}
		t.Logf("stalled JSON body: %d bytes of answer, closed after %v", len(got), took.Round(time.Millisecond))
	})
	if now := relaytest.CountKeys(t, relay.Etcd, relay.Config.EtcdPrefix); now != keys {
		t.Errorf("etcd keys: %d before, %d after the stalled bodies", keys, now)
	}
}

// raiseFDLimit raises the soft (and if need be hard) limit of open files to
// want, as far as the process may; it returns the limit in force.
func raiseFDLimit(t *testing.T, want uint64) uint64 {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	if orig.Cur >= want {
		return orig.Cur
	}
	nl := syscall.Rlimit{Cur: want, Max: max(orig.Max, want)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl); err != nil {
		nl = syscall.Rlimit{Cur: orig.Max, Max: orig.Max}
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
	var now syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now)
	return now.Cur
}

func TestTenThousandConnections(t *testing.T) {
	const want = 10000
	limit := raiseFDLimit(t, want+2000)
	fj := relaytest.StartJira(t, fakejira.Options{})
	relay := relaytest.StartWith(t, relaytest.Options{Mutate: func(c *configs.Config) {
		relaxedLimits(c)
		c.HeaderReadTimeout = 60 * time.Second
		c.IdleTimeout = 60 * time.Second
	}})
	a := newAPI(t, relay.URL)
	tn := a.MustRegister(t, fj.URL())
	a.HTTP.CloseIdleConnections()
	base := settled()
	n := want
	// The relay holds one end of every connection; a child process the other.
	if room := int(limit) - base.fds - 500; room < n {
		n = room
		t.Logf("RLIMIT_NOFILE is %d and cannot be raised: holding %d connections instead of %d", limit, n, want)
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse

	start := time.Now()
	held, failed := startHolder(t, relay.Addr, n)
	if failed > 0 {
		t.Fatalf("%d of %d connections could not be opened or served", failed, n)
	}
	t.Logf("%d connections open after %v (%d fds in the relay's process)", n, time.Since(start).Round(time.Millisecond), openFDs())
	runtime.GC()
	runtime.ReadMemStats(&ms)
	t.Logf("heap in use: %d MiB before, %d MiB with %d connections held", heapBefore>>20, ms.HeapInuse>>20, n)

	// Other callers still get answers, promptly.
	var slowest time.Duration
	for i := range 20 {
		start := time.Now()
		var res answer
		switch i % 3 {
		case 0:
			res = a.Do("GET", "/healthz", "", nil)
		case 1:
			res = a.Do("GET", "/v1/instances/"+tn.ID+"/config", tn.Client, nil)
		case 2:
			res = a.upload(tn, "TK-"+strconv.Itoa(i), "held.bin", content(32<<10, int64(i)), kindRaw)
		}
		if res.Err != nil || res.Status != 200 {
			t.Errorf("a caller while %d connections are held: %s", n, res)
		}
		slowest = max(slowest, time.Since(start))
	}
	if slowest > 2*time.Second {
		t.Errorf("the slowest of 20 requests took %v while %d connections were held", slowest, n)
	}
	t.Logf("20 requests served while %d connections were held; slowest %v", n, slowest.Round(time.Millisecond))
	held.release()
	a.HTTP.CloseIdleConnections()
	// fasthttp keeps idle workers up to 10 s (MaxIdleWorkerDuration).
	noLeak(t, "after closing them", base, 12, 8, 40*time.Second)
}

// scrapeGauge reads one value from the relay's /metrics (AdminHandler), if
// the relay has one; ok is false otherwise.
func scrapeGauge(r *relaytest.Relay, name string) (float64, bool) {
	ah, ok := any(r.Server).(interface{ AdminHandler() http.Handler })
	if !ok {
		return 0, false
	}
	rec := httptest.NewRecorder()
	ah.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+]+)$`).FindStringSubmatch(rec.Body.String())
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// flood sends n requests, each built by req(i), over a few keep-alive
// connections, and counts the statuses.
func flood(t *testing.T, hc *http.Client, n int, req func(i int) *http.Request) map[int]int {
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[int]int{}
			for i := w; i < n; i += workers {
				resp, err := hc.Do(req(i))
				if err != nil {
					local[-1]++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				local[resp.StatusCode]++
			}
			mu.Lock()
			for k, v := range local {
				statuses[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return statuses
}

// floodRig is a relay behind a trusted proxy (127.0.0.1) whose instance
// limit refuses everything after the first request: every request of a
// flood still passes the per-address limiter first, which must remember
// each new address, and nothing reaches Jira.
type floodRig struct {
	relay *relaytest.Relay
	api   *api
	jira  *fakejira.Server
	tn    tenant
	att   string
}

func startFloodRig(t *testing.T, ipRPS float64) *floodRig {
	fj := relaytest.StartJira(t, fakejira.Options{})
	relay := relaytest.StartWith(t, relaytest.Options{Mutate: func(c *configs.Config) {
		c.TrustedProxies = []string{"127.0.0.1/32"}
		c.InstanceRPS, c.InstanceBurst = 0.001, 1
		c.IPRPS, c.IPBurst = ipRPS, 1
	}})
	a := newAPI(t, relay.URL)
	r := &floodRig{relay: relay, api: a, jira: fj, tn: a.MustRegister(t, fj.URL())}
	r.att = fj.AddAttachmentBytes("x.bin", "", []byte("x"))
	if res := a.Send(r.download(0)); res.Status != 200 {
		t.Fatalf("first download: %s", res)
	}
	return r
}

// addr is the i-th distinct client address, behind the trusted proxy.
func floodAddr(i int) string {
	return fmt.Sprintf("10.%d.%d.%d, 127.0.0.1", i>>16&255, i>>8&255, i&255)
}

func (r *floodRig) download(i int) *http.Request {
	req, _ := http.NewRequest("GET", r.relay.URL+"/v1/instances/"+r.tn.ID+"/attachments/"+r.att+"/content", nil)
	req.Header.Set("X-Relay-Key", r.tn.Client)
	req.Header.Set("Authorization", jiraAuth)
	req.Header.Set("X-Forwarded-For", floodAddr(i))
	return req
}

// addresses floods n new addresses (from first on) and returns the heap
// growth per address.
func (r *floodRig) addresses(t *testing.T, first, n int) float64 {
	t.Helper()
	jira := r.jira.Requests()
	h0 := heapInUse()
	start := time.Now()
	st := flood(t, r.api.HTTP, n, func(i int) *http.Request { return r.download(first + i) })
	took := time.Since(start)
	h1 := heapInUse()
	if st[429] != n {
		t.Errorf("address flood: statuses %v, want %d × 429", st, n)
	}
	if r.jira.Requests() != jira {
		t.Errorf("address flood: Jira got %d requests", r.jira.Requests()-jira)
	}
	per := float64(int64(h1)-int64(h0)) / float64(n)
	t.Logf("%d new addresses in %v (%.0f req/s); heap in use %d → %d MiB (%.0f B per address)",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), h0>>20, h1>>20, per)
	return per
}

func (r *floodRig) ipKeys(t *testing.T) (float64, bool) {
	keys, ok := scrapeGauge(r.relay, `relay_limiter_keys{limiter="ip"}`)
	if ok {
		t.Logf("relay_limiter_keys{limiter=\"ip\"} = %.0f", keys)
	} else {
		t.Log("the relay exports no per-address limiter size (relay_limiter_keys on AdminHandler's /metrics); bounding by heap only")
	}
	return keys, ok
}

// ipCap is the per-address limiter's key cap (proxy/protect.go).
const ipCap = 200_000

func TestAddressFlood(t *testing.T) {
	t.Run("idle addresses are forgotten", func(t *testing.T) {
		// 1 request/s per address, burst 1: an address is idle (its bucket
		// full again) after 1 s and may be dropped.
		r := startFloodRig(t, 1)
		n := 15000
		r.addresses(t, 1, n)
		// Idle keys go lazily (as new keys come) and in the relay's sweep,
		// every 5 s: wait for one sweep after every address is idle, rather
		// than hoping the flood itself took over a second.
		deadline := time.Now().Add(1*time.Second + 7*time.Second)
		for {
			keys, ok := r.ipKeys(t)
			if !ok || keys <= float64(n)/2 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("the per-address limiter holds %.0f keys after %d addresses idle for over 7 s (a sweep every 5 s)", keys, n)
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	})
	t.Run("remembered addresses cost little", func(t *testing.T) {
		// One request per 1000 s per address: every address is remembered.
		r := startFloodRig(t, 0.001)
		n := 20000
		per := r.addresses(t, 1, n)
		if keys, ok := r.ipKeys(t); ok && (keys < float64(n) || keys > ipCap) {
			t.Errorf("the per-address limiter holds %.0f keys after %d new addresses, want %d", keys, n, n+1)
		}
		ceiling := int(per*ipCap) >> 20
		t.Logf("projected heap of the per-address limiter at its %d-key cap: %d MiB", ipCap, ceiling)
		if per > 1024 {
			t.Errorf("each remembered client address costs %.0f B of heap; at the %d-key cap that is %d MiB", per, ipCap, ceiling)
		}
	})
}

// TestAddressFloodBeyondCap floods more addresses than the per-address
// limiter may hold (behind -soak: about a minute under -race).
func TestAddressFloodBeyondCap(t *testing.T) {
	if !*soak {
		t.Skip("floods 250,000 addresses; run with -soak")
	}
	r := startFloodRig(t, 0.001)
	per1 := r.addresses(t, 1, ipCap)
	h1 := heapInUse()
	r.addresses(t, ipCap+1, 50000)
	h2 := heapInUse()
	if keys, ok := r.ipKeys(t); ok && keys > ipCap {
		t.Errorf("the per-address limiter holds %.0f keys, over its cap of %d", keys, ipCap)
	}
	t.Logf("heap: %d MiB at the cap, %d MiB after 50,000 more addresses (%.0f B per address up to the cap)", h1>>20, h2>>20, per1)
	if grew := int64(h2) - int64(h1); grew > 8<<20 {
		t.Errorf("heap grew %d MiB past the cap: the limiter is not bounded", grew>>20)
	}
}

func TestInstanceIDFlood(t *testing.T) {
	r := startFloodRig(t, 10000)
	ins0, cfg0 := r.relay.Store.CacheSizes()
	m := 3000
	h0 := heapInUse()
	start := time.Now()
	st := flood(t, r.api.HTTP, m, func(i int) *http.Request {
		var b [16]byte
		_, _ = rand.Read(b[:])
		id := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
		req, _ := http.NewRequest("GET", r.relay.URL+"/v1/instances/"+id+"/config", nil)
		req.Header.Set("X-Relay-Key", r.tn.Client)
		req.Header.Set("X-Forwarded-For", floodAddr(i))
		return req
	})
	took := time.Since(start)
	h1 := heapInUse()
	ins1, cfg1 := r.relay.Store.CacheSizes()
	if st[404] != m {
		t.Errorf("instance-id flood: statuses %v, want %d × 404", st, m)
	}
	if ins1 != ins0 || cfg1 != cfg0 {
		t.Errorf("instance-id flood grew the cache: instances %d → %d, configs %d → %d", ins0, ins1, cfg0, cfg1)
	}
	t.Logf("instance-id flood: %d unknown ids in %v, each an etcd read; cache %d instances / %d configs before and after; heap in use %d → %d MiB",
		m, took.Round(time.Millisecond), ins1, cfg1, h0>>20, h1>>20)
	if grew := int64(h1) - int64(h0); grew > 16<<20 {
		t.Errorf("instance-id flood: heap grew %d MiB", grew>>20)
	}
	if res := r.api.Do("GET", "/healthz", "", nil); res.Status != 200 {
		t.Errorf("healthz after the flood: %s", res)
	}
}

// The soak and the long floods run only with -soak:
//
//	go test ./internal/resiliencetest -run Soak -soak -soak-duration 10m
var (
	soak         = flag.Bool("soak", false, "run the soak test and the long floods")
	soakDuration = flag.Duration("soak-duration", 10*time.Minute, "how long the soak runs")
)

// vmRSS is the process's resident set size from /proc/self/status (0 where
// there is none).
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	return statusKB(b, "VmRSS:") << 10
}

type soakSample struct {
	at         time.Duration
	rss, heap  uint64
	goroutines int
	fds        int
	requests   int64
}

// soakStats counts what the simulated clients got.
type soakStats struct {
	requests, uploads, uploadBytes, configs, notModified, links, lookups, limited atomic.Int64
	mu                                                                            sync.Mutex
	errors                                                                        []string
	errorCount                                                                    int
}

func (s *soakStats) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errorCount++
	if len(s.errors) < 20 {
		s.errors = append(s.errors, fmt.Sprintf(format, args...))
	}
}

// TestSoak: 500 simulated add-in clients (uploads of 20 KiB to 2 MiB, config
// reads with ETag, mapping writes and lookups) for -soak-duration against the
// relay binary in its own process. No error but intended 429s; the relay
// process's RSS, goroutines and open fds, sampled every 10 s, stay flat after
// the warm-up (2 minutes, or a fifth of a shorter run).
func TestSoak(t *testing.T) {
	if !*soak {
		t.Skip("run with -soak (and -soak-duration)")
	}
	const clients, instances = 500, 10
	limit := raiseFDLimit(t, 8192)
	t.Logf("RLIMIT_NOFILE %d", limit)
	etcd, _ := etcdtest.Start(t)
	// The relay runs in its own process (with its default access log), so
	// that what is measured is the relay alone: the embedded etcd, which
	// grows with every mapping written, and the clients stay here.
	relay := startRelayProc(t, etcd.Endpoints())
	t.Logf("relay process %d; profiles on %s/debug/pprof/", relay.cmd.Process.Pid, relay.admin)
	a := newAPI(t, relay.URL)
	var tenants []tenant
	for i := range instances {
		// One fake Jira Cloud per instance, keeping only its last records.
		fj, err := fakejira.Start(fakejira.Options{NoHash: true, MaxRecords: 100})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(fj.Close)
		tn := a.MustRegister(t, fj.URL())
		tenants = append(tenants, tn)
		if res := a.Do("PUT", "/v1/instances/"+tn.ID+"/config", tn.Admin, `{"templates":[{"name":"Bug"}],"n":`+strconv.Itoa(i)+`}`); res.Status != 200 {
			t.Fatalf("config: %s", res)
		}
	}
	st := &soakStats{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			soakClient(c, relay.URL, tenants[c%instances], st, stop)
		}()
	}

	dur := *soakDuration
	warm := min(2*time.Minute, dur/5)
	var samples []soakSample
	start := time.Now()
	sample := func() {
		rs, err := relay.sample()
		if err != nil {
			t.Errorf("sampling the relay process: %v", err)
			return
		}
		s := soakSample{at: time.Since(start), rss: rs.rss, heap: rs.heapInuse, goroutines: rs.goroutines, fds: rs.fds, requests: st.requests.Load()}
		samples = append(samples, s)
		t.Logf("t=%v relay: rss=%d MiB heap=%d MiB goroutines=%d fds=%d; requests=%d; test process (etcd, fake Jiras, clients): rss=%d MiB",
			s.at.Round(time.Second), s.rss>>20, s.heap>>20, s.goroutines, s.fds, s.requests, vmRSS()>>20)
	}
	sample()
	tick := time.NewTicker(10 * time.Second)
	for time.Since(start) < dur {
		<-tick.C
		sample()
	}
	tick.Stop()
	close(stop)
	wg.Wait()

	st.mu.Lock()
	t.Logf("%d clients for %v: %d requests (%d uploads, %d MiB; %d config reads, %d of them 304; %d links; %d lookups); %d intended 429s; %d errors",
		clients, dur, st.requests.Load(), st.uploads.Load(), st.uploadBytes.Load()>>20, st.configs.Load(), st.notModified.Load(),
		st.links.Load(), st.lookups.Load(), st.limited.Load(), st.errorCount)
	for _, e := range st.errors {
		t.Errorf("soak: %s", e)
	}
	st.mu.Unlock()

	// Flat from the warm-up to the end: the median of the last third of the
	// samples after the warm-up against the median of the first third
	// (medians, so that a GC cycle or a burst of large uploads in one sample
	// does not decide).
	var after []soakSample
	for _, s := range samples {
		if s.at >= warm {
			after = append(after, s)
		}
	}
	if len(after) < 6 {
		t.Logf("too few samples after the warm-up (%d) to judge flatness", len(after))
		return
	}
	median := func(ss []soakSample, f func(soakSample) float64) float64 {
		v := make([]float64, len(ss))
		for i, s := range ss {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	k := len(after) / 3
	first, last := after[:k], after[len(after)-k:]
	rss := func(s soakSample) float64 { return float64(s.rss) / (1 << 20) }
	gor := func(s soakSample) float64 { return float64(s.goroutines) }
	fds := func(s soakSample) float64 { return float64(s.fds) }
	heap := func(s soakSample) float64 { return float64(s.heap) / (1 << 20) }
	h0, h1 := median(first, heap), median(last, heap)
	r0, r1 := median(first, rss), median(last, rss)
	g0, g1 := median(first, gor), median(last, gor)
	f0, f1 := median(first, fds), median(last, fds)
	end := samples[len(samples)-1]
	t.Logf("relay at the end of the warm-up (t=%v): RSS %d MiB, %d goroutines, %d fds", after[0].at.Round(time.Second), after[0].rss>>20, after[0].goroutines, after[0].fds)
	t.Logf("relay at start: RSS %d MiB, %d goroutines, %d fds; end: RSS %d MiB, %d goroutines, %d fds", samples[0].rss>>20, samples[0].goroutines, samples[0].fds, end.rss>>20, end.goroutines, end.fds)
	t.Logf("after the warm-up (%v), median of the first third → last third: RSS %.0f → %.0f MiB, heap in use %.0f → %.0f MiB, goroutines %.0f → %.0f, fds %.0f → %.0f",
		warm, r0, r1, h0, h1, g0, g1, f0, f1)
	// Flat: within what GC timing and the clients' own connection churn
	// (idle connections closed and reopened) move; a leak of one goroutine,
	// fd or buffer per request (tens of thousands of requests) is far past it.
	if r1 > r0*1.15+8 {
		t.Errorf("RSS grew from %.0f to %.0f MiB after the warm-up", r0, r1)
	}
	// The heap in use is where a leak would show first; it swings with GC
	// cycles (the medians take most of that out).
	if h1 > h0*1.25+8 {
		t.Errorf("heap in use grew from %.0f to %.0f MiB after the warm-up", h0, h1)
	}
	if g1 > g0*1.05+25 {
		t.Errorf("goroutines grew from %.0f to %.0f after the warm-up", g0, g1)
	}
	if f1 > f0*1.05+25 {
		t.Errorf("open fds grew from %.0f to %.0f after the warm-up", f0, f1)
	}
}

// soakClient is one add-in: its own connection pool and client address,
// one instance, one user, one conversation.
func soakClient(c int, base string, tn tenant, st *soakStats, stop <-chan struct{}) {
	rng := mrand.New(mrand.NewPCG(uint64(c), 7))
	hc := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, IdleConnTimeout: 30 * time.Second}}
	defer hc.CloseIdleConnections()
	xff := fmt.Sprintf("10.77.%d.%d, 127.0.0.1", c>>8, c&255)
	p := "/v1/instances/" + tn.ID
	etag := ""
	n := 0
	do := func(req *http.Request) (answer, bool) {
		req.Header.Set("X-Forwarded-For", xff)
		st.requests.Add(1)
		res := (&relaytest.Client{HTTP: hc}).Send(req)
		if res.Err == nil && res.Status == 429 {
			if _, ok := res.RelayError(); ok {
				st.limited.Add(1)
				return res, false
			}
		}
		return res, true
	}
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(1000+rng.IntN(4000)) * time.Millisecond):
		}
		n++
		switch x := rng.IntN(100); {
		case x < 30:
			size := 20<<10 + rng.IntN(2<<20-20<<10)
			kind := []string{kindRaw, kindBase64, kindMultipart}[rng.IntN(3)]
			req := uploadRequest(base, tn, fmt.Sprintf("SOAK-%d", c), fmt.Sprintf("soak-%d-%d.bin", c, n), content(size, int64(n)), kind)
			if res, judged := do(req); judged {
				if res.Err != nil || res.Status != 200 {
					st.fail("client %d upload of %d bytes (%s): %s", c, size, kind, res)
				} else {
					st.uploads.Add(1)
					st.uploadBytes.Add(int64(size))
				}
			}
		case x < 65:
			req, _ := http.NewRequest("GET", base+p+"/config", nil)
			req.Header.Set("X-Relay-Key", tn.Client)
			if etag != "" {
				req.Header.Set("If-None-Match", etag)
			}
			if res, judged := do(req); judged {
				switch {
				case res.Err == nil && res.Status == 304:
					st.notModified.Add(1)
				case res.Err == nil && res.Status == 200:
					etag = res.Header.Get("ETag")
				default:
					st.fail("client %d config: %s", c, res)
				}
				st.configs.Add(1)
			}
		case x < 85:
			body, _ := json.Marshal(relaytest.MappingBody(fmt.Sprintf("conv-%d", c), fmt.Sprintf("<m-%d-%d@example.com>", c, n), fmt.Sprintf("u%d", c),
				strconv.Itoa(20000+n), fmt.Sprintf("SOAK-%d", n)))
			req, _ := http.NewRequest("POST", base+p+"/mappings", bytes.NewReader(body))
			req.Header.Set("X-Relay-Key", tn.Client)
			req.Header.Set("Content-Type", "application/json")
			if res, judged := do(req); judged {
				if res.Err != nil || (res.Status != 201 && res.Status != 200) {
					st.fail("client %d link: %s", c, res)
				}
				st.links.Add(1)
			}
		default:
			req, _ := http.NewRequest("GET", base+p+fmt.Sprintf("/mappings?conversationId=conv-%d&limit=50", c), nil)
			req.Header.Set("X-Relay-Key", tn.Client)
			if res, judged := do(req); judged {
				if res.Err != nil || res.Status != 200 {
					st.fail("client %d lookup: %s", c, res)
				}
				st.lookups.Add(1)
			}
		}
	}
}
