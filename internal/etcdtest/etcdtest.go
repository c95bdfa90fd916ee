// Package etcdtest starts real etcd members inside a test process, each on
// random loopback ports. Never a mock of the KV.
//
//   - Shared: one single-node member per test binary, started on first use,
//     and a key prefix of the test's own on it. For every test that only
//     reads and writes keys. The package's TestMain must be Main, which stops
//     the member and removes its data after the tests.
//   - Start: a member of the test's own, data under t.TempDir(), for tests
//     that act on etcd as a whole (compaction, quotas and alarms, stopping
//     it, counting its revisions).
//   - StartCluster: several members forming one cluster.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	return p
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// shared is the test binary's one shared member.
var shared struct {
	inMain atomic.Bool // Main is running the tests
	once   sync.Once
	e      *store.Embedded
	dir    string
	err    error
	n      atomic.Int64 // prefixes given out
}

// Main runs the package's tests and then stops the shared member (if a test
// started one) and removes its data directory. It returns m.Run's exit code;
// every package that calls Shared needs
//
//	func TestMain(m *testing.M) { os.Exit(etcdtest.Main(m)) }
//
// so that nothing of the member outlives its tests: no goroutine for a
// later check (goleak.Find after Main finds none of etcd's) and no directory.
func Main(m *testing.M) int {
	shared.inMain.Store(true)
	code := m.Run()
	shared.inMain.Store(false)
	if shared.e != nil {
		shared.e.Close()
	}
	if shared.dir != "" {
		if err := os.RemoveAll(shared.dir); err != nil {
			fmt.Fprintf(os.Stderr, "etcdtest: remove the shared member's data: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Shared returns a client of the test binary's shared member, started on
// the first call, and a key prefix no other test gets:
// "/t/<test name>-<n>/". When the test ends, everything under the prefix is
// deleted and the client closed; the member runs on for the other tests.
// Tests on it can run in parallel. The package's TestMain must be Main.
func Shared(t testing.TB) (cli *clientv3.Client, prefix string) {
	t.Helper()
	if !shared.inMain.Load() {
		t.Fatal("etcdtest.Shared: the package needs func TestMain(m *testing.M) { os.Exit(etcdtest.Main(m)) }")
	}
	shared.once.Do(startShared)
	if shared.err != nil {
		t.Fatalf("etcdtest: shared member: %v", shared.err)
	}
	cli = Client(t, shared.e.Endpoints()...)
	prefix = fmt.Sprintf("/t/%s-%d/", keySafe(t.Name()), shared.n.Add(1))
	// Runs before the client's Close (cleanups run last-registered first).
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := cli.Delete(ctx, prefix, clientv3.WithPrefix()); err != nil {
			t.Errorf("etcdtest: delete the test's keys under %s: %v", prefix, err)
		}
	})
	return cli, prefix
}

func startShared() {
	dir, err := os.MkdirTemp("", "etcdtest-shared-")
	if err != nil {
		shared.err = err
		return
	}
	shared.dir = dir
	shared.e, shared.err = startMember(func() (store.EmbedConfig, error) {
		d, err := os.MkdirTemp(dir, "member-") // fresh for each try
		// No fsync: the data is thrown away with the process.
		return store.EmbedConfig{Dir: d, LogLevel: "fatal", UnsafeNoFsync: true}, err
	})
}

// keySafe keeps the letters, digits and -_. of a test name (a subtest's
// "/" would be a key level) and cuts it to 64 bytes.
func keySafe(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	return string(b[:min(len(b), 64)])
}

// startMember starts a single member of config c with fresh ports, trying
// again with new ones when another process took a port between freePort and
// etcd's bind.
func startMember(c func() (store.EmbedConfig, error)) (*store.Embedded, error) {
	var err error
	for range 5 {
		var cfg store.EmbedConfig
		if cfg, err = c(); err != nil {
			return nil, err
		}
		var cp, pp int
		if cp, err = freePort(); err != nil {
			return nil, err
		}
		if pp, err = freePort(); err != nil {
			return nil, err
		}
		cfg.ClientURL = fmt.Sprintf("http://127.0.0.1:%d", cp)
		cfg.PeerURL = fmt.Sprintf("http://127.0.0.1:%d", pp)
		var e *store.Embedded
		if e, err = store.StartEmbedded(cfg); err == nil {
			return e, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, err
}

// Start runs a single-node embedded etcd for the test and returns it with a
// connected client; both are closed when the test ends.
func Start(t testing.TB) (*store.Embedded, *clientv3.Client) {
	t.Helper()
	e, err := startMember(func() (store.EmbedConfig, error) {
		return store.EmbedConfig{Dir: t.TempDir(), LogLevel: "fatal"}, nil
	})
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(e.Close)
	return e, Client(t, e.Endpoints()...)
}

// StartWithQuota runs a member of the test's own, like Start, whose
// database quota is quota bytes: past it etcd raises NOSPACE and refuses
// writes.
func StartWithQuota(t testing.TB, quota int64) (*store.Embedded, *clientv3.Client) {
	t.Helper()
	e, err := startMember(func() (store.EmbedConfig, error) {
		return store.EmbedConfig{Dir: t.TempDir(), LogLevel: "fatal", QuotaBytes: quota, UnsafeNoFsync: true}, nil
	})
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(e.Close)
	return e, Client(t, e.Endpoints()...)
}

// Client connects to endpoints; the client is closed when the test ends.
func Client(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Member is one member of a test cluster.
type Member struct {
	Config store.EmbedConfig
	Etcd   *store.Embedded // nil while stopped
}

// Cluster is a multi-member etcd cluster on loopback.
type Cluster struct {
	t       testing.TB
	Members []*Member
}

// StartCluster starts n members that form one cluster (trying again with new
// ports when one was taken meanwhile by another process).
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	var err error
	for range 5 {
		var c *Cluster
		if c, err = startCluster(t, n); err == nil {
			t.Cleanup(func() {
				for _, m := range c.Members {
					if m.Etcd != nil {
						m.Etcd.Close()
					}
				}
			})
			return c
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("etcdtest: cluster: %v", err)
	return nil
}

func startCluster(t testing.TB, n int) (*Cluster, error) {
	c := &Cluster{t: t}
	var initial []string
	for i := range n {
		m := &Member{Config: store.EmbedConfig{
			Dir:       t.TempDir(),
			Name:      fmt.Sprintf("m%d", i),
			LogLevel:  "fatal",
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
		}}
		initial = append(initial, m.Config.Name+"="+m.Config.PeerURL)
		c.Members = append(c.Members, m)
	}
	errs := make(chan error, n)
	for _, m := range c.Members {
		m.Config.InitialCluster = strings.Join(initial, ",")
		go func(m *Member) {
			e, err := store.StartEmbedded(m.Config)
			m.Etcd = e
			errs <- err
		}(m)
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		for _, m := range c.Members {
			if m.Etcd != nil {
				m.Etcd.Close()
			}
		}
		return nil, first
	}
	return c, nil
}

// Endpoints are every member's client URL.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.Config.ClientURL)
	}
	return out
}

// Stop stops member i.
func (c *Cluster) Stop(i int) {
	if m := c.Members[i]; m.Etcd != nil {
		m.Etcd.Close()
		m.Etcd = nil
	}
}

// Restart starts member i again on its data dir; it rejoins the cluster.
// It does not wait for a quorum: a member alone waits for its peers.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.Members[i]
	cfg := m.Config
	cfg.StartTimeout = 30 * time.Second
	e, err := store.StartEmbedded(cfg)
	if err != nil {
		c.t.Fatalf("etcdtest: restart member %d: %v", i, err)
	}
	m.Etcd = e
}

// StoreWithInstance runs a store (its cache filled) over a new single-node
// etcd and registers one instance at url, for tests of the per-request
// decisions. The cache stops when the test ends.
func StoreWithInstance(t testing.TB, url string) (*store.Store, *store.Registration) {
	t.Helper()
	_, cli := Start(t)
	st, err := store.New(cli, cli, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { st.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-st.Synced()
	reg, err := st.Register(ctx, store.NewInstance{URL: url, JiraVersion: "1", AddinVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	return st, reg
}

// FixtureKV is one key of a store written by an older relay
// (store/testdata/layout-*.json): its key under the prefix, its value,
// whether it was on a lease.
type FixtureKV struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Leased bool   `json:"leased"`
}

// PutFixture writes kvs under prefix, the leased ones on one lease of an
// hour, as the error reports of the old relays were.
func PutFixture(t testing.TB, cli *clientv3.Client, prefix string, kvs []FixtureKV) {
	t.Helper()
	ctx := context.Background()
	lease, err := cli.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		var opts []clientv3.OpOption
		if kv.Leased {
			opts = append(opts, clientv3.WithLease(lease.ID))
		}
		if _, err := cli.Put(ctx, prefix+kv.Key, kv.Value, opts...); err != nil {
			t.Fatal(err)
		}
	}
}
