// Package relaytest starts a whole relay inside a test (the store with its
// cache and the front door on a real loopback socket, over a real embedded
// etcd) and holds the helpers the relay's test packages share: a small
// client of its API (Client, Answer, Tenant), request bodies (RegisterBody,
// MappingBody), a fake Jira Cloud (StartJira), polling (Eventually), etcd
// key counts (CountKeys) and a log sink (LogBuffer).
//
// Start runs the relay over the test binary's shared etcd member
// (etcdtest.Shared) under a key prefix of the test's own, so that tests
// need not start a member each and may run in parallel; a package that
// calls Start needs
//
//	func TestMain(m *testing.M) { os.Exit(etcdtest.Main(m)) }
//
// A test that acts on etcd as a whole (stops it, compacts it, counts its
// every key) starts its own with etcdtest.Start and passes its client to
// StartWithEtcd.
package relaytest

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
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
	Addr   string // 127.0.0.1:port
	Config configs.Config
	Store  *store.Store
	// Etcd is the client the relay's store uses; every key of the relay is
	// under Config.EtcdPrefix.
	Etcd   *clientv3.Client
	Server *proxy.Server
	// Metrics is the relay's one registry (what /metrics serves).
	Metrics *metrics.Set

	stop sync.Once
	rl   *stack.Stack
	// served is closed when the front door's Serve has returned.
	served chan struct{}
}

// Options configure StartWith.
type Options struct {
	// Etcd is the client the store uses. Nil: a client of the shared
	// member, with Config.EtcdPrefix a prefix of the test's own.
	Etcd *clientv3.Client
	// Mutate changes the configuration after the test defaults (see
	// StartWith) are applied; it may set EtcdPrefix, e.g. to run a second
	// relay over the keys of another.
	Mutate func(*configs.Config)
	// Logger receives the relay's and the store's log lines; nil discards.
	Logger *slog.Logger
	// RoomEvery and TenantsEvery, when set, replace how often the relay
	// reads etcd's room and counts the largest tenants (stack.Options).
	RoomEvery, TenantsEvery time.Duration
	// Shards are clients of the --etcd-shards clusters, by name.
	Shards map[string]*clientv3.Client
}

// Start runs a relay over the shared etcd member, under a key prefix of the
// test's own, whose configuration is the test defaults changed by mutate; it
// stops when the test ends.
func Start(t testing.TB, mutate func(*configs.Config)) *Relay {
	t.Helper()
	return StartWith(t, Options{Mutate: mutate})
}

// StartWithEtcd runs a relay over an existing etcd client, under the
// default key prefix unless mutate sets another.
func StartWithEtcd(t testing.TB, cli *clientv3.Client, mutate func(*configs.Config)) *Relay {
	t.Helper()
	return StartWith(t, Options{Etcd: cli, Mutate: mutate})
}

// StartWith runs a relay as o says. Its configuration is configs.Defaults
// with plain-HTTP upstreams on loopback and Atlassian's hosts allowed and a
// registration limit no test reaches by accident, then o.Mutate. It has
// synced its cache and serves when StartWith returns, and it stops (its
// front door shut down, its cache stopped) when the test ends.
func StartWith(t testing.TB, o Options) *Relay {
	t.Helper()
	cfg := configs.Defaults()
	cli := o.Etcd
	if cli == nil {
		cli, cfg.EtcdPrefix = etcdtest.Shared(t)
	}
	cfg.AllowHTTPUpstream = true
	cfg.AllowedUpstreams = []string{"127.0.0.1", "localhost", "*.atlassian.net", "api.atlassian.com"}
	// Tests register many tenants from one loopback address; the
	// registration limit is tested where a test sets it.
	cfg.RegistrationRPS, cfg.RegistrationBurst = 1000, 1000
	if o.Mutate != nil {
		o.Mutate(&cfg)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl, err := stack.Start(stack.Options{Config: cfg, Etcd: cli, Logger: o.Logger, RoomEvery: o.RoomEvery, TenantsEvery: o.TenantsEvery, Shards: o.Shards, Addr: tcp.Addr().String()})
	if err != nil {
		_ = tcp.Close()
		t.Fatal(err)
	}
	select {
	case <-rl.Synced():
	case <-time.After(20 * time.Second):
		rl.Close()
		_ = tcp.Close()
		t.Fatal("relaytest: store cache did not sync in 20s")
	}
	srv := rl.Server
	ln := &servingListener{Listener: tcp, serving: make(chan struct{})}
	served := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(served) }()
	// A Shutdown before Serve has taken the listener would find nothing to
	// close, and the cleanup would wait for Serve forever.
	select {
	case <-ln.serving:
	case <-served:
		rl.Close()
		t.Fatal("relaytest: the front door stopped before it served")
	}
	r := &Relay{
		URL: "http://" + tcp.Addr().String(), Addr: tcp.Addr().String(),
		Config: cfg, Store: rl.Store, Etcd: cli, Server: srv, Metrics: rl.Metrics,
		rl: rl, served: served,
	}
	t.Cleanup(r.Stop)
	return r
}

// Stop shuts the front door down (waiting up to 5 s for requests in flight)
// and stops the store's cache; the end of the test does it too. It is
// idempotent.
func (r *Relay) Stop() {
	r.stop.Do(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = r.Server.Shutdown(sctx)
		scancel()
		<-r.served
		r.rl.Close()
	})
}

// KeyCount counts the relay's keys in etcd (those under its prefix) but
// the store's and the fleet's own: the layout key, written once at start,
// and the fleet's member and cool-down keys.
func (r *Relay) KeyCount(t testing.TB) int64 {
	t.Helper()
	p := r.Config.EtcdPrefix
	return CountKeys(t, r.Etcd, p) - CountKeys(t, r.Etcd, p+"layout") - CountKeys(t, r.Etcd, p+"fleet/")
}

// DataPrefix is where the tenant's users, mappings and error reports live
// (docs/key-layout.md: P d/<dataId>/).
func (r *Relay) DataPrefix(t testing.TB, instanceID string) string {
	t.Helper()
	in, err := r.Store.Instance(context.Background(), instanceID)
	if err != nil {
		t.Fatalf("relaytest: instance %s: %v", instanceID, err)
	}
	return r.Config.EtcdPrefix + "d/" + in.DataID + "/"
}

// CountKeys counts the keys under prefix.
func CountKeys(t testing.TB, cli *clientv3.Client, prefix string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// servingListener closes serving on the first Accept: fasthttp's Serve has
// registered the listener (for Shutdown to close) by then. Waiting for it
// rather than for an answer keeps the relay's log and metrics free of a
// probe request.
type servingListener struct {
	net.Listener
	once    sync.Once
	serving chan struct{}
}

func (l *servingListener) Accept() (net.Conn, error) {
	l.once.Do(func() { close(l.serving) })
	return l.Listener.Accept()
}

// Metric is the value /metrics shows for the series name (with its labels,
// as in `relay_fleet_members` or `relay_fleet_cooldowns{scope="issue"}`),
// or -1 when there is no such series.
func (r *Relay) Metric(name string) float64 {
	var b bytes.Buffer
	r.Metrics.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return -1
			}
			return f
		}
	}
	return -1
}
