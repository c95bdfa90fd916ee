// Package etcdtest starts real etcd members inside a test process: a single
// node for most tests, or a cluster of several on loopback, each on random
// ports with its data under t.TempDir(). Never a mock of the KV.
package etcdtest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs a single-node embedded etcd for the test and returns it with a
// connected client; both are closed when the test ends.
func Start(t testing.TB) (*store.Embedded, *clientv3.Client) {
	t.Helper()
	var e *store.Embedded
	var err error
	// A free port can be taken by another test process between FreePort
	// and etcd's bind: try again with new ports.
	for range 5 {
		e, err = store.StartEmbedded(store.EmbedConfig{
			Dir:       t.TempDir(),
			LogLevel:  "fatal",
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
		})
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
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
