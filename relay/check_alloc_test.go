//go:build !race

package relay

import (
	"net"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"github.com/jira-relay/jira-relay/internal/instanceurl"
	"github.com/jira-relay/jira-relay/ratelimit"
	"github.com/valyala/fasthttp"
)

// TestAdmitAllocatesNothing: the guards' decision on an upload (upstream,
// cool-down, breaker, streams, per-issue limit), as Check runs it for every
// upload and every Expect phase, makes no heap allocation once the
// instance, its upstream and its limiter entries exist. (The shape step
// before it copies a few header values into the plan; the front door's
// own decision, key check and limits, is measured in proxy.)
func TestAdmitAllocatesNothing(t *testing.T) {
	st, reg := etcdtest.StoreWithInstance(t, "http://127.0.0.1:1")
	cfg := configs.Defaults()
	cfg.AllowHTTPUpstream = true
	cfg.AllowedUpstreams = []string{"127.0.0.1"}
	set := metrics.NewSet()
	r, err := New(cfg, instanceurl.NewPolicy(cfg.AllowedUpstreams, true), httpx.NewResponder(nil, set), set, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Jira's per-issue limit (20 per 2 s) would refuse a hot loop on one
	// issue; the refusal path is not what this test measures. Windows of a
	// nanosecond admit every call (the clock moves on between two).
	r.guards.writes = ratelimit.NewIssueWrites(ratelimit.WithWindows(
		ratelimit.Window{Events: 1, Per: time.Nanosecond}, ratelimit.Window{Events: 1, Per: time.Nanosecond}))
	var rc fasthttp.RequestCtx
	rc.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5000}, nil)
	rc.Request.Header.SetMethod("POST")
	rc.Request.SetRequestURI("/v1/instances/" + reg.Instance.ID + "/issues/ITSM-34/attachments?filename=a.pdf")
	rc.Request.Header.Set("Authorization", "Basic x")
	rc.Request.Header.SetContentType("application/pdf")
	rc.Request.Header.SetContentLength(1000)
	in, _, err := st.Authenticate(t.Context(), []byte(reg.Instance.ID), []byte(reg.ClientKey))
	if err != nil {
		t.Fatal(err)
	}
	target, ok := MatchUpload(rc.Request.URI().PathOriginal())
	if !ok {
		t.Fatal("upload path not matched")
	}
	var p Plan
	if err := r.Check(&rc, in, target, &p); err != nil {
		t.Fatal(err)
	}
	admit := func() {
		if err := r.admit(&p); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(200, admit); n != 0 {
		t.Fatalf("guards' decision: %v allocations per upload, want 0", n)
	}
}
