//go:build !race

package proxy

import (
	"net"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/relay"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// TestAdmitAllocatesNothing: the front door's decision on a request (the
// upload route matched by hand, the key checked against the cache, the
// limits of the caller's address and of the instance) makes no heap
// allocation once the instance and its limiter entries exist. Every data
// route and every upload runs it; a cached config read (304) adds nothing
// to it but the cache lookup.
func TestAdmitAllocatesNothing(t *testing.T) {
	st, reg := etcdtest.StoreWithInstance(t, "http://127.0.0.1:1")
	cfg := configs.Defaults()
	cfg.AllowHTTPUpstream = true
	cfg.AllowedUpstreams = []string{"127.0.0.1"}
	cfg.InstanceRPS, cfg.InstanceBurst, cfg.IPRPS, cfg.IPBurst = 1e9, 1e9, 1e9, 1e9
	s, err := New(cfg, st, metrics.NewSet(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var rc fasthttp.RequestCtx
	rc.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5000}, nil)
	rc.Request.Header.SetMethod("POST")
	rc.Request.SetRequestURI("/v1/instances/" + reg.Instance.ID + "/issues/ITSM-34/attachments?filename=a.pdf")
	rc.Request.Header.Set("X-Relay-Key", reg.ClientKey)
	rc.Request.Header.Set("Authorization", "Basic x")
	rc.Request.Header.SetContentLength(1000)

	decide := func() {
		tg, ok := relay.MatchUpload(rc.Request.URI().PathOriginal())
		if !ok {
			t.Fatal("upload route not matched")
		}
		if _, err := s.admit(&rc, tg.Instance, store.RoleClient, true); err != nil {
			t.Fatal(err)
		}
	}
	decide()
	if n := testing.AllocsPerRun(200, decide); n != 0 {
		t.Fatalf("front door decision: %v allocations per request, want 0", n)
	}
}
