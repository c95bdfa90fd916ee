package proxy_test

// The attachment routes' refusals and protections, as a caller and as Jira
// see them: what the relay answers (status, error code, headers) and what
// reached the fake Jira Cloud (nothing, for every refusal made before Jira
// is contacted).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/fleet"
	"github.com/jira-relay/jira-relay/internal/relaytest"
)

// rfJiraAuth is the Jira credential jiraSetup.uploadReq sends.
const rfJiraAuth = "Basic bWlhQGV4YW1wbGUuY29tOnRva2Vu"

// rfNote is the small file most uploads in this file carry.
const rfNote = "hello, jira"

// rfUploadReq is an upload of body (length bytes, -1 for chunked) to issue
// as a raw text/plain file; query is added as is. Like every request built
// here it goes on a connection of its own (Connection: close), so that each
// case shows its own answer; what a refusal does to a kept-alive connection
// is a case of TestUploadRefusedBeforeJira.
func rfUploadReq(t *testing.T, j *jiraSetup, issue, query string, body io.Reader, length int64) *http.Request {
	t.Helper()
	req := j.uploadReq(t, issue, query, "text/plain", body, length)
	req.Close = true
	return req
}

// rfUpload uploads rfNote as note.txt to issue; hdr are extra header pairs.
func rfUpload(t *testing.T, j *jiraSetup, issue string, hdr ...string) relaytest.Answer {
	t.Helper()
	req := rfUploadReq(t, j, issue, "filename=note.txt", strings.NewReader(rfNote), int64(len(rfNote)))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return send(t, req)
}

// rfDownloadReq is a download of attachment id with the client key and a
// Jira credential.
func rfDownloadReq(t *testing.T, j *jiraSetup, id string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", j.downloadPath(id), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true
	req.Header.Set("X-Relay-Key", j.tenant.Client)
	req.Header.Set("Authorization", rfJiraAuth)
	return req
}

// rfJiraSaw is what the fake Jira has seen so far.
type rfJiraSaw struct {
	requests int64
	uploads  int
}

func rfSeen(j *jiraSetup) rfJiraSaw {
	return rfJiraSaw{requests: j.jira.Requests(), uploads: len(j.jira.Uploads())}
}

// rfUnchanged fails the test when Jira saw anything since before.
func rfUnchanged(t *testing.T, j *jiraSetup, before rfJiraSaw, what string) {
	t.Helper()
	if now := rfSeen(j); now != before {
		t.Errorf("%s: Jira was contacted: requests %d → %d, upload records %d → %d",
			what, before.requests, now.requests, before.uploads, now.uploads)
	}
}

// rfWant checks status and JSON error code of a refusal.
func rfWant(t *testing.T, what string, res relaytest.Answer, status int, code string) {
	t.Helper()
	if res.Status != status {
		t.Errorf("%s: status %d %s, want %d %s", what, res.Status, res.Body, status, code)
		return
	}
	if got := res.ErrCode(t); got != code {
		t.Errorf("%s: code %q, want %q (%s)", what, got, code, res.Body)
	}
}

// rfRetryAfter is the Retry-After header in seconds; it fails the test when
// the header is missing or not in [lo, hi].
func rfRetryAfter(t *testing.T, what string, res relaytest.Answer, lo, hi int) int {
	t.Helper()
	v := res.Header.Get("Retry-After")
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		t.Errorf("%s: Retry-After %q, want whole seconds in [%d, %d]", what, v, lo, hi)
	}
	return n
}

// rfRateLimitHeaders checks the RateLimit-* headers of a local 429.
func rfRateLimitHeaders(t *testing.T, what string, res relaytest.Answer, limit string) {
	t.Helper()
	if got := res.Header.Get("RateLimit-Limit"); got != limit {
		t.Errorf("%s: RateLimit-Limit %q, want %q", what, got, limit)
	}
	if got := res.Header.Get("RateLimit-Remaining"); got != "0" {
		t.Errorf("%s: RateLimit-Remaining %q, want \"0\"", what, got)
	}
	if n, err := strconv.Atoi(res.Header.Get("RateLimit-Reset")); err != nil || n < 1 {
		t.Errorf("%s: RateLimit-Reset %q, want whole seconds >= 1", what, res.Header.Get("RateLimit-Reset"))
	}
}

// rfHeld is a request body that sends prefix at once and then holds the
// stream open until finish or abort (or the end of the test).
type rfHeld struct {
	pr   *io.PipeReader
	pw   *io.PipeWriter
	rest chan []byte
	once sync.Once
	stop chan struct{}
}

func rfHold(t *testing.T, prefix []byte) *rfHeld {
	h := &rfHeld{rest: make(chan []byte, 1), stop: make(chan struct{})}
	h.pr, h.pw = io.Pipe()
	go func() {
		if _, err := h.pw.Write(prefix); err != nil {
			return
		}
		select {
		case rest := <-h.rest:
			if _, err := h.pw.Write(rest); err == nil {
				_ = h.pw.Close()
			}
		case <-h.stop:
			_ = h.pw.CloseWithError(errors.New("caller gave up"))
		}
	}()
	t.Cleanup(h.abort)
	return h
}

func (h *rfHeld) Read(p []byte) (int, error) { return h.pr.Read(p) }

// finish sends rest and ends the body.
func (h *rfHeld) finish(rest []byte) { h.rest <- rest }

// abort breaks the body off.
func (h *rfHeld) abort() {
	h.once.Do(func() {
		close(h.stop)
		_ = h.pr.CloseWithError(errors.New("caller gave up"))
	})
}

// rfGo sends req with client in a goroutine; the answer (or the transport
// error, as its Err) arrives on the channel.
func rfGo(client *http.Client, req *http.Request) <-chan relaytest.Answer {
	ch := make(chan relaytest.Answer, 1)
	c := &relaytest.Client{HTTP: client}
	go func() { ch <- c.Send(req) }()
	return ch
}

func rfWait(t *testing.T, what string, ch <-chan relaytest.Answer) relaytest.Answer {
	t.Helper()
	select {
	case r := <-ch:
		if r.Err != nil {
			t.Fatalf("%s: %v", what, r.Err)
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no answer within 10s", what)
	}
	return relaytest.Answer{}
}

// rfEventually waits up to 5 s for cond, failing the test if it never holds.
func rfEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !relaytest.Eventually(5*time.Second, cond) {
		t.Fatalf("timed out waiting until %s", what)
	}
}

