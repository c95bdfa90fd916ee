// Package relaytest starts a whole relay inside a test: an embedded etcd on
// random ports, the store with its cache, and the front door on a real
// loopback socket.
package relaytest

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/stack"
	"github.com/jira-relay/jira-relay/proxy"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Relay is a running relay for one test.
type Relay struct {
	URL    string // http://127.0.0.1:port
	Config configs.Config
	Store  *store.Store
	Etcd   *clientv3.Client
	Server *proxy.Server
	// Metrics is the relay's one registry (what /metrics serves).
	Metrics *metrics.Set
}

// Start runs a relay whose configuration is Defaults changed by mutate; it
// stops when the test ends.
func Start(t testing.TB, mutate func(*configs.Config)) *Relay {
	t.Helper()
	_, cli := etcdtest.Start(t)
	return StartWithEtcd(t, cli, mutate)
}

// StartWithEtcd runs a relay over an existing etcd client.
func StartWithEtcd(t testing.TB, cli *clientv3.Client, mutate func(*configs.Config)) *Relay {
	t.Helper()
	cfg := configs.Defaults()
	cfg.AllowHTTPUpstream = true
	cfg.AllowedUpstreams = []string{"127.0.0.1", "localhost", "*.atlassian.net", "api.atlassian.com"}
	// Tests register many tenants from one loopback address; the
	// registration limit is tested where a test sets it.
	cfg.RegistrationRPS, cfg.RegistrationBurst = 1000, 1000
	if mutate != nil {
		mutate(&cfg)
	}
	rl, err := stack.Start(stack.Options{Config: cfg, Etcd: cli})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-rl.Synced():
	case <-time.After(10 * time.Second):
		rl.Close()
		t.Fatal("relaytest: store cache did not sync")
	}
	srv := rl.Server
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(served) }()
	waitServing(t, "http://"+ln.Addr().String()+"/healthz")
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
		<-served
		rl.Close()
	})
	return &Relay{URL: "http://" + ln.Addr().String(), Config: cfg, Store: rl.Store, Etcd: cli, Server: srv, Metrics: rl.Metrics}
}

// waitServing returns once the front door answers: a Shutdown before Serve
// has taken the listener would wait forever.
func waitServing(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("relaytest: the relay does not answer: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
