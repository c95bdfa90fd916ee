package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
)

// EmbedConfig describes an etcd member started inside the relay's process:
// the default single-node store of `go run ./cmd/relay`, and the members of
// the test clusters.
type EmbedConfig struct {
	// Dir holds the member's data (WAL and snapshots).
	Dir string
	// Name is the member name. Default "relay".
	Name string
	// ClientURL is where clients (the relay, etcdctl) connect, e.g. http://127.0.0.1:2379.
	ClientURL string
	// PeerURL is where other members connect, e.g. http://127.0.0.1:2380.
	PeerURL string
	// InitialCluster is "name=peerURL,..." for a multi-member cluster; empty
	// means a single member.
	InitialCluster string
	// LogLevel is etcd's own log level. Default "error" (etcd's info lines
	// would drown the relay's log).
	LogLevel string
	// StartTimeout bounds waiting for the member to be ready. Default 60s.
	StartTimeout time.Duration
	// UnsafeNoFsync skips fsync of the member's log and database, so a crash
	// of the machine loses recent writes. For test members only, whose data
	// is thrown away with the process (etcdtest.Shared).
	UnsafeNoFsync bool
	// QuotaBytes is the member's database quota (etcd's
	// --quota-backend-bytes): past it etcd raises the NOSPACE alarm and
	// refuses writes. Default 0: etcd's own, 2 GiB.
	QuotaBytes int64
}

// Embedded is a running in-process etcd member.
type Embedded struct {
	etcd      *embed.Etcd
	clientURL string
	level     zap.AtomicLevel
	closeOnce sync.Once
}

// StartEmbedded starts an etcd member and waits until it serves. Auto-compaction
// is on (periodic, one hour of history), since an embedded server otherwise
// grows until its quota.
func StartEmbedded(c EmbedConfig) (*Embedded, error) {
	if c.Name == "" {
		c.Name = "relay"
	}
	if c.LogLevel == "" {
		c.LogLevel = "error"
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 60 * time.Second
	}
	cu, err := url.Parse(c.ClientURL)
	if err != nil || cu.Host == "" {
		return nil, fmt.Errorf("store: embedded etcd client url %q: invalid", c.ClientURL)
	}
	pu, err := url.Parse(c.PeerURL)
	if err != nil || pu.Host == "" {
		return nil, fmt.Errorf("store: embedded etcd peer url %q: invalid", c.PeerURL)
	}
	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = c.Dir
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	if c.InitialCluster == "" {
		cfg.InitialCluster = cfg.InitialClusterFromName(c.Name)
	} else {
		cfg.InitialCluster = c.InitialCluster
		cfg.InitialClusterToken = "jira-relay"
	}
	cfg.UnsafeNoFsync = c.UnsafeNoFsync
	cfg.QuotaBackendBytes = c.QuotaBytes
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "1h"
	// etcd's own zap logger, with a level the relay can raise at Close: a
	// stopping etcd logs its closed listeners as errors, which are not.
	level, err := zap.ParseAtomicLevel(c.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("store: embedded etcd log level %q: %w", c.LogLevel, err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = level
	zc.OutputPaths, zc.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	lg, err := zc.Build()
	if err != nil {
		return nil, fmt.Errorf("store: embedded etcd logger: %w", err)
	}
	cfg.Logger = "zap"
	cfg.LogLevel = c.LogLevel
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("store: start embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("store: embedded etcd failed: %w", err)
	case <-time.After(c.StartTimeout):
		e.Server.Stop()
		e.Close()
		return nil, errors.New("store: embedded etcd did not become ready in time")
	}
	return &Embedded{etcd: e, clientURL: cu.String(), level: level}, nil
}

// Endpoints are the client URLs of this member.
func (e *Embedded) Endpoints() []string { return []string{e.clientURL} }

// Client is an in-process client of this member: no socket between the
// caller and etcd. Close it before the member.
func (e *Embedded) Client() *clientv3.Client { return v3client.New(e.etcd.Server) }

// Err reports a fatal error of the running member.
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// Close stops the member cleanly (it flushes and closes its data files).
// Calling it again does nothing.
func (e *Embedded) Close() {
	e.closeOnce.Do(func() {
		e.level.SetLevel(zap.FatalLevel)
		e.etcd.Close()
	})
}

// waitCtx is a small helper for callers that need a context bounded by d.
func waitCtx(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(parent)
	}
	return context.WithTimeout(parent, d)
}
