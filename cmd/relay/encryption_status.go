package main

import (
	"context"
	"encoding/json"
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

// statusPage is how many keys one read of encryption status takes.
const statusPage = 1000

// valueCounts counts the values under the prefix of one cluster by how
// they are stored: "plaintext", "empty" (key-only entries) or the name of
// the key that sealed them. An instance record, readable JSON, counts as
// its licence is stored (store.SealedWith): by the key that sealed it,
// else plaintext.
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
	// The tenants by the tokens in their keys: a tenant not on tokens of
	// the primary key is re-keyed by the rewrite, and its key must stay in
	// the file until then.
	schemes, err := countTokens(ctx, dir, cfg.EtcdPrefix, cfg.EtcdRequestTimeout)
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	fmt.Fprintln(tw, "\nTOKENS\tTENANTS\tNOTE")
	for _, scheme := range slices.Sorted(maps.Keys(schemes)) {
		note := ""
		switch name := store.TokensKey(scheme); {
		case scheme == store.TokensUnkeyed:
			note = "unkeyed: ids can be matched against a listing"
			if keys != nil {
				note += "; relay encryption rewrite re-keys them"
			}
		case scheme == "(record does not decode)":
			note = "erase or repair the record (docs/operations.md); after a repair, relay encryption rewrite re-keys it"
		case scheme == "(none)":
			note = "keys of layout 2 (a record repaired after the migration): relay encryption rewrite re-keys them"
		case name == "":
			note = "not a scheme this relay knows: the tenant answers record_corrupt"
		case keys == nil:
			note = "keyed"
		case !keys.Has(name):
			note = "keyed with a key the file does not list: encryption_key_missing"
		case name == keys.Primary():
			note = "the primary key"
		default:
			note = "an older key: relay encryption rewrite re-keys them"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", scheme, schemes[scheme], note)
	}
	return tw.Flush()
}

// countTokens counts the directory's instance records by their "tokens".
func countTokens(ctx context.Context, c *clientv3.Client, prefix string, timeout time.Duration) (map[string]int, error) {
	out := map[string]int{}
	p := prefix + "instances/"
	end := clientv3.GetPrefixRangeEnd(p)
	from := p
	for {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := c.Get(cctx, from, clientv3.WithRange(end), clientv3.WithLimit(statusPage))
		cancel()
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.Kvs {
			if !strings.HasSuffix(string(kv.Key), "/instance") {
				continue
			}
			var rec struct {
				Tokens string `json:"tokens"`
			}
			if json.Unmarshal(kv.Value, &rec) != nil {
				out["(record does not decode)"]++
				continue
			}
			if rec.Tokens == "" {
				rec.Tokens = "(none)"
			}
			out[rec.Tokens]++
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
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
			switch name, sealed := store.SealedWith(prefix, kv.Key, kv.Value); {
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

// encryptionRewrite re-keys the tenants not on the current token scheme
// and seals every sealable value with the key file's first key (without a
// key file: the re-key only), printing progress to errw and the result to
// w.
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
	scheme := store.TokensUnkeyed + " (unkeyed: no --encryption-key-file)"
	if keys != nil {
		scheme = keys.Primary()
	}
	fmt.Fprintf(w, "tokens of %s: %d tenants re-keyed", scheme, rep.Rekeyed)
	if rep.Skipped > 0 {
		fmt.Fprintf(w, ", %d left as they are (being moved by another process, a record that does not decode, or a value of a key the file does not list: see the log; run the rewrite again once fixed)", rep.Skipped)
	}
	fmt.Fprintln(w)
	if keys == nil {
		fmt.Fprintln(w, "values: left as they are (no --encryption-key-file to seal with)")
		return err
	}
	fmt.Fprintf(w, "sealed with %s: %d rewritten, %d already, %d judged again after a concurrent write\n", keys.Primary(), rep.Rewritten, rep.Current, rep.Retried)
	for _, name := range slices.Sorted(maps.Keys(rep.Unreadable)) {
		fmt.Fprintf(w, "left as they are: %d values sealed with %s, which the key file does not list\n", rep.Unreadable[name], name)
	}
	return err
}
