package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/seal"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// statusPage is how many keys one read of encryption status takes.
const statusPage = 1000

// valueCounts counts the values under the prefix of one cluster by how
// they are stored: "plaintext", "empty" (key-only entries) or the name of
// the key that sealed them.
type valueCounts map[string]int64

// encryptionStatus prints, for the directory and every shard, how many
// values each key seals, how many are plaintext and how many are empty;
// keys of the key file (when given) are listed even at 0, and a key the
// file does not list is marked missing.
func encryptionStatus(ctx context.Context, w io.Writer, cfg configs.Config, keys *seal.Keyring) error {
	dir, _, shards, err := operatorClients(cfg)
	if err != nil {
		return err
	}
	defer dir.Close()
	defer closeAll(shards)
	clusters := map[string]*clientv3.Client{"directory": dir}
	maps.Copy(clusters, shards)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tVALUES\tCOUNT\tNOTE")
	for _, name := range append([]string{"directory"}, slices.Sorted(maps.Keys(shards))...) {
		counts, err := countValues(ctx, clusters[name], cfg.EtcdPrefix, cfg.EtcdRequestTimeout)
		if err != nil {
			return fmt.Errorf("cluster %s: %w", name, err)
		}
		if keys != nil {
			for _, k := range keys.Names() {
				counts[k] += 0
			}
		}
		for _, kind := range slices.Sorted(maps.Keys(counts)) {
			note := ""
			switch {
			case kind == "plaintext" || kind == "empty":
			case keys == nil:
				note = "sealed"
			case !keys.Has(kind):
				note = "sealed with a key the file does not list: encryption_key_missing"
			case kind == keys.Primary():
				note = "the primary key"
			default:
				note = "an older key"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", name, kind, counts[kind], note)
		}
	}
	return tw.Flush()
}

// countValues reads every value under prefix, a page at a time, and counts
// them by how they are stored.
func countValues(ctx context.Context, c *clientv3.Client, prefix string, timeout time.Duration) (valueCounts, error) {
	counts := valueCounts{}
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(statusPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev)) // one revision for the whole count
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := c.Get(cctx, from, opts...)
		cancel()
		if err != nil {
			return nil, err
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			switch name, sealed := seal.KeyOf(kv.Value); {
			case sealed:
				counts[name]++
			case len(kv.Value) == 0:
				counts["empty"]++
			default:
				counts["plaintext"]++
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return counts, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// encryptionRewrite seals every sealable value with the key file's first
// key, printing progress to errw and the result to w.
func encryptionRewrite(ctx context.Context, w, errw io.Writer, cfg configs.Config, keys *seal.Keyring) error {
	dir, _, shards, err := operatorClients(cfg)
	if err != nil {
		return err
	}
	defer dir.Close()
	defer closeAll(shards)
	st, err := operatorStore(cfg, dir, shards, keys)
	if err != nil {
		return err
	}
	last := time.Now()
	rep, err := st.RewriteValues(ctx, func(r store.RewriteReport) {
		if time.Since(last) >= 2*time.Second {
			fmt.Fprintf(errw, "relay encryption rewrite: %d rewritten, %d current so far\n", r.Rewritten, r.Current)
			last = time.Now()
		}
	})
	fmt.Fprintf(w, "sealed with %s: %d rewritten, %d already, %d judged again after a concurrent write\n", keys.Primary(), rep.Rewritten, rep.Current, rep.Retried)
	for _, name := range slices.Sorted(maps.Keys(rep.Unreadable)) {
		fmt.Fprintf(w, "left as they are: %d values sealed with %s, which the key file does not list\n", rep.Unreadable[name], name)
	}
	return err
}
