//go:build !race

package proxy

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/ratelimit"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// TestDecisionPathAllocatesNothing: the per-request decision of an upload
// (route match, key check from the cache, rate limiters, breaker check) makes
// no heap allocation once the instance, its limiter entries and its upstream
// exist.
func TestDecisionPathAllocatesNothing(t *testing.T) {
	_, cli := etcdtest.Start(t)
	st, _ := store.New(cli, cli, store.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go st.Run(ctx)
	<-st.Synced()
	cfg := configs.Defaults()
	cfg.AllowHTTPUpstream = true
	cfg.AllowedUpstreams = []string{"127.0.0.1"}
	cfg.InstanceRPS, cfg.InstanceBurst, cfg.IPRPS, cfg.IPBurst = 1e9, 1e9, 1e9, 1e9
	s, err := New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := st.Register(ctx, store.NewInstance{URL: "http://127.0.0.1:1", JiraVersion: "1", AddinVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	// Jira's per-issue limit (20 per 2 s) would refuse a hot loop on one
	// issue; the refusal path is not what this test measures. Windows of a
	// nanosecond admit every call (the clock moves on between two).
	s.guards.writes = ratelimit.NewIssueWrites(ratelimit.WithWindows(
		ratelimit.Window{Events: 1, Per: time.Nanosecond}, ratelimit.Window{Events: 1, Per: time.Nanosecond}))
	var rc fasthttp.RequestCtx
	rc.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5000}, nil)
	rc.Request.Header.SetMethod("POST")
	rc.Request.SetRequestURI("/v1/instances/" + reg.Instance.ID + "/issues/ITSM-34/attachments?filename=a.pdf")
	rc.Request.Header.Set("X-Relay-Key", reg.ClientKey)
	rc.Request.Header.Set("Authorization", "Basic x")
	rc.Request.Header.SetContentLength(1000)

	decide := func() {
		if !s.decide(&rc) {
			t.Fatal("refused")
		}
	}
	decide()
	if n := testing.AllocsPerRun(200, decide); n != 0 {
		t.Fatalf("decision path: %v allocations per request, want 0", n)
	}
}
