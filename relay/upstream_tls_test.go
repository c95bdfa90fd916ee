package relay

import (
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/instanceurl"
	"github.com/valyala/fasthttp"
)

// TestUpstreamResumesTLSSessions: a Jira over HTTPS that closes every
// connection after its answer. The first connection makes a full
// handshake; every later one, also another instance's on the same host,
// resumes the session (an abbreviated handshake: no certificate chain, no
// signature), as the server sees it.
func TestUpstreamResumesTLSSessions(t *testing.T) {
	var mu sync.Mutex
	var resumed []bool
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		resumed = append(resumed, r.TLS.DidResume)
		mu.Unlock()
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, `{}`)
	}))
	srv.StartTLS()
	defer srv.Close()

	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := configs.Defaults()
	cfg.UpstreamCA = ca
	ups, err := newUpstreams(cfg, instanceurl.NewPolicy([]string{"127.0.0.1"}, false), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	get := func(instance string) {
		t.Helper()
		up, err := ups.get(instance, srv.URL+"/ex/jira/"+instance)
		if err != nil {
			t.Fatal(err)
		}
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(up.base + "/rest/api/3/myself")
		if err := up.hc.Do(req, resp); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.BodyStream()); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != 200 {
			t.Fatalf("status %d", resp.StatusCode())
		}
	}
	get("a")
	get("a")
	get("a")
	get("b") // another instance's upstream, same host: the cache is shared

	mu.Lock()
	defer mu.Unlock()
	want := []bool{false, true, true, true}
	if len(resumed) != len(want) {
		t.Fatalf("the server saw %d connections' requests, want %d", len(resumed), len(want))
	}
	for i := range want {
		if resumed[i] != want[i] {
			t.Errorf("connection %d: DidResume %v, want %v (all: %v)", i+1, resumed[i], want[i], resumed)
		}
	}
}
