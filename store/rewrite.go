package store

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/jira-relay/jira-relay/internal/seal"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// rewritePage is how many keys the rewrite reads at once.
const rewritePage = 500

// RewriteReport is what RewriteValues did.
type RewriteReport struct {
	// Rewritten values (plaintext, or sealed with another key than the
	// primary) now sealed with the primary key.
	Rewritten int64
	// Current values were sealed with the primary key already.
	Current int64
	// Retried rewrites found the value changed by a write meanwhile and
	// judged it again.
	Retried int64
	// Unreadable values are sealed with a key the key file does not list
	// (left as they are), by the key's name.
	Unreadable map[string]int64
	// Rekeyed tenants were moved to keyed tokens of the primary key
	// (RekeyTenant) before the values were rewritten; Skipped tenants were
	// left as they are (RekeyAll: being moved by another process, a record
	// that does not decode, a value of a key the file does not list).
	Rekeyed, Skipped int
}

// RewriteValues brings the store to the primary key (without a key file:
// only its first step, to unkeyed tokens): first every tenant
// whose keys are not tokens of it is re-keyed (RekeyAll: copied to a new
// data id, its values sealed anew on the way), then every value the store
// seals (users, mapping records, configurations, error reports, and the
// licence in each instance record) that is plaintext or sealed with
// another key is sealed with it, in the directory and every shard.
// Each rewrite is a compare-and-swap on the key's ModRevision and keeps
// its lease, so a write made meanwhile is never lost (it is judged again).
// It may be stopped (ctx) and run again: it starts over and skips what is
// current. progress, when not nil, is called after each page.
func (s *Store) RewriteValues(ctx context.Context, progress func(RewriteReport)) (RewriteReport, error) {
	rep := RewriteReport{Unreadable: map[string]int64{}}
	// Tokens first: a tenant re-keyed has its data sealed anew on the way,
	// so the values left for the rewrite are the directory's and those of
	// tenants on their scheme already.
	var err error
	if rep.Rekeyed, rep.Skipped, err = s.RekeyAll(ctx, MoveOptions{}, nil); err != nil {
		return rep, err
	}
	if s.vals.keys == nil {
		// Without a key file there is nothing to seal with: the re-key
		// (to unkeyed tokens: a tenant of layout 2 whose record was
		// repaired after the migration) is all there is to do.
		return rep, nil
	}
	clusters := []*shard{s.dir}
	for _, name := range slices.Sorted(maps.Keys(s.shards)) {
		if sh := s.shards[name]; sh != s.dir {
			clusters = append(clusters, sh)
		}
	}
	for _, sh := range clusters {
		if err := s.rewriteCluster(ctx, sh, &rep, progress); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// rewriteCluster rewrites the sealable values of one cluster, a page at a
// time.
func (s *Store) rewriteCluster(ctx context.Context, sh *shard, rep *RewriteReport, progress func(RewriteReport)) error {
	end := clientv3.GetPrefixRangeEnd(s.k.prefix)
	from := s.k.prefix
	primary := s.vals.keys.Primary()
	for {
		cctx, cancel := s.ctx(ctx)
		resp, err := sh.kv.Get(cctx, from, clientv3.WithRange(end), clientv3.WithLimit(rewritePage))
		cancel()
		if err != nil {
			return etcdErr("rewrite: read", err)
		}
		for _, kv := range resp.Kvs {
			key := string(kv.Key)
			if !s.sealable(key) || len(kv.Value) == 0 {
				continue
			}
			if err := s.rewriteOne(ctx, sh, key, kv.Value, kv.ModRevision, primary, rep); err != nil {
				return err
			}
		}
		if progress != nil {
			progress(*rep)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// rewriteOne seals key's value with the primary key unless it is already,
// retrying with the value as it is now when a write came first.
func (s *Store) rewriteOne(ctx context.Context, sh *shard, key string, val []byte, rev int64, primary string, rep *RewriteReport) error {
	for {
		next, ok := s.rewritten(key, val, primary, rep)
		if !ok {
			return nil
		}
		cctx, cancel := s.ctx(ctx)
		resp, err := sh.kv.Txn(cctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, next, clientv3.WithIgnoreLease())).
			Else(clientv3.OpGet(key)).Commit()
		cancel()
		if err != nil {
			return etcdErr("rewrite: write", err)
		}
		if resp.Succeeded {
			rep.Rewritten++
			return nil
		}
		rep.Retried++
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return nil // deleted meanwhile
		}
		val, rev = kvs[0].Value, kvs[0].ModRevision
	}
}

// rewritten is val (under key) sealed with the primary key; ok is false
// when there is nothing to write (sealed with it already, or a value this
// relay cannot open, counted in rep). An instance record is rewritten with
// its licence sealed (license.go).
func (s *Store) rewritten(key string, val []byte, primary string, rep *RewriteReport) (next string, ok bool) {
	if isInstanceRecord(s.k.prefix, key) {
		return s.rewrittenInstance(key, val, primary, rep)
	}
	name, sealed := seal.KeyOf(val)
	switch {
	case sealed && name == primary:
		rep.Current++
		return "", false
	case sealed && !s.vals.keys.Has(name):
		rep.Unreadable[name]++
		return "", false
	}
	plain, err := s.vals.open([]byte(key), val, "value", key)
	if err != nil {
		rep.Unreadable["(does not open)"]++
		return "", false
	}
	return s.vals.seal(key, plain), true
}

// sealable reports whether key holds a value the store seals: a user, a
// mapping record, an error report, a configuration, or an instance record
// (its licence).
func (s *Store) sealable(key string) bool {
	rest, ok := strings.CutPrefix(key, s.k.prefix)
	if !ok {
		return false
	}
	if id, ok := strings.CutPrefix(rest, "instances/"); ok {
		return (strings.HasSuffix(id, "/config") || strings.HasSuffix(id, "/instance")) && strings.Count(id, "/") == 1
	}
	d, ok := strings.CutPrefix(rest, "d/")
	if !ok {
		return false
	}
	_, kind, ok := strings.Cut(d, "/")
	return ok && (strings.HasPrefix(kind, "users/") || strings.HasPrefix(kind, idxMail) || strings.HasPrefix(kind, "reports/"))
}
