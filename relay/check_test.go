package relay

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"github.com/jira-relay/jira-relay/internal/instanceurl"
	"github.com/jira-relay/jira-relay/ratelimit"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// checkRig is a relay and one upload's request, checked against a real
// store, for tests of the check and acquire steps.
type checkRig struct {
	r      *Relay
	rc     *fasthttp.RequestCtx
	in     *store.Instance
	target Target
}

func newCheckRig(t *testing.T, mutate func(*configs.Config)) *checkRig {
	t.Helper()
	st, reg := etcdtest.StoreWithInstance(t, "http://127.0.0.1:1")
	cfg := configs.Defaults()
	cfg.AllowHTTPUpstream = true
	cfg.AllowedUpstreams = []string{"127.0.0.1"}
	if mutate != nil {
		mutate(&cfg)
	}
	set := metrics.NewSet()
	r, err := New(cfg, instanceurl.NewPolicy(cfg.AllowedUpstreams, true), httpx.NewResponder(nil, set), set, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := new(fasthttp.RequestCtx)
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
	return &checkRig{r: r, rc: rc, in: in, target: target}
}

// TestRefusedUploadSpendsNoIssueWrite: Check charges nothing, and an upload
// that acquire refuses (its instance's streams all taken between the check
// and the body, as under Expect: 100-continue) spends none of Jira's
// per-issue write budget: once a stream is free, the same issue is
// accepted.
func TestRefusedUploadSpendsNoIssueWrite(t *testing.T) {
	g := newCheckRig(t, func(c *configs.Config) { c.InstanceMaxStreams = 1 })
	g.r.guards.writes = newOneWritePerHour()
	for range 5 {
		var p Plan
		if err := g.r.Check(g.rc, g.in, g.target, &p); err != nil {
			t.Fatalf("check: %v", err)
		}
	}
	var p Plan
	if err := g.r.Check(g.rc, g.in, g.target, &p); err != nil {
		t.Fatal(err)
	}
	release, err := g.r.guards.takeStream(g.in.ID) // another upload took the last stream
	if err != nil {
		t.Fatal(err)
	}
	var rl *httpx.RateLimited
	if err := g.r.Upload(g.rc, &p); !errors.As(err, &rl) || rl.Reason != httpx.ReasonStreams {
		t.Fatalf("upload with no stream free: %v, want a streams refusal", err)
	}
	release()
	if err := g.r.Check(g.rc, g.in, g.target, &p); err != nil {
		t.Fatalf("check after the refused upload: %v (the refusal spent the issue's write)", err)
	}
	if err := g.r.guards.issueWrite(g.in.ID, p.issue); err != nil {
		t.Fatalf("the one write of the hour: %v", err)
	}
	if err := g.r.Check(g.rc, g.in, g.target, &p); !errors.As(err, &rl) || rl.Reason != httpx.ReasonIssueWrites {
		t.Fatalf("check after the hour's write: %v, want issue_writes", err)
	}
}

// newOneWritePerHour is a per-issue limit of one write an hour.
func newOneWritePerHour() *ratelimit.IssueWrites {
	return ratelimit.NewIssueWrites(ratelimit.WithWindows(
		ratelimit.Window{Events: 1, Per: time.Hour}, ratelimit.Window{Events: 1, Per: time.Hour}))
}
