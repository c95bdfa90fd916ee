package resiliencetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// jiraAuth is a Jira credential (Basic mia@example.com:token).
const jiraAuth = "Basic bWlhQGV4YW1wbGUuY29tOnRva2Vu"

// answer is what the relay answered, or the transport error.
type answer struct {
	Status int
	Header http.Header
	Body   []byte
	Err    error
}

func (a answer) String() string {
	if a.Err != nil {
		return "transport error: " + a.Err.Error()
	}
	b := a.Body
	if len(b) > 300 {
		b = b[:300]
	}
	return fmt.Sprintf("%d %s", a.Status, b)
}

// relayErr is the code of the relay's JSON error shape
// {"error":{"code","message"}}; ok is false when the body has another shape.
func (a answer) relayErr() (code string, ok bool) {
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(a.Body, &e) != nil || e.Error == nil || e.Error.Code == "" || e.Error.Message == "" {
		return "", false
	}
	if !strings.HasPrefix(a.Header.Get("Content-Type"), "application/json") {
		return "", false
	}
	return e.Error.Code, true
}

// jiraErr reports whether the body is Jira's error collection
// {"errorMessages":[...]} (an answer of Jira's the relay relays).
func (a answer) jiraErr() bool {
	var e struct {
		ErrorMessages []string `json:"errorMessages"`
	}
	return json.Unmarshal(a.Body, &e) == nil && len(e.ErrorMessages) > 0 &&
		strings.HasPrefix(a.Header.Get("Content-Type"), "application/json")
}

// clearError reports whether a failed answer is a clear one: a JSON error
// body, the relay's shape or (for Jira's own answers relayed) Jira's.
func (a answer) clearError() bool {
	if a.Err != nil {
		return false
	}
	_, ok := a.relayErr()
	return ok || a.jiraErr()
}

func clip(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

// wantErr fails the test unless a is status with the relay's error code.
func wantErr(t testing.TB, what string, a answer, status int, code string) {
	t.Helper()
	got, ok := a.relayErr()
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

// api is a small client of the relay's API.
type api struct {
	base string
	hc   *http.Client
}

func newAPI(t testing.TB, base string) *api {
	a := &api{base: base, hc: httpClient()}
	t.Cleanup(a.hc.CloseIdleConnections)
	return a
}

// do sends a request; body is nil, a string, []byte, io.Reader or a value
// sent as JSON; hdr are header name/value pairs.
func (a *api) do(method, path, key string, body any, hdr ...string) answer {
	var r io.Reader
	isJSON := true
	switch b := body.(type) {
	case nil:
		isJSON = false
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	case io.Reader:
		r, isJSON = b, false
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.base+path, r)
	if err != nil {
		return answer{Err: err}
	}
	if isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("X-Relay-Key", key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return roundTrip(a.hc, req)
}

func roundTrip(hc *http.Client, req *http.Request) answer {
	resp, err := hc.Do(req)
	if err != nil {
		return answer{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: b, Err: err}
}

// tenant is a registered instance with its keys.
type tenant struct {
	ID, Client, Admin, URL string
}

func registerBody(url string) map[string]any {
	return map[string]any{
		"url": url, "jiraVersion": "1001.0.0-SNAPSHOT", "addinVersion": "4.2.0",
		"license": map[string]any{"key": "LIC-1", "expiresAt": "2027-06-30T00:00:00Z", "seats": 250},
	}
}

// register registers url; the answer is returned when it is not 201.
func (a *api) register(url string) (tenant, answer) {
	res := a.do("POST", "/v1/instances", "", registerBody(url))
	if res.Err != nil || res.Status != 201 {
		return tenant{}, res
	}
	var m struct{ InstanceID, ClientKey, AdminKey string }
	if err := json.Unmarshal(res.Body, &m); err != nil {
		res.Err = err
		return tenant{}, res
	}
	return tenant{ID: m.InstanceID, Client: m.ClientKey, Admin: m.AdminKey, URL: url}, res
}

func (a *api) mustRegister(t testing.TB, url string) tenant {
	t.Helper()
	tn, res := a.register(url)
	if tn.ID == "" {
		t.Fatalf("register %s: %s", url, res)
	}
	return tn
}

func mappingBody(conv, mail, user, issueID, key string) map[string]any {
	return map[string]any{"conversationId": conv, "mailId": mail, "userId": user, "app": "Jira",
		"jira": map[string]any{"id": issueID, "key": key, "projectId": "10200"}}
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
	return roundTrip(a.hc, uploadRequest(a.base, tn, issue, filename, data, kind))
}

func (a *api) download(tn tenant, id string) answer {
	req, _ := http.NewRequest("GET", a.base+"/v1/instances/"+tn.ID+"/attachments/"+id+"/content", nil)
	req.Header.Set("X-Relay-Key", tn.Client)
	req.Header.Set("Authorization", jiraAuth)
	return roundTrip(a.hc, req)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// content is n deterministic bytes.
func content(n int, seed int64) []byte {
	b, _ := io.ReadAll(io.LimitReader(fakejira.NewContent(int64(n), seed), int64(n)))
	return b
}

// startJira starts a fake Jira Cloud, closed at the end of the test.
func startJira(t testing.TB) *fakejira.Server {
	t.Helper()
	fj, err := fakejira.Start(fakejira.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fj.Close)
	return fj
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

// logBuffer collects log lines (a JSON slog handler writes into it).
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// noPanics fails the test when the relay logged a recovered panic or an
// internal error.
func noPanics(t testing.TB, logs *logBuffer) {
	t.Helper()
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "panic") || strings.Contains(line, `"internal error"`) {
			t.Errorf("the relay logged: %s", line)
		}
	}
}

// startEtcd is a single-member etcd with a client, closed at the end of
// the test.
func startEtcd(t testing.TB) *clientv3.Client {
	t.Helper()
	_, cli := etcdtest.Start(t)
	return cli
}

// quietClient is an etcd client that logs nothing, closed at the end of
// the test.
func quietClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// keyCount counts the relay's keys in etcd.
func keyCount(t testing.TB, cli *clientv3.Client, prefix string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
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

// eventually polls cond every 20 ms until it holds or within passes.
func eventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
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
