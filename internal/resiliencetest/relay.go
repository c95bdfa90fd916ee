// Package resiliencetest holds the relay's resilience tests: upstream
// (Jira) faults, etcd faults on a three-member cluster, client faults
// (aborts, slowloris, connection floods, address floods), privacy canaries,
// and a soak behind the -soak flag. Everything runs for real on loopback:
// embedded etcd members, the fasthttp front door and the fake Jira Cloud.
//
// This file is the package's one non-test helper: a relay starter like
// relaytest.StartWithEtcd that also takes a *slog.Logger (to scan what the
// relay logs) and can be stopped before the test ends.
package resiliencetest

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/stack"
	"github.com/jira-relay/jira-relay/proxy"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Relay is a relay started by Start.
type Relay struct {
	URL    string // http://127.0.0.1:port
	Addr   string // 127.0.0.1:port
	Config configs.Config
	Store  *store.Store
	Etcd   *clientv3.Client
	Server *proxy.Server

	stopOnce sync.Once
	stopFn   func()
}

// Options configure Start.
type Options struct {
	// Etcd is the client the store uses (required).
	Etcd *clientv3.Client
	// Mutate changes the configuration after the test defaults are applied.
	Mutate func(*configs.Config)
	// Logger receives the relay's and the store's log lines; nil discards.
	Logger *slog.Logger
}

// Start runs a relay over o.Etcd with configs.Defaults, http upstreams on
// loopback allowed, then o.Mutate. It stops at the end of the test, or
// earlier with Stop.
func Start(t testing.TB, o Options) *Relay {
	t.Helper()
	cfg := configs.Defaults()
	cfg.AllowHTTPUpstream = true
	cfg.AllowedUpstreams = []string{"127.0.0.1", "localhost", "*.atlassian.net", "api.atlassian.com"}
	// Tests register many tenants from one loopback address; the
	// registration limit is tested where a test sets it.
	cfg.RegistrationRPS, cfg.RegistrationBurst = 1000, 1000
	cfg.AdminListen = ""
	if o.Mutate != nil {
		o.Mutate(&cfg)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rl, err := stack.Start(stack.Options{Config: cfg, Etcd: o.Etcd, Logger: o.Logger})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-rl.Synced():
	case <-time.After(20 * time.Second):
		rl.Close()
		t.Fatal("resiliencetest: store cache did not sync in 20s")
	}
	srv := rl.Server
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		rl.Close()
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(served) }()
	r := &Relay{
		URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String(),
		Config: cfg, Store: rl.Store, Etcd: o.Etcd, Server: srv,
	}
	r.stopFn = func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
		<-served
		rl.Close()
	}
	t.Cleanup(r.Stop)
	return r
}

// Stop shuts the front door down (waiting up to 5 s for requests in flight)
// and stops the store's cache. It is idempotent.
func (r *Relay) Stop() { r.stopOnce.Do(r.stopFn) }