// rfDial opens a raw TCP connection to the relay, bounded to 10 s.
func rfDial(t *testing.T, j *jiraSetup) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(j.relay.URL, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

// rfHead is the head of a raw upload of length bytes to issue, with the
// client key and a Jira credential unless key is "-"; extra are full header
// lines.
func rfHead(j *jiraSetup, target, key string, length int, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\n", target, strings.TrimPrefix(j.relay.URL, "http://"))
	if key != "-" {
		fmt.Fprintf(&b, "X-Relay-Key: %s\r\n", key)
	}
	fmt.Fprintf(&b, "Authorization: %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n", rfJiraAuth, length)
	for _, l := range extra {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// rfTarget is the request target of an upload to issue with a file name.
func rfTarget(j *jiraSetup, issue string) string {
	return "/v1/instances/" + j.tenant.ID + "/issues/" + issue + "/attachments?filename=note.txt"
}

// rfReadAnswer reads one response (interim ones included) from br.
func rfReadAnswer(t *testing.T, br *bufio.Reader) relaytest.Answer {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the relay's answer: %v", err)
	}
	res := relaytest.ReadAnswer(resp)
	if res.Err != nil {
		t.Fatalf("reading the relay's answer body: %v", res.Err)
	}
	return res
}

// TestUploadRefusedBeforeJira: every refusal the headers decide is made
// without a byte going to Jira.
func TestUploadRefusedBeforeJira(t *testing.T) {
	t.Parallel()
	const limit = 1 << 20
	j := startJira(t, false, func(c *configs.Config) { c.MaxAttachmentBytes = limit })
	other := j.api.MustRegister(t, "https://other.atlassian.net")

	type edit func(*http.Request)
	set := func(k, v string) edit { return func(r *http.Request) { r.Header.Set(k, v) } }
	del := func(k string) edit { return func(r *http.Request) { r.Header.Del(k) } }
	// upload builds an upload of rfNote to issue with query.
	upload := func(issue, query string, edits ...edit) func(*testing.T) *http.Request {
		return func(t *testing.T) *http.Request {
			req := rfUploadReq(t, j, issue, query, strings.NewReader(rfNote), int64(len(rfNote)))
			for _, e := range edits {
				e(req)
			}
			return req
		}
	}
	// declared announces length bytes but sends only the first KiB and
	// holds the rest back: a refusal must not wait for the body.
	declared := func(query, contentType string, length int64) func(*testing.T) *http.Request {
		return func(t *testing.T) *http.Request {
			req := j.uploadReq(t, "ABC-1", query, contentType, rfHold(t, make([]byte, 1024)), length)
			req.Close = true
			return req
		}
	}
	download := func(id, query string, edits ...edit) func(*testing.T) *http.Request {
		return func(t *testing.T) *http.Request {
			req := rfDownloadReq(t, j, id)
			if query != "" {
				req.URL.RawQuery = query
			}
			for _, e := range edits {
				e(req)
			}
			return req
		}
	}
	unknownInstance := func(t *testing.T) *http.Request {
		req := rfUploadReq(t, j, "ABC-1", "filename=note.txt", strings.NewReader(rfNote), int64(len(rfNote)))
		u, err := url.Parse(strings.Replace(req.URL.String(), j.tenant.ID, "aaaaaaaaaaaaaaaaaaaaaaaaaa", 1))
		if err != nil {
			t.Fatal(err)
		}
		req.URL = u
		return req
	}

	for _, tc := range []struct {
		name   string
		req    func(*testing.T) *http.Request
		status int
		code   string
	}{
		{"no X-Relay-Key", upload("ABC-1", "filename=note.txt", del("X-Relay-Key")), 401, "unauthorized"},
		{"wrong X-Relay-Key", upload("ABC-1", "filename=note.txt", set("X-Relay-Key", "jrc_wrong")), 401, "unauthorized"},
		{"another instance's client key", upload("ABC-1", "filename=note.txt", set("X-Relay-Key", other.Client)), 401, "unauthorized"},
		{"unknown instance", unknownInstance, 404, "instance_not_found"},
		{"no Authorization", upload("ABC-1", "filename=note.txt", del("Authorization")), 401, "missing_authorization"},

		{"issue: encoded traversal", upload("..%2F..%2Fx", "filename=note.txt"), 400, "invalid_issue"},
		{"issue: key then encoded traversal", upload("ABC-1%2F..", "filename=note.txt"), 400, "invalid_issue"},
		{"issue: encoded dot-dot", upload("%2e%2e", "filename=note.txt"), 400, "invalid_issue"},
		{"issue: CR LF", upload("ABC-1%0D%0AX-Evil:%201", "filename=note.txt"), 400, "invalid_issue"},
		{"issue: lower-case key", upload("abc-1", "filename=note.txt"), 400, "invalid_issue"},
		{"issue: one-letter project", upload("A-1", "filename=note.txt"), 400, "invalid_issue"},
		{"issue: no number", upload("ABC-", "filename=note.txt"), 400, "invalid_issue"},
		{"issue: encoded query", upload("ABC-1%3Fexpand%3Dall", "filename=note.txt"), 400, "invalid_issue"},
		{"issue: encoded NUL", upload("ABC-1%00", "filename=note.txt"), 400, "invalid_issue"},
		{"issue: non-ASCII", upload("%C3%84BC-1", "filename=note.txt"), 400, "invalid_issue"},
		{"issue: 20-digit id", upload(strings.Repeat("9", 20), "filename=note.txt"), 400, "invalid_issue"},

		{"unknown query parameter", upload("ABC-1", "filename=note.txt&debug=1"), 400, "unknown_parameter"},
		{"repeated query parameter", upload("ABC-1", "filename=a.txt&filename=b.txt"), 400, "duplicate_parameter"},
		{"encoding=hex", upload("ABC-1", "filename=note.txt&encoding=hex"), 400, "invalid_query"},
		{"no file name", upload("ABC-1", ""), 400, "missing_filename"},

		{"raw body over --max-attachment-bytes", declared("filename=big.bin", "application/octet-stream", limit+1), 413, "attachment_too_large"},
		{"base64 body over the limit's base64 size", declared("filename=big.bin&encoding=base64", "application/octet-stream", 2*limit), 413, "attachment_too_large"},
		{"multipart body over --max-attachment-bytes", declared("", "multipart/form-data; boundary=xyz", 2*limit), 413, "attachment_too_large"},

		{"download: no X-Relay-Key", download("10000", "", del("X-Relay-Key")), 401, "unauthorized"},
		{"download: no Authorization", download("10000", "", del("Authorization")), 401, "missing_authorization"},
		{"download: id with letters", download("12a", ""), 400, "invalid_attachment_id"},
		{"download: negative id", download("-1", ""), 400, "invalid_attachment_id"},
		{"download: encoded traversal", download("..%2F..%2Fissue%2FABC-1", ""), 400, "invalid_attachment_id"},
		{"download: id then encoded traversal", download("10000%2F..", ""), 400, "invalid_attachment_id"},
		{"download: CR LF", download("10000%0D%0A", ""), 400, "invalid_attachment_id"},
		{"download: unknown query parameter", download("10000", "redirect=true"), 400, "unknown_parameter"},
		{"download: malformed Range", download("10000", "", set("Range", "lines=1-2")), 400, "invalid_range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := rfSeen(j)
			res := send(t, tc.req(t))
			rfWant(t, tc.name, res, tc.status, tc.code)
			rfUnchanged(t, j, before, tc.name)
		})
	}

	// A caller that sent its whole body and keeps its connection alive
	// (as browsers and Go's client do) may send its next request on it: the
	// relay must answer that request too, or have said Connection: close.
	for _, size := range []int{len(rfNote), 300 << 10} {
		t.Run(fmt.Sprintf("refusal of a %d-byte body on a kept-alive connection", size), func(t *testing.T) {
			c, br := rfDial(t, j)
			refused := rfHead(j, rfTarget(j, "abc-1"), j.tenant.Client, size) + strings.Repeat("x", size)
			if _, err := io.WriteString(c, refused); err != nil {
				t.Fatalf("refused request: %v", err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("refused request: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != 400 {
				t.Fatalf("lower-case key: %d", resp.StatusCode)
			}
			if resp.Close {
				return // the relay closes the connection and says so: fine
			}
			if _, err := io.WriteString(c, rfHead(j, rfTarget(j, "ABC-1"), j.tenant.Client, len(rfNote))+rfNote); err != nil {
				t.Fatalf("next request on the connection: %v", err)
			}
			if res, err := http.ReadResponse(br, nil); err != nil {
				t.Fatalf("next request on the connection, after a refusal without Connection: close: %v", err)
			} else if _ = res.Body.Close(); res.StatusCode != 200 {
				t.Fatalf("next request on the connection: %d", res.StatusCode)
			}
		})
	}

	// The same relay still uploads: the refusals left nothing behind.
	before := rfSeen(j)
	if res := rfUpload(t, j, "ABC-1"); res.Status != 200 {
		t.Fatalf("upload after the refusals: %d %s", res.Status, res.Body)
	}
	if got := j.jira.CompletedUploads(); len(got) != before.uploads+1 || got[len(got)-1].Issue != "ABC-1" {
		t.Fatalf("Jira's completed uploads after one good upload: %+v", got)
	}
}

// TestExpectContinueGetsRefusal: a caller that waits for "100 Continue"
// gets the refusal instead and need not send its body.
func TestExpectContinueGetsRefusal(t *testing.T) {
	const limit = 1 << 20
	j := startJira(t, false, func(c *configs.Config) {
		c.MaxAttachmentBytes = limit
		c.InstanceMaxStreams = 1 // so that a stream slot kept by mistake shows
	})

	for _, tc := range []struct {
		name   string
		key    string
		length int
		status int
		code   string
	}{
		{"declared size over the limit", j.tenant.Client, limit + 1, 413, "attachment_too_large"},
		{"wrong key", "jrc_wrong", len(rfNote), 401, "unauthorized"},
		{"no key", "-", len(rfNote), 401, "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := rfSeen(j)
			c, br := rfDial(t, j)
			if _, err := io.WriteString(c, rfHead(j, rfTarget(j, "ABC-1"), tc.key, tc.length, "Expect: 100-continue", "X-Request-Id: trace-expect-7")); err != nil {
				t.Fatal(err)
			}
			res := rfReadAnswer(t, br)
			if res.Status == http.StatusContinue {
				t.Fatalf("the relay answered \"100 Continue\" to a request it must refuse (%d %s)", tc.status, tc.code)
			}
			rfWant(t, tc.name, res, tc.status, tc.code)
			if got := res.Header.Get("X-Request-Id"); got != "trace-expect-7" {
				t.Errorf("the refusal's X-Request-Id = %q, want the caller's", got)
			}
			rfUnchanged(t, j, before, tc.name)

			// Without an X-Request-Id, the refusal carries a generated one.
			c2, br2 := rfDial(t, j)
			if _, err := io.WriteString(c2, rfHead(j, rfTarget(j, "ABC-1"), tc.key, tc.length, "Expect: 100-continue")); err != nil {
				t.Fatal(err)
			}
			if res := rfReadAnswer(t, br2); res.Status != tc.status || len(res.Header.Get("X-Request-Id")) != 16 {
				t.Errorf("refusal without a request id: %d, X-Request-Id %q; want %d with a generated id", res.Status, res.Header.Get("X-Request-Id"), tc.status)
			}
		})
	}

	t.Run("valid upload", func(t *testing.T) {
		before := rfSeen(j)
		c, br := rfDial(t, j)
		if _, err := io.WriteString(c, rfHead(j, rfTarget(j, "ABC-7"), j.tenant.Client, len(rfNote), "Expect: 100-continue")); err != nil {
			t.Fatal(err)
		}
		if res := rfReadAnswer(t, br); res.Status != http.StatusContinue {
			t.Fatalf("before the body: %d %s, want 100 Continue", res.Status, res.Body)
		}
		if _, err := io.WriteString(c, rfNote); err != nil {
			t.Fatal(err)
		}
		res := rfReadAnswer(t, br)
		if res.Status != 200 || !strings.Contains(string(res.Body), `"filename":"note.txt"`) {
			t.Fatalf("after the body: %d %s, want Jira's 200", res.Status, res.Body)
		}
		done := j.jira.CompletedUploads()
		if len(done) != before.uploads+1 {
			t.Fatalf("Jira recorded %d completed uploads, want %d", len(done), before.uploads+1)
		}
		if u := done[len(done)-1]; u.Issue != "ABC-7" || u.Size != int64(len(rfNote)) || u.SHA256 != relaytest.SHA256([]byte(rfNote)) {
			t.Fatalf("Jira's upload: issue %q size %d", u.Issue, u.Size)
		}
	})

	// Whatever was set aside for an admitted upload (its stream slot, its
	// breaker slot) is given back when the caller goes away instead of
	// sending the body.
	t.Run("caller gone after 100 Continue", func(t *testing.T) {
		before := rfSeen(j)
		c, br := rfDial(t, j)
		if _, err := io.WriteString(c, rfHead(j, rfTarget(j, "ABC-8"), j.tenant.Client, len(rfNote), "Expect: 100-continue")); err != nil {
			t.Fatal(err)
		}
		if res := rfReadAnswer(t, br); res.Status != http.StatusContinue {
			t.Fatalf("before the body: %d %s, want 100 Continue", res.Status, res.Body)
		}
		_ = c.Close()
		time.Sleep(200 * time.Millisecond)
		rfUnchanged(t, j, before, "caller gone before its body")
		if res := rfUpload(t, j, "ABC-8"); res.Status != 200 {
			t.Fatalf("next upload (--instance-max-streams 1): %d %s", res.Status, res.Body)
		}
	})
}

// TestRateLimits: the relay's own limits answer 429 with an exact
// Retry-After and RateLimit-* headers, before Jira is contacted.
func TestRateLimits(t *testing.T) {
	t.Run("per instance", func(t *testing.T) {
		j := startJira(t, false, func(c *configs.Config) { c.InstanceBurst, c.InstanceRPS = 2, 0.5 })
		for i := range 2 {
			if res := rfUpload(t, j, "ABC-1"); res.Status != 200 {
				t.Fatalf("upload %d within the burst: %d %s", i+1, res.Status, res.Body)
			}
		}
		before := rfSeen(j)
		res := rfUpload(t, j, "ABC-2")
		rfWant(t, "3rd upload", res, 429, "rate_limited_instance")
		rfRetryAfter(t, "3rd upload", res, 2, 2) // 1 token at 0.5/s
		rfRateLimitHeaders(t, "3rd upload", res, "2")
		// Downloads of the instance draw from the same bucket.
		res = send(t, rfDownloadReq(t, j, "10000"))
		rfWant(t, "download", res, 429, "rate_limited_instance")
		rfUnchanged(t, j, before, "refused by the instance limit")
	})

	t.Run("per IP, X-Forwarded-For ignored without trusted proxies", func(t *testing.T) {
		j := startJira(t, false, func(c *configs.Config) { c.IPBurst, c.IPRPS = 2, 0.5 })
		for i := range 2 {
			if res := rfUpload(t, j, "ABC-1", "X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i+1)); res.Status != 200 {
				t.Fatalf("upload %d within the burst: %d %s", i+1, res.Status, res.Body)
			}
		}
		before := rfSeen(j)
		for i := 3; i <= 5; i++ {
			what := fmt.Sprintf("upload %d with its own X-Forwarded-For", i)
			res := rfUpload(t, j, "ABC-1", "X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i))
			rfWant(t, what, res, 429, "rate_limited_ip")
			rfRetryAfter(t, what, res, 2, 2)
			rfRateLimitHeaders(t, what, res, "2")
		}
		rfUnchanged(t, j, before, "refused by the IP limit")
	})

	t.Run("per IP, X-Forwarded-For from a trusted proxy", func(t *testing.T) {
		j := startJira(t, false, func(c *configs.Config) {
			c.IPBurst, c.IPRPS = 2, 0.5
			c.TrustedProxies = []string{"127.0.0.1/32"}
		})
		for _, tc := range []struct {
			xff    string
			status int
		}{
			{"203.0.113.1", 200},
			{"203.0.113.1", 200},
			{"203.0.113.1", 429},
			{"198.51.100.7, 203.0.113.1", 429}, // the right-most untrusted hop counts
			{"203.0.113.1, 127.0.0.1", 429},    // trusted hops are skipped
			{"203.0.113.2", 200},               // another client, its own bucket
			{"203.0.113.1, 203.0.113.3", 200},  // spoofed left part is not the client
			{"203.0.113.2", 200},               //
			{"203.0.113.2", 429},               //
			{"", 200},                          // the proxy itself
			{"not-an-ip", 200},                 // malformed: the proxy's own bucket
			{"not-an-ip", 429},                 //
		} {
			what := "X-Forwarded-For " + strconv.Quote(tc.xff)
			before := rfSeen(j)
			hdr := []string{}
			if tc.xff != "" {
				hdr = []string{"X-Forwarded-For", tc.xff}
			}
			res := rfUpload(t, j, "ABC-1", hdr...)
			if tc.status == 200 {
				if res.Status != 200 {
					t.Errorf("%s: %d %s, want 200", what, res.Status, res.Body)
				}
				continue
			}
			rfWant(t, what, res, 429, "rate_limited_ip")
			rfRateLimitHeaders(t, what, res, "2")
			rfUnchanged(t, j, before, what)
		}
	})

	t.Run("per issue, Jira's 20 writes per 2 s", func(t *testing.T) {
		j := startJira(t, false, func(c *configs.Config) {
			c.InstanceBurst, c.InstanceRPS = 1000, 1000
			c.IPBurst, c.IPRPS = 1000, 1000
		})
		// At most 20 writes in any 2 s: the 21st waits until the first is
		// 2 s old.
		start := time.Now()
		for i := range 20 {
			if res := rfUpload(t, j, "ABC-1"); res.Status != 200 {
				t.Fatalf("write %d to ABC-1: %d %s", i+1, res.Status, res.Body)
			}
		}
		before := rfSeen(j)
		res := rfUpload(t, j, "ABC-1")
		if elapsed := time.Since(start); elapsed >= 2*time.Second {
			t.Skipf("21 uploads took %v, longer than the window this test is about", elapsed)
		}
		rfWant(t, "21st write to ABC-1", res, 429, "rate_limited_issue_writes")
		rfRetryAfter(t, "21st write to ABC-1", res, 1, 2)
		rfRateLimitHeaders(t, "21st write to ABC-1", res, "20")
		rfUnchanged(t, j, before, "21st write to ABC-1")
		if n := len(j.jira.CompletedUploads()); n != 20 || len(j.jira.Uploads()) != 20 {
			t.Fatalf("Jira recorded %d completed of %d uploads, want 20 of 20", n, len(j.jira.Uploads()))
		}
		if res := rfUpload(t, j, "ABC-2"); res.Status != 200 {
			t.Fatalf("another issue meanwhile: %d %s", res.Status, res.Body)
		}
		// Still refused just before the first write is 2 s old (the
		// uploads finished after they started: a margin of 100 ms)…
		time.Sleep(time.Until(start.Add(1900 * time.Millisecond)))
		if res := rfUpload(t, j, "ABC-1"); res.Status != 429 {
			t.Fatalf("a write 1.9 s after the first of 20: %d %s, want 429", res.Status, res.Body)
		}
		// …and allowed once it has left the window.
		time.Sleep(time.Until(start.Add(2*time.Second + 200*time.Millisecond)))
		if res := rfUpload(t, j, "ABC-1"); res.Status != 200 {
			t.Fatalf("a write after the first of 20 left the 2 s window: %d %s", res.Status, res.Body)
		}
	})
}

// TestStreamsLimit: at most --instance-max-streams uploads of an instance
// are in flight; the slot is given back when the upload ends.
func TestStreamsLimit(t *testing.T) {
	t.Parallel()
	j := startJira(t, false, func(c *configs.Config) { c.InstanceMaxStreams = 1 })
	const half = 64 << 10
	file := make([]byte, 2*half)
	for i := range file {
		file[i] = byte(i * 7)
	}

	before := rfSeen(j)
	held := rfHold(t, file[:half])
	first := rfGo(http.DefaultClient, rfUploadReq(t, j, "ABC-1", "filename=big.bin", held, int64(len(file))))
	rfEventually(t, "the first upload streams to Jira", func() bool { return j.jira.Requests() == before.requests+1 })

	mid := rfSeen(j)
	res := rfUpload(t, j, "ABC-2")
	rfWant(t, "second upload while the first streams", res, 429, "rate_limited_streams")
	rfRetryAfter(t, "second upload", res, 1, 1)
	rfRateLimitHeaders(t, "second upload", res, "1")
	rfUnchanged(t, j, mid, "second upload while the first streams")

	held.finish(file[half:])
	if res := rfWait(t, "first upload", first); res.Status != 200 {
		t.Fatalf("first upload: %d %s", res.Status, res.Body)
	}
	done := j.jira.CompletedUploads()
	if len(done) != 1 || done[0].Size != int64(len(file)) || done[0].SHA256 != relaytest.SHA256(file) {
		t.Fatalf("Jira's completed uploads: %+v", done)
	}
	if res := rfUpload(t, j, "ABC-2"); res.Status != 200 {
		t.Fatalf("an upload after the first ended: %d %s", res.Status, res.Body)
	}
}

// TestJiraRateLimitCoolDown: Jira's 429 reaches the caller as Jira sent it,
// and the relay then holds the instance locally until Retry-After passes.
func TestJiraRateLimitCoolDown(t *testing.T) {
	t.Run("with Retry-After", func(t *testing.T) {
		j := startJira(t, false, nil)
		j.jira.SetFault(fakejira.Fault{Kind: fakejira.Fault429, RetryAfter: "2", Count: 1, Endpoint: fakejira.EndpointUpload})
		before := rfSeen(j)
		res := rfUpload(t, j, "ABC-1")
		tripped := time.Now()
		if res.Status != 429 || string(res.Body) != `{"errorMessages":["Rate limit exceeded."]}` {
			t.Fatalf("Jira's 429: %d %s", res.Status, res.Body)
		}
		for k, want := range map[string]string{"Retry-After": "2", "X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "RateLimit-Reason": "jira-burst-based"} {
			if got := res.Header.Get(k); got != want {
				t.Errorf("Jira's 429: %s %q, want %q", k, got, want)
			}
		}
		if res.Header.Get("X-RateLimit-Reset") == "" || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
			t.Errorf("Jira's 429: X-RateLimit-Reset %q, Content-Type %q", res.Header.Get("X-RateLimit-Reset"), res.Header.Get("Content-Type"))
		}
		if now := rfSeen(j); now.requests != before.requests+1 {
			t.Fatalf("Jira saw %d requests for one upload", now.requests-before.requests)
		}

		before = rfSeen(j)
		res = rfUpload(t, j, "ABC-2")
		rfWant(t, "upload during the cool-down", res, 429, "rate_limited_jira_cooldown")
		rfRetryAfter(t, "upload during the cool-down", res, 1, 2)
		if got := res.Header.Get("RateLimit-Reason"); got != "jira-burst-based" {
			t.Errorf("upload during the cool-down: RateLimit-Reason %q, want Jira's jira-burst-based", got)
		}
		rfUnchanged(t, j, before, "during the cool-down")
		// Jira's burst limit holds one endpoint and method: downloads go on.
		if res = send(t, rfDownloadReq(t, j, "10000")); res.Status == 429 || rfSeen(j).requests != before.requests+1 {
			t.Errorf("download while uploads cool down: %d %s, want Jira's answer", res.Status, res.Body)
		}

		time.Sleep(time.Until(tripped.Add(2100 * time.Millisecond)))
		if res := rfUpload(t, j, "ABC-2"); res.Status != 200 {
			t.Fatalf("after Retry-After passed: %d %s", res.Status, res.Body)
		}
	})

	t.Run("without Retry-After", func(t *testing.T) {
		j := startJira(t, false, nil)
		j.jira.SetFault(fakejira.Fault{Kind: fakejira.Fault429, Count: 1, Endpoint: fakejira.EndpointUpload})
		res := rfUpload(t, j, "ABC-1")
		tripped := time.Now()
		if res.Status != 429 || string(res.Body) != `{"errorMessages":["Rate limit exceeded."]}` {
			t.Fatalf("Jira's 429: %d %s", res.Status, res.Body)
		}
		// Jira gave no Retry-After: the relay adds the cool-down it keeps
		// (1 s ± 30 %), so the caller knows when to come back.
		rfRetryAfter(t, "Jira's 429 without Retry-After", res, 1, 2)
		before := rfSeen(j)
		res = rfUpload(t, j, "ABC-2")
		// The backoff is 1 s ± 30 %.
		rfWant(t, "upload during the backoff", res, 429, "rate_limited_jira_cooldown")
		rfRetryAfter(t, "upload during the backoff", res, 1, 2)
		rfUnchanged(t, j, before, "during the backoff")

		time.Sleep(time.Until(tripped.Add(1400 * time.Millisecond)))
		if res := rfUpload(t, j, "ABC-2"); res.Status != 200 {
			t.Fatalf("after the backoff: %d %s", res.Status, res.Body)
		}
	})
}

// TestCircuitBreaker: Jira's 5xx and broken connections open the
// instance's breaker; 4xx and the caller's own aborts do not.
func TestCircuitBreaker(t *testing.T) {
	j := startJira(t, false, func(c *configs.Config) {
		c.BreakerFailures = 3
		// Jira's answer is awaited 300 ms; a stalled stream is cut after 1 s.
		c.UpstreamResponseTimeout = 300 * time.Millisecond
		c.StreamIdleTimeout = time.Second
	})

	// open drives three failing uploads through the breaker of j's instance
	// (each answered with one of statuses within the given time and reaching
	// Jira once), then shows it open: 503 at once, Jira not contacted,
	// uploads and downloads alike.
	open := func(t *testing.T, j *jiraSetup, within time.Duration, statuses ...int) {
		t.Helper()
		for i := range 3 {
			before := rfSeen(j)
			start := time.Now()
			res := rfUpload(t, j, "ABC-1")
			if d := time.Since(start); d > within {
				t.Errorf("upload %d while Jira fails: answered after %v, want within %v", i+1, d, within)
			}
			if !slices.Contains(statuses, res.Status) {
				t.Fatalf("upload %d while Jira fails: %d %s, want one of %v", i+1, res.Status, res.Body, statuses)
			}
			if res.Status >= 502 {
				res.ErrCode(t)
			}
			if now := rfSeen(j); now.requests > before.requests+1 {
				t.Fatalf("upload %d while Jira fails: Jira saw %d requests (retried?)", i+1, now.requests-before.requests)
			}
		}
		before := rfSeen(j)
		start := time.Now()
		res := rfUpload(t, j, "ABC-1")
		rfWant(t, "4th upload", res, 503, "upstream_circuit_open")
		rfRetryAfter(t, "4th upload", res, 1, 1) // --breaker-open-timeout 500ms, rounded up
		if d := time.Since(start); d > 250*time.Millisecond {
			t.Errorf("4th upload: the open breaker took %v to answer", d)
		}
		res = send(t, rfDownloadReq(t, j, "10000"))
		rfWant(t, "download while open", res, 503, "upstream_circuit_open")
		rfUnchanged(t, j, before, "while the breaker is open")
	}
	// probe waits out --breaker-open-timeout and shows a probe closing it.
	probe := func(t *testing.T) {
		t.Helper()
		time.Sleep(600 * time.Millisecond)
		if res := rfUpload(t, j, "ABC-1"); res.Status != 200 {
			t.Fatalf("half-open probe: %d %s", res.Status, res.Body)
		}
		for i := range 4 {
			if res := rfUpload(t, j, "ABC-1"); res.Status != 200 {
				t.Fatalf("upload %d after the probe: %d %s", i+1, res.Status, res.Body)
			}
		}
	}

	t.Run("Jira's 4xx are no failures", func(t *testing.T) {
		for i := range 5 {
			res := send(t, rfDownloadReq(t, j, strconv.Itoa(424240+i)))
			if res.Status != 404 || !strings.Contains(string(res.Body), "does not exist") {
				t.Fatalf("download %d of an unknown attachment: %d %s, want Jira's 404", i+1, res.Status, res.Body)
			}
		}
		if res := rfUpload(t, j, "ABC-1"); res.Status != 200 {
			t.Fatalf("upload after five 404s: %d %s", res.Status, res.Body)
		}
	})

	t.Run("the caller's aborts are no failures", func(t *testing.T) {
		const total, sent = 256 << 10, 96 << 10
		for i := range 3 {
			before := rfSeen(j)
			c, _ := rfDial(t, j)
			if _, err := io.WriteString(c, rfHead(j, rfTarget(j, "ABC-1"), j.tenant.Client, total)); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(make([]byte, sent)); err != nil {
				t.Fatal(err)
			}
			rfEventually(t, "the upload streams to Jira", func() bool { return j.jira.Requests() == before.requests+1 })
			_ = c.Close()
			ups, err := j.jira.WaitUploads(before.uploads+1, 5*time.Second)
			if err != nil {
				t.Fatalf("abort %d: %v", i+1, err)
			}
			if u := ups[len(ups)-1]; u.Complete {
				t.Fatalf("abort %d: Jira recorded a complete upload", i+1)
			}
		}
		time.Sleep(100 * time.Millisecond) // let the relay finish the aborted streams
		if res := rfUpload(t, j, "ABC-1"); res.Status != 200 {
			t.Fatalf("upload after three aborts: %d %s", res.Status, res.Body)
		}
	})

	t.Run("Jira's 5xx open it; a probe closes it", func(t *testing.T) {
		j.jira.SetFault(fakejira.Fault{Kind: fakejira.Fault500, Endpoint: fakejira.EndpointUpload})
		open(t, j, time.Second, 500, 502)
		j.jira.ClearFault()
		probe(t)
	})

	t.Run("Jira's timeouts open it", func(t *testing.T) {
		// Jira takes the upload and never answers: --upstream-response-timeout
		// (300 ms) ends the wait.
		j.jira.SetFault(fakejira.Fault{Kind: fakejira.FaultHang, Endpoint: fakejira.EndpointUpload})
		open(t, j, 800*time.Millisecond, 504)
		j.jira.ClearFault()
		probe(t)
	})

	t.Run("connection failures open it, for that instance only", func(t *testing.T) {
		gone := relaytest.StartJira(t, fakejira.Options{})
		gone.Close() // its port now refuses connections
		dead := &jiraSetup{relay: j.relay, api: j.api, jira: gone, tenant: j.api.MustRegister(t, gone.URL())}
		open(t, dead, time.Second, 502)
		if res := rfUpload(t, j, "ABC-1"); res.Status != 200 {
			t.Fatalf("another instance meanwhile: %d %s", res.Status, res.Body)
		}
	})
}

// TestCORS: the add-in's origin gets CORS headers, on success and on
// refusals; any other origin gets none.
func TestCORS(t *testing.T) {
	t.Parallel()
	const addin, evil = "https://addin.example.com", "https://evil.example"
	j := startJira(t, false, func(c *configs.Config) {
		c.CORSOrigins = []string{addin}
		c.InstanceBurst, c.InstanceRPS = 2, 0.01
	})
	preflight := func(t *testing.T, path, origin string) relaytest.Answer {
		t.Helper()
		req, err := http.NewRequest("OPTIONS", path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Close = true
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, x-relay-key, content-type, content-disposition")
		return send(t, req)
	}
	hasAll := func(list string, want ...string) bool {
		for _, w := range want {
			found := false
			for _, v := range strings.Split(list, ",") {
				found = found || strings.EqualFold(strings.TrimSpace(v), w)
			}
			if !found {
				return false
			}
		}
		return true
	}
	exposed := []string{"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}

	before := rfSeen(j)
	for _, path := range []string{j.uploadPath("ABC-1"), j.downloadPath("10000")} {
		res := preflight(t, path, addin)
		if res.Status != 204 || res.Header.Get("Access-Control-Allow-Origin") != addin {
			t.Errorf("preflight from %s to %s: %d, Allow-Origin %q", addin, path, res.Status, res.Header.Get("Access-Control-Allow-Origin"))
		}
		if h := res.Header.Get("Access-Control-Allow-Headers"); !hasAll(h, "Authorization", "X-Relay-Key", "Content-Type", "Content-Disposition") {
			t.Errorf("preflight: Allow-Headers %q", h)
		}
		if m := res.Header.Get("Access-Control-Allow-Methods"); !hasAll(m, "POST", "GET") {
			t.Errorf("preflight: Allow-Methods %q", m)
		}
		res = preflight(t, path, evil)
		for k := range res.Header {
			if strings.HasPrefix(strings.ToLower(k), "access-control-") {
				t.Errorf("preflight from %s: %s %q", evil, k, res.Header.Get(k))
			}
		}
	}
	rfUnchanged(t, j, before, "preflights")

	res := rfUpload(t, j, "ABC-1", "Origin", addin)
	if res.Status != 200 || res.Header.Get("Access-Control-Allow-Origin") != addin {
		t.Errorf("upload from %s: %d, Allow-Origin %q", addin, res.Status, res.Header.Get("Access-Control-Allow-Origin"))
	}
	if h := res.Header.Get("Access-Control-Expose-Headers"); !hasAll(h, exposed...) {
		t.Errorf("upload from %s: Expose-Headers %q", addin, h)
	}
	res = rfUpload(t, j, "ABC-1", "Origin", evil)
	if res.Status != 200 || res.Header.Get("Access-Control-Allow-Origin") != "" || res.Header.Get("Access-Control-Expose-Headers") != "" {
		t.Errorf("upload from %s: %d, Allow-Origin %q", evil, res.Status, res.Header.Get("Access-Control-Allow-Origin"))
	}
	res = rfUpload(t, j, "ABC-1", "Origin", addin)
	rfWant(t, "429 to the add-in", res, 429, "rate_limited_instance")
	if res.Header.Get("Access-Control-Allow-Origin") != addin || !hasAll(res.Header.Get("Access-Control-Expose-Headers"), exposed...) {
		t.Errorf("429 to the add-in: Allow-Origin %q, Expose-Headers %q", res.Header.Get("Access-Control-Allow-Origin"), res.Header.Get("Access-Control-Expose-Headers"))
	}
	res = rfUpload(t, j, "ABC-1", "Origin", addin, "X-Relay-Key", "jrc_wrong")
	rfWant(t, "401 to the add-in", res, 401, "unauthorized")
	if res.Header.Get("Access-Control-Allow-Origin") != addin {
		t.Errorf("401 to the add-in: Allow-Origin %q", res.Header.Get("Access-Control-Allow-Origin"))
	}
}

// TestUploadForwardsOnlyWhatItShould: Jira gets the caller's Jira
// credential and nothing else of the caller's, at the registered instance.
func TestUploadForwardsOnlyWhatItShould(t *testing.T) {
	t.Parallel()
	j := startJira(t, false, nil)
	const auth = "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"
	leaks := []string{"Cookie", "X-Relay-Key", "Proxy-Authorization", "X-Forwarded-Host", "X-Forwarded-For", "Origin", "X-Custom"}

	t.Run("headers", func(t *testing.T) {
		req := rfUploadReq(t, j, "ABC-12", "filename=note.txt", strings.NewReader(rfNote), int64(len(rfNote)))
		req.Host = "evil.example"
		req.Header.Set("Authorization", auth)
		req.Header.Set("Cookie", "session=s3cret")
		req.Header.Set("Proxy-Authorization", "Basic cHJveHk6cHc=")
		req.Header.Set("X-Forwarded-Host", "evil.example")
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		req.Header.Set("X-Custom", "1")
		if res := send(t, req); res.Status != 200 {
			t.Fatalf("upload: %d %s", res.Status, res.Body)
		}
		ups := j.jira.Uploads()
		u := ups[len(ups)-1]
		if u.Issue != "ABC-12" || !u.Complete {
			t.Fatalf("Jira's upload: issue %q complete %v (%s)", u.Issue, u.Complete, u.Err)
		}
		if got := u.Header.Values("Authorization"); len(got) != 1 || got[0] != auth {
			t.Errorf("Authorization at Jira: %q, want exactly %q", got, auth)
		}
		if got := u.Header.Get("X-Atlassian-Token"); got != "no-check" {
			t.Errorf("X-Atlassian-Token at Jira: %q", got)
		}
		for _, k := range leaks {
			if v, ok := u.Header[http.CanonicalHeaderKey(k)]; ok {
				t.Errorf("Jira got the caller's %s: %q", k, v)
			}
		}
	})

	t.Run("absolute-form target naming another host", func(t *testing.T) {
		before := rfSeen(j)
		c, br := rfDial(t, j)
		target := "http://evil.example:81" + rfTarget(j, "ABC-13")
		if _, err := io.WriteString(c, rfHead(j, target, j.tenant.Client, len(rfNote))+rfNote); err != nil {
			t.Fatal(err)
		}
		if res := rfReadAnswer(t, br); res.Status != 200 {
			t.Fatalf("upload: %d %s", res.Status, res.Body)
		}
		ups := j.jira.Uploads()
		if len(ups) != before.uploads+1 || ups[len(ups)-1].Issue != "ABC-13" || !ups[len(ups)-1].Complete {
			t.Fatalf("the registered Jira did not get the upload: %+v", ups)
		}
	})

	for _, tc := range []struct {
		name, filename, disposition string
	}{
		{"quotes and CR LF in ?filename", `a"b` + "\r\nX-Injected: 1\r\n" + `c".txt`, ""},
		{"non-ASCII in ?filename", "Bericht „Q1“ – Müller.pdf", ""},
		{"CR LF in Content-Disposition filename*", "x\r\nX-Injected: 1.txt", "attachment; filename*=UTF-8''x%0D%0AX-Injected%3A%201.txt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			query := "filename=" + url.QueryEscape(tc.filename)
			if tc.disposition != "" {
				query = ""
			}
			req := rfUploadReq(t, j, "ABC-14", query, strings.NewReader(rfNote), int64(len(rfNote)))
			if tc.disposition != "" {
				req.Header.Set("Content-Disposition", tc.disposition)
			}
			if res := send(t, req); res.Status != 200 {
				t.Fatalf("upload: %d %s", res.Status, res.Body)
			}
			ups := j.jira.Uploads()
			u := ups[len(ups)-1]
			if !u.Complete || u.Parts != 1 || u.Filename != tc.filename {
				t.Fatalf("Jira's upload: complete %v parts %d filename %q (%s), want %q", u.Complete, u.Parts, u.Filename, u.Err, tc.filename)
			}
			if _, ok := u.Header["X-Injected"]; ok {
				t.Fatal("the file name injected a header")
			}
		})
	}
}

// TestGuardRefusalsSpendNoIssueWrite: Jira's per-issue write limit (20 per
// 2 s) counts the writes that reach Jira. Thirty uploads to one issue
// refused by the open breaker answer 503 (never 429 issue_writes), thirty
// refused by the issue's cool-down answer 429 jira_cooldown, and once both
// have passed the issue still has its 20 writes.
func TestGuardRefusalsSpendNoIssueWrite(t *testing.T) {
	j := startJira(t, false, func(c *configs.Config) {
		c.BreakerFailures = 1
		c.IPRPS, c.IPBurst, c.InstanceRPS, c.InstanceBurst = 1e4, 1e4, 1e4, 1e4
	})
	j.jira.SetFault(fakejira.Fault{Kind: fakejira.Fault500, Count: 1, Endpoint: fakejira.EndpointUpload})
	if res := rfUpload(t, j, "ABC-1"); res.Status != 502 && res.Status != 500 {
		t.Fatalf("Jira's 500: %d %s", res.Status, res.Body)
	}
	for i := range 30 {
		if res := rfUpload(t, j, "ABC-1"); res.Status != 503 {
			t.Fatalf("upload %d while the breaker is open: %d %s, want 503", i+1, res.Status, res.Body)
		}
	}
	// The breaker half-opens after 500 ms; a probe closes it.
	rfEventually(t, "the breaker closes", func() bool { return rfUpload(t, j, "ABC-2").Status == 200 })

	j.jira.SetFault(fakejira.Fault{Kind: fakejira.Fault429, Count: 1, RetryAfter: "1", Reason: fakejira.ReasonPerIssue, Issue: "ABC-1"})
	tripped := time.Now()
	if res := rfUpload(t, j, "ABC-1"); res.Status != 429 {
		t.Fatalf("Jira's per-issue 429: %d %s", res.Status, res.Body)
	}
	for i := range 30 {
		res := rfUpload(t, j, "ABC-1")
		rfWant(t, fmt.Sprintf("upload %d during the issue's cool-down", i+1), res, 429, "rate_limited_jira_cooldown")
		if res.Header.Get("RateLimit-Reason") != fakejira.ReasonPerIssue {
			t.Fatalf("cool-down refusal without Jira's reason: %v", res.Header)
		}
	}
	time.Sleep(time.Until(tripped.Add(2100 * time.Millisecond))) // the cool-down and Jira's 2 s window pass
	for i := range 20 {
		if res := rfUpload(t, j, "ABC-1"); res.Status != 200 {
			t.Fatalf("write %d of the issue's 20 after the refusals: %d %s", i+1, res.Status, res.Body)
		}
	}
	rfWant(t, "the 21st write", rfUpload(t, j, "ABC-1"), 429, "rate_limited_issue_writes")
}

// TestCooldownAfterContinueHoldsTheBody: an upload that passed its checks
// before "100 Continue" is held when a cool-down of its issue began (here
// through another relay of the fleet, as its watch delivers it) before its
// body came: 429 with Jira's reason, nothing sent to Jira.
func TestCooldownAfterContinueHoldsTheBody(t *testing.T) {
	j := startJira(t, false, nil)
	c, br := rfDial(t, j)
	if _, err := io.WriteString(c, rfHead(j, rfTarget(j, "ABC-1"), j.tenant.Client, len(rfNote), "Expect: 100-continue")); err != nil {
		t.Fatal(err)
	}
	if res := rfReadAnswer(t, br); res.Status != http.StatusContinue {
		t.Fatalf("want 100 Continue, got %d %s", res.Status, res.Body)
	}
	before := rfSeen(j)
	j.relay.Server.Cooldowns().Trip(j.tenant.ID, fleet.Upload, "ABC-1", fleet.ReasonPerIssue, 30*time.Second)
	if _, err := io.WriteString(c, rfNote); err != nil {
		t.Fatal(err)
	}
	res := rfReadAnswer(t, br)
	rfWant(t, "the body after a cool-down began", res, 429, "rate_limited_jira_cooldown")
	if got := res.Header.Get("RateLimit-Reason"); got != fleet.ReasonPerIssue {
		t.Errorf("RateLimit-Reason %q, want %q", got, fleet.ReasonPerIssue)
	}
	rfUnchanged(t, j, before, "after the cool-down began")
}
