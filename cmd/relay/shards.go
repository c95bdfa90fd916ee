package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/seal"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const shardsUsage = `relay shards: the etcd clusters holding tenants' data (--etcd-shards)

  relay shards status [relay flags]
      each cluster (the directory and every shard): database size, size in
      use, quota, how full, tenants, tenants moving
  relay shards move --instance ID --to SHARD [--grace 2s] [relay flags]
      move one tenant's data online (writes held at most a second) to SHARD
      ("directory" for the directory's own cluster)

The relay flags (or RELAY_* variables, or --config) name the clusters as the
relays see them: --etcd-endpoints (without it: --etcd-listen, the embedded
etcd of a running relay), --etcd-prefix, --etcd-shards and the TLS settings.
`

// runShards runs `relay shards ...`.
func runShards(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, shardsUsage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	sub, rest := args[0], args[1:]
	own := flag.NewFlagSet("relay shards "+sub, flag.ContinueOnError)
	own.SetOutput(io.Discard)
	instance := own.String("instance", "", "")
	to := own.String("to", "", "")
	grace := own.Duration("grace", 2*time.Second, "")
	ownArgs, relayArgs := splitFlags(rest, "instance", "to", "grace")
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "relay shards: "+format+"\n\n%s", append(a, shardsUsage)...)
		return exitUsage
	}
	if err := own.Parse(ownArgs); err != nil {
		return usage("%v", err)
	}
	switch sub {
	case "status":
		if *instance != "" || *to != "" {
			return usage("status takes no --instance or --to")
		}
	case "move":
		if !store.ValidInstanceID(*instance) {
			return usage("move needs --instance with an instance id (26 characters a-z 2-7), not %q", *instance)
		}
		if *to == "" {
			return usage("move needs --to SHARD")
		}
		if *grace < 0 || *grace > time.Hour {
			return usage("--grace must be from 0 to 1h")
		}
	default:
		return usage("unknown command %q (want status or move)", sub)
	}
	cfg, err := configs.LoadEnviron(relayArgs, environ)
	if err != nil {
		return usage("%v", err)
	}
	dir, endpoints, shards, err := operatorClients(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "relay shards: %v\n", err)
		return exitFail
	}
	defer dir.Close()
	defer closeAll(shards)
	st, err := operatorStore(cfg, dir, shards, nil)
	if err != nil {
		fmt.Fprintf(stderr, "relay shards: %v\n", err)
		return exitFail
	}
	if sub == "status" {
		err = shardsStatus(ctx, stdout, st, dir, endpoints, shards, cfg.EtcdQuotaBytes)
	} else {
		var rep *store.MoveReport
		rep, err = st.MoveTenant(ctx, *instance, *to, store.MoveOptions{Grace: max(*grace, time.Millisecond)})
		if rep != nil && err == nil {
			fmt.Fprintf(stdout, "moved %s from %s to %s: %d keys copied, %d changes caught up, writes held %v, %v in all\n",
				*instance, rep.From, rep.To, rep.Copied, rep.CaughtUp, rep.Hold.Round(time.Millisecond), rep.Total.Round(time.Millisecond))
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "relay shards %s: %v\n", sub, err)
		if errors.Is(err, store.ErrNotFound) {
			return exitUsage
		}
		return exitFail
	}
	return exitOK
}

// shardsStatus prints each cluster's room and tenants.
func shardsStatus(ctx context.Context, w io.Writer, st *store.Store, dir *clientv3.Client, dirEndpoints []string, shards map[string]*clientv3.Client, defaultQuota int64) error {
	tenants, moving, err := st.TenantsByShard(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SHARD\tDB SIZE\tIN USE\tQUOTA\tFULL\tTENANTS\tMOVING\t")
	row := func(name string, c *clientv3.Client, eps []string) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r, err := store.ClusterRoom(cctx, c, eps, defaultQuota)
		if err != nil {
			fmt.Fprintf(tw, "%s\tunreachable\t\t\t\t%d\t%d\t\n", name, tenants[name], moving[name])
			return
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f%%\t%d\t%d\t\n", name, mib(r.DBSize), mib(r.DBSizeInUse), mib(r.Quota), 100*r.Fill(), tenants[name], moving[name])
	}
	row(store.DirectoryShard, dir, dirEndpoints)
	for _, name := range slices.Sorted(maps.Keys(shards)) {
		row(name, shards[name], shards[name].Endpoints())
	}
	return tw.Flush()
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// splitFlags separates the flags named (as --name v, --name=v, -name v)
// from the rest, which are the relay's.
func splitFlags(args []string, names ...string) (own, rest []string) {
	is := func(a string) (bool, bool) {
		a = strings.TrimLeft(a, "-")
		name, _, hasValue := strings.Cut(a, "=")
		return slices.Contains(names, name), hasValue
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if ok, hasValue := is(a); ok && strings.HasPrefix(a, "-") {
			own = append(own, a)
			if !hasValue && i+1 < len(args) {
				own = append(own, args[i+1])
				i++
			}
			continue
		}
		rest = append(rest, a)
	}
	return own, rest
}

// operatorClients are the clients an operator's command uses, from the
// relay flags: the directory's (--etcd-endpoints, or without it the
// embedded etcd of a running relay at --etcd-listen), with its endpoints,
// and every shard's. The caller closes them.
func operatorClients(cfg configs.Config) (dir *clientv3.Client, endpoints []string, shards map[string]*clientv3.Client, err error) {
	endpoints = cfg.EtcdEndpoints
	if len(endpoints) == 0 {
		endpoints = []string{cfg.EtcdListen}
	}
	if dir, err = etcdClient(cfg, endpoints); err != nil {
		return nil, nil, nil, err
	}
	if shards, err = shardClients(cfg); err != nil {
		dir.Close()
		return nil, nil, nil, err
	}
	return dir, endpoints, shards, nil
}

// operatorStore is a store over an operator command's clients (its cache
// not running: reads go to etcd), sealing with keys when not nil.
func operatorStore(cfg configs.Config, dir *clientv3.Client, shards map[string]*clientv3.Client, keys *seal.Keyring) (*store.Store, error) {
	var scs []store.ShardClient
	for _, name := range slices.Sorted(maps.Keys(shards)) {
		c := shards[name]
		scs = append(scs, store.ShardClient{Name: name, KV: c, Lease: c, Watcher: c})
	}
	return store.New(dir, dir, store.Options{Prefix: cfg.EtcdPrefix, Timeout: cfg.EtcdRequestTimeout, Lease: dir, Shards: scs, Keys: keys})
}
