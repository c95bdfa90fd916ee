package resiliencetest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
)

// jiraAuth is a Jira credential (Basic mia@example.com:token).
const jiraAuth = "Basic bWlhQGV4YW1wbGUuY29tOnRva2Vu"

// answer and tenant are relaytest's, named briefly for this package.
type (
	answer = relaytest.Answer
	tenant = relaytest.Tenant
)

// jiraErr reports whether the body is Jira's error collection
// {"errorMessages":[...]} (an answer of Jira's the relay relays).
func jiraErr(a answer) bool {
	var e struct {
		ErrorMessages []string `json:"errorMessages"`
	}
	return json.Unmarshal(a.Body, &e) == nil && len(e.ErrorMessages) > 0 &&
		strings.HasPrefix(a.Header.Get("Content-Type"), "application/json")
}

// clearError reports whether a failed answer is a clear one: a JSON error
// body, the relay's shape or (for Jira's own answers relayed) Jira's.
func clearError(a answer) bool {
	if a.Err != nil {
		return false
	}
	_, ok := a.RelayError()
	return ok || jiraErr(a)
}

// wantErr fails the test unless a is status with the relay's error code.
func wantErr(t testing.TB, what string, a answer, status int, code string) {
	t.Helper()
	got, ok := a.RelayError()
	if a.Err != nil || a.Status != status || !ok || got != code {
		t.Errorf("%s: got %s, want %d %s in the JSON error shape", what, a, status, code)
	}
}

// httpClient is a client with its own pool, bounded per request.
func httpClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     10 * time.Second,
			DisableCompression:  true,
		},
	}
}

// api is a client of the relay's API with a pool of its own; a transport
// error is the answer's Err, never a failure of the test by itself.
type api struct{ *relaytest.Client }

func newAPI(t testing.TB, base string) *api {
	a := &api{&relaytest.Client{Base: base, HTTP: httpClient()}}
	t.Cleanup(a.HTTP.CloseIdleConnections)
	return a
}

// Upload body kinds.
const (
	kindRaw       = "raw"
	kindBase64    = "base64"
	kindMultipart = "multipart"
)

// uploadRequest builds an upload of data as filename to issue, shaped as kind.
func uploadRequest(base string, tn tenant, issue, filename string, data []byte, kind string) *http.Request {
	u := base + "/v1/instances/" + tn.ID + "/issues/" + issue + "/attachments"
	var body []byte
	ct := "application/octet-stream"
	switch kind {
	case kindRaw:
		u += "?filename=" + urlQueryEscape(filename)
		body = data
	case kindBase64:
		u += "?encoding=base64&filename=" + urlQueryEscape(filename)
		body = []byte(base64.StdEncoding.EncodeToString(data))
	case kindMultipart:
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="file"; filename="`+filename+`"`)
		h.Set("Content-Type", "application/octet-stream")
		w, _ := mw.CreatePart(h)
		_, _ = w.Write(data)
		_ = mw.Close()
		body = buf.Bytes()
		ct = mw.FormDataContentType()
	}
	req, _ := http.NewRequest("POST", u, bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	req.Header.Set("X-Relay-Key", tn.Client)
	req.Header.Set("Authorization", jiraAuth)
	req.Header.Set("Content-Type", ct)
	return req
}

func urlQueryEscape(s string) string {
	return strings.NewReplacer("%", "%25", "&", "%26", "+", "%2B", "=", "%3D", "#", "%23", " ", "%20", "?", "%3F").Replace(s)
}

func (a *api) upload(tn tenant, issue, filename string, data []byte, kind string) answer {
	return a.Send(uploadRequest(a.Base, tn, issue, filename, data, kind))
}

func (a *api) download(tn tenant, id string) answer {
	req, _ := http.NewRequest("GET", a.Base+"/v1/instances/"+tn.ID+"/attachments/"+id+"/content", nil)
	req.Header.Set("X-Relay-Key", tn.Client)
	req.Header.Set("Authorization", jiraAuth)
	return a.Send(req)
}

// content is n deterministic bytes.
func content(n int, seed int64) []byte {
	b, _ := io.ReadAll(io.LimitReader(fakejira.NewContent(int64(n), seed), int64(n)))
	return b
}

// completedWith returns the completed uploads at Jira with filename.
func completedWith(fj *fakejira.Server, filename string) []fakejira.Upload {
	var out []fakejira.Upload
	for _, u := range fj.CompletedUploads() {
		if u.Filename == filename {
			out = append(out, u)
		}
	}
	return out
}

// relaxedLimits lifts the local rate limits so that a test's own traffic is
// never refused by them.
func relaxedLimits(c *configs.Config) {
	c.InstanceRPS, c.InstanceBurst = 10000, 10000
	c.IPRPS, c.IPBurst = 10000, 10000
}

// noPanics fails the test when the relay logged a recovered panic or an
// internal error.
func noPanics(t testing.TB, logs *relaytest.LogBuffer) {
	t.Helper()
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "panic") || strings.Contains(line, `"internal error"`) {
			t.Errorf("the relay logged: %s", line)
		}
	}
}

// ---- leaks ----

// openFDs counts the entries of /proc/self/fd (-1 where there is none).
func openFDs() int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(es)
}

// resources is a count of goroutines and open file descriptors.
type resources struct{ goroutines, fds int }

func (r resources) String() string { return fmt.Sprintf("%d goroutines, %d fds", r.goroutines, r.fds) }

// goroutines counts the goroutines, leaving out fasthttp's idle workers:
// its worker pool keeps a finished connection's goroutine parked for up to
// 20 s (MaxIdleWorkerDuration, checked every 10 s) for reuse; it holds no
// connection.
func goroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\ngoroutine ") {
		if strings.Contains(g, "fasthttp.(*workerPool).workerFunc") && !strings.Contains(g, "serveConn") {
			continue
		}
		count++
	}
	return count
}

// settled counts goroutines and fds after letting finished work exit: it
// takes the smallest of several samples over about 300 ms.
func settled() resources {
	best := resources{1 << 30, 1 << 30}
	for range 6 {
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
		best.goroutines = min(best.goroutines, goroutines())
		if n := openFDs(); n >= 0 {
			best.fds = min(best.fds, n)
		}
	}
	return best
}

// noLeak waits up to within for goroutines and fds to come back to at most
// base plus slack; it fails the test with a goroutine dump otherwise.
func noLeak(t testing.TB, what string, base resources, slackG, slackFD int, within time.Duration) resources {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		now := settled()
		fdOK := now.fds <= base.fds+slackFD || base.fds < 0
		if now.goroutines <= base.goroutines+slackG && fdOK {
			t.Logf("%s: before %v, after %v (slack %d goroutines, %d fds)", what, base, now, slackG, slackFD)
			return now
		}
		if time.Now().After(deadline) {
			var dump bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
			d := dump.String()
			if len(d) > 60000 {
				d = d[:60000]
			}
			t.Errorf("%s: leak: before %v, after %v (slack %d goroutines, %d fds)\n%s", what, base, now, slackG, slackFD, d)
			return now
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dialRelay opens a raw connection to addr with an overall deadline.
func dialRelay(t testing.TB, addr string, deadline time.Duration) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(deadline))
	t.Cleanup(func() { _ = c.Close() })
	return c
}
