package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/stack"
	"github.com/jira-relay/jira-relay/proxy"
	"github.com/jira-relay/jira-relay/store"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// run is the whole life of the relay: configuration, etcd (embedded or
// external), the store's cache, the front door, and a drain on ctx's end.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "encryption" {
		return runEncryption(ctx, args[1:], environ, os.Stdin, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "keys" {
		return runKeys(args[1:], stdout, stderr, time.Now())
	}
	if len(args) > 0 && args[0] == "shards" {
		return runShards(ctx, args[1:], environ, stdout, stderr)
	}
	cfg, err := configs.LoadEnviron(args, environ)
	if errors.Is(err, flag.ErrHelp) {
		configs.Usage(stdout)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "relay: %v\nrun 'relay -h' for the flags\n", err)
		return exitUsage
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by Load
	sink := newLogSink(stderr)
	defer sink.Close()
	log := slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: level}))
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("relay stopped", "err", err)
		return exitFail
	}
	return exitOK
}

func serve(ctx context.Context, cfg configs.Config, log *slog.Logger) error {
	endpoints := cfg.EtcdEndpoints
	var cli *clientv3.Client
	if len(endpoints) == 0 {
		dir := filepath.Join(cfg.DataDir, "etcd")
		e, err := store.StartEmbedded(store.EmbedConfig{Dir: dir, ClientURL: cfg.EtcdListen, PeerURL: cfg.EtcdPeerListen, QuotaBytes: cfg.EtcdQuotaBytes})
		if err != nil {
			return err
		}
		defer func() {
			e.Close()
			log.Info("embedded etcd stopped")
		}()
		endpoints = e.Endpoints()
		log.Info("embedded etcd started", "client_url", cfg.EtcdListen, "peer_url", cfg.EtcdPeerListen, "dir", dir)
		// In-process: no socket or TLS between the relay and its own etcd
		// (etcdctl still uses --etcd-listen).
		cli = e.Client()
	} else {
		var err error
		if cli, err = etcdClient(cfg, endpoints); err != nil {
			return err
		}
	}
	defer cli.Close()
	shards, err := shardClients(cfg)
	if err != nil {
		return err
	}
	defer closeAll(shards)

	rl, err := stack.Start(stack.Options{Config: cfg, Etcd: cli, Logger: log, Shards: shards, Addr: advertised(cfg.Listen)})
	if err != nil {
		return err
	}
	defer rl.Close()
	select {
	case <-rl.Synced():
	case <-time.After(cfg.EtcdDialTimeout):
		log.Warn("store cache not filled yet; serving anyway, reads fall back to etcd", "endpoints", endpoints)
	case <-ctx.Done():
		return nil
	}
	srv := rl.Server
	if cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			return fmt.Errorf("listen %s (--admin-listen): %w", cfg.AdminListen, err)
		}
		admin := &http.Server{Handler: srv.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = admin.Serve(aln) }()
		defer admin.Close()
		log.Info("admin listening (/metrics, /debug/pprof, /healthz, /readyz)", "addr", aln.Addr().String())
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		tc, err := proxy.TLSConfig(cfg.TLSCert, cfg.TLSKey, log)
		if err != nil {
			ln.Close()
			return err
		}
		ln = tls.NewListener(ln, tc)
		scheme = "https"
	}
	log.Info("relay listening", "addr", ln.Addr().String(), "scheme", scheme, "etcd", endpoints, "prefix", cfg.EtcdPrefix)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("draining", "deadline", cfg.DrainTimeout.String())
	dctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		log.Warn("drain deadline passed; closing remaining connections", "err", err)
	}
	<-served
	log.Info("relay stopped")
	return nil
}

// shardClients connects to every --etcd-shards cluster (a shard without TLS
// files of its own uses --etcd-ca/--etcd-cert/--etcd-key).
func shardClients(cfg configs.Config) (map[string]*clientv3.Client, error) {
	specs, err := cfg.Shards()
	if err != nil {
		return nil, err
	}
	out := map[string]*clientv3.Client{}
	for _, sh := range specs {
		c := cfg // what the shard does not set is the directory's
		if sh.CA != "" {
			c.EtcdCA = sh.CA
		}
		if sh.Cert != "" {
			c.EtcdCert, c.EtcdKey = sh.Cert, sh.Key
		}
		cli, err := etcdClient(c, sh.Endpoints)
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("shard %s: %w", sh.Name, err)
		}
		out[sh.Name] = cli
	}
	return out, nil
}

func closeAll(m map[string]*clientv3.Client) {
	for _, c := range m {
		c.Close()
	}
}

func etcdClient(cfg configs.Config, endpoints []string) (*clientv3.Client, error) {
	cc := clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          cfg.EtcdDialTimeout,
		Username:             cfg.EtcdUsername,
		Password:             cfg.EtcdPassword,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               zap.NewNop(),
	}
	if cfg.EtcdCA != "" || cfg.EtcdCert != "" {
		ti := transport.TLSInfo{TrustedCAFile: cfg.EtcdCA, CertFile: cfg.EtcdCert, KeyFile: cfg.EtcdKey}
		tc, err := ti.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd tls: %w", err)
		}
		cc.TLS = tc
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return cli, nil
}

// advertised is the front door's address as the member key shows it: the
// host name stands in for an empty or wildcard host.
func advertised(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}
