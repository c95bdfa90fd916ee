package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// RekeyTenant gives a tenant's data the keys of the token scheme this
// store writes (keyed by the key file's first key, or unkeyed without a key
// file: Instance.Tokens), online. The keys of a tenant's users and mappings
// are made of its ids' tokens, so new tokens are new keys: the data is
// copied to a fresh data id, on the same cluster, with every value sealed
// again under its new key (a sealed value is bound to its key), then the
// tenant switches to it, as a move between shards does (MoveTenant):
//
//  1. take the tenant's move lock, reserve a new data id (P dataids/), and
//     note the re-key in the record ("move": {"dataId", "tokens"}), so that
//     an erase meanwhile clears the copy too;
//  2. copy the users, mapping records and error reports at one revision
//     (each mapping's index entries built anew from its record; leases
//     kept), then replay the changes made meanwhile from the watch;
//  3. hold: fence the old data (delete its marker: writes wait), replay up
//     to the fence, mark the new data, switch the record to the new data id
//     and tokens in one transaction;
//  4. mark the old data id retired; after opts.Grace, delete the old data
//     and its P dataids/ entry (an erase, or the next re-key of the tenant,
//     deletes what a process that stopped left: sweepDataIDs).
//
// A re-key that fails is undone; one whose process died is undone by the
// next move or re-key of the tenant. A tenant on the current scheme
// already is left as it is (a report with From == To, nothing copied).
// A value sealed with a key the key file no longer lists stops the re-key
// (ErrEncryptionKeyMissing): put the key back in the file first.
func (s *Store) RekeyTenant(ctx context.Context, id string, opts MoveOptions) (*MoveReport, error) {
	if opts.Grace <= 0 {
		opts.Grace = 2 * time.Second
	}
	rep, old, err := s.rekeyTenant(ctx, id)
	if err != nil || old == nil {
		return rep, err
	}
	select {
	case <-ctx.Done():
	case <-time.After(opts.Grace):
	}
	if err := old(); err != nil {
		return rep, err
	}
	rep.Total = time.Since(rep.started)
	return rep, nil
}

// rekeyTenant re-keys tenant id up to the switch, and returns the deletion
// of the old copy, to run after the grace (nil when there is none).
func (s *Store) rekeyTenant(ctx context.Context, id string) (*MoveReport, func() error, error) {
	start := time.Now()
	target := s.tokensScheme()
	unlock, err := s.lock(ctx, s.k.prefix+"moves/"+id, false)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	in, _, err := s.readRecord(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	sh, ok := s.shardOf(in.Shard)
	if !ok {
		return nil, nil, fmt.Errorf("store: re-key: the tenant's shard %q has no client here: %w", in.Shard, ErrUnavailable)
	}
	src := s.k.data(in.DataID)
	if in.Move != nil {
		// A move or re-key whose process died: undo it first.
		if err := s.undoStopped(ctx, id, sh, src, in.Move); err != nil {
			return nil, nil, err
		}
	}
	if err := s.sweepDataIDs(ctx, &Instance{ID: id, DataID: in.DataID}, sh, retiredGrace); err != nil {
		return nil, nil, err
	}
	rep := &MoveReport{From: in.Tokens, To: target, started: start}
	if in.Tokens == target {
		return rep, nil, nil
	}
	newID, err := s.reserveFreshDataID(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	dst := s.k.data(newID)
	if dst.tok, err = s.tokenizer(target, newID, id); err != nil {
		return nil, nil, err
	}
	if _, err := s.updateInstance(ctx, id, func(cur *Instance) error {
		if cur.DataID != in.DataID || cur.Move != nil {
			return fmt.Errorf("store: re-key: the tenant moved meanwhile: %w", ErrPrecondition)
		}
		cur.Move = &Move{To: sh.name, Since: s.nowUTC(), DataID: newID, Tokens: target}
		return nil
	}); err != nil {
		_, _ = s.kv.Delete(context.WithoutCancel(ctx), s.k.dataID(newID))
		return nil, nil, err
	}
	fail := func(err error) (*MoveReport, func() error, error) {
		// Undo only a re-key the record shows as this one, not switched
		// (see MoveTenant's).
		cur, _, rerr := s.readRecord(context.WithoutCancel(ctx), id)
		switch {
		case rerr == nil && cur.Move == nil && cur.DataID == newID:
			return nil, nil, fmt.Errorf("%w (the switch was applied: the tenant's data is P d/%s/; delete P d/%s/ and P dataids/%s by hand, or erase nothing and re-key again: it clears them)", err, newID, in.DataID, in.DataID)
		case rerr != nil && !errors.Is(rerr, ErrNotFound):
			return nil, nil, fmt.Errorf("%w (and the tenant's record could not be read to undo the re-key: %v; re-key the tenant again to undo it)", err, rerr)
		case rerr == nil && (cur.Move == nil || cur.Move.DataID != newID):
			return nil, nil, fmt.Errorf("%w (the tenant's record changed meanwhile: the re-key was left as it is)", err)
		}
		if uerr := s.undoStopped(context.WithoutCancel(ctx), id, sh, src, &Move{To: sh.name, DataID: newID}); uerr != nil && !errors.Is(uerr, ErrNotFound) {
			return nil, nil, fmt.Errorf("%w (and undoing the re-key failed: %v; re-key the tenant again to undo it)", err, uerr)
		}
		return nil, nil, err
	}
	r := &rekeyer{s: s, id: id, sh: sh, src: src, dst: dst}
	copyRev, n, err := r.copyAll(ctx)
	if err != nil {
		return fail(err)
	}
	rep.Copied = n
	wctx, stop := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer stop()
	w := &catchUp{s: s, d: src, apply: r.apply,
		ch:      sh.watcher.Watch(wctx, src.all(), clientv3.WithPrefix(), clientv3.WithRev(copyRev+1), clientv3.WithPrevKV()),
		watcher: sh.watcher, ctx: wctx, seen: copyRev}
	if err := w.rounds(ctx, sh, src); err != nil {
		return fail(err)
	}
	holdStart := time.Now()
	fence, err := sh.kv.Delete(ctx, src.tenant())
	if err != nil {
		return fail(etcdErr("fence the old data", err))
	}
	if err := w.until(fence.Header.Revision); err != nil {
		return fail(err)
	}
	idx, _ := encode("index entry", urlIndexEntry{InstanceID: id})
	if _, err := sh.kv.Put(ctx, dst.tenant(), idx); err != nil {
		return fail(etcdErr("mark the new data", err))
	}
	if _, err := s.updateInstance(ctx, id, func(cur *Instance) error {
		if cur.Move == nil || cur.Move.DataID != newID {
			return fmt.Errorf("store: re-key: the re-key's note changed meanwhile: %w", ErrPrecondition)
		}
		cur.Move, cur.DataID, cur.Tokens = nil, newID, target
		return nil
	}); err != nil {
		return fail(err)
	}
	rep.Hold = time.Since(holdStart)
	rep.CaughtUp = w.applied
	stop()
	// The old copy goes after the grace, then its data id: until then the
	// entry, marked retired, names the tenant, so that an erase or the
	// next re-key of the tenant finds a copy this process did not get to
	// delete (sweepDataIDs).
	retired, _ := encode("data id entry", dataIDEntry{InstanceID: id, Retired: new(s.nowUTC())})
	if _, err := s.kv.Put(context.WithoutCancel(ctx), s.k.dataID(in.DataID), retired); err != nil {
		s.log.Warn("store: re-key: the old data id could not be marked retired; it goes with its copy", "instance", id, "err", err)
	}
	old := func() error {
		bg := context.WithoutCancel(ctx)
		if _, err := sh.kv.Delete(bg, src.all(), clientv3.WithPrefix()); err != nil {
			return etcdErr("delete the old copy (delete P d/"+in.DataID+"/ on "+sh.name+" and P dataids/"+in.DataID+" by hand, or re-key the tenant again)", err)
		}
		if _, err := s.kv.Delete(bg, s.k.dataID(in.DataID)); err != nil {
			return etcdErr("delete the old data id (delete P dataids/"+in.DataID+" by hand, or re-key the tenant again)", err)
		}
		return nil
	}
	return rep, old, nil
}

// dataIDEntry is the value of P dataids/<dataId>: the tenant the data id
// belongs to and, once a re-key left it, since when it is retired (its copy
// is deleted after the re-key's grace).
type dataIDEntry struct {
	InstanceID string     `json:"instanceId"`
	Retired    *time.Time `json:"retired,omitempty"`
}

// retiredGrace is how long a retired data id's copy is left to the re-key
// that retired it before sweepDataIDs takes it: far longer than a grace.
const retiredGrace = time.Minute

// sweepDataIDs deletes the data ids (P dataids/) that name tenant in but
// that it neither uses nor is re-keying to, each with its copy on sh: the
// leftovers of a re-key whose process stopped after the switch, or after
// reserving its data id and before noting it. A retired id younger than
// minAge is left to the re-key that retired it. It reads the whole
// P dataids/ (one entry per tenant): it runs on an erase and before a
// re-key, not per request.
func (s *Store) sweepDataIDs(ctx context.Context, in *Instance, sh *shard, minAge time.Duration) error {
	kvs, err := s.indexKeysOf(ctx, s.k.dataIDs(), in.ID)
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		d, _ := strings.CutPrefix(string(kv.Key), s.k.dataIDs())
		if !validDataID(d) || d == in.DataID || (in.Move != nil && d == in.Move.DataID) {
			continue
		}
		var e dataIDEntry
		if json.Unmarshal(kv.Value, &e) == nil && e.Retired != nil && s.now().Sub(*e.Retired) < minAge {
			continue
		}
		if _, err := sh.kv.Delete(ctx, s.k.data(d).all(), clientv3.WithPrefix()); err != nil {
			return etcdErr("delete a left-over copy (P d/"+d+"/)", err)
		}
		if _, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(string(kv.Key))).Commit(); err != nil {
			return etcdErr("delete a left-over data id (P dataids/"+d+")", err)
		}
		s.log.Info("store: deleted a left-over copy of a tenant's data", "instance", in.ID, "dataId", d)
	}
	return nil
}

// RekeyAll re-keys every tenant not on the current token scheme
// (RekeyTenant), one after the other, telling progress after each. A
// tenant whose move or re-key another process holds, whose record does not
// decode, or whose data holds a value sealed with a key the file does not
// list, is skipped, logged and counted; run it again once that is fixed.
func (s *Store) RekeyAll(ctx context.Context, opts MoveOptions, progress func(done, total int)) (rekeyed, skipped int, err error) {
	if opts.Grace <= 0 {
		opts.Grace = 2 * time.Second
	}
	ids, err := s.tenantIDs(ctx)
	if err != nil {
		return 0, 0, err
	}
	// The old copies go after their grace, while the next tenants are
	// re-keyed: the grace is not paid once per tenant.
	type later struct {
		at  time.Time
		del func() error
	}
	var pending []later
	flush := func(all bool) error {
		for len(pending) > 0 && (all || !time.Now().Before(pending[0].at)) {
			if wait := time.Until(pending[0].at); wait > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
			if err := pending[0].del(); err != nil {
				return err
			}
			pending = pending[1:]
		}
		return nil
	}
	defer func() {
		if ferr := flush(true); err == nil {
			err = ferr
		}
	}()
	for i, id := range ids {
		rep, old, err := s.rekeyTenant(ctx, id)
		switch {
		case errors.Is(err, ErrLocked), errors.Is(err, ErrCorrupt), errors.Is(err, ErrEncryptionKeyMissing):
			skipped++
			s.log.Warn("store: re-key: tenant left as it is", "instance", id, "err", err)
		case errors.Is(err, ErrNotFound):
			// erased meanwhile
		case err != nil:
			return rekeyed, skipped, fmt.Errorf("store: re-key tenant %s: %w", id, err)
		case rep.From != rep.To:
			rekeyed++
		}
		if old != nil {
			pending = append(pending, later{at: time.Now().Add(opts.Grace), del: old})
		}
		if err := flush(false); err != nil {
			return rekeyed, skipped, err
		}
		if progress != nil {
			progress(i+1, len(ids))
		}
	}
	return rekeyed, skipped, nil
}

// reserveFreshDataID draws a data id no tenant uses and records it in
// P dataids/ for tenant id.
func (s *Store) reserveFreshDataID(ctx context.Context, id string) (string, error) {
	idx, _ := encode("index entry", urlIndexEntry{InstanceID: id})
	for {
		d := newDataID()
		cctx, cancel := s.ctx(ctx)
		tr, err := s.kv.Txn(cctx).If(clientv3.Compare(clientv3.CreateRevision(s.k.dataID(d)), "=", 0)).
			Then(clientv3.OpPut(s.k.dataID(d), idx)).Commit()
		cancel()
		if err != nil {
			return "", etcdErr("reserve data id", err)
		}
		if tr.Succeeded {
			return d, nil
		}
	}
}

// undoStopped undoes a stopped move (to another shard) or re-key (to
// another data id) of tenant id, whose data is d on src.
func (s *Store) undoStopped(ctx context.Context, id string, src *shard, d data, m *Move) error {
	if m.DataID == "" {
		return s.undoMove(ctx, id, src, d, m.To)
	}
	if _, err := src.kv.Delete(ctx, s.k.data(m.DataID).all(), clientv3.WithPrefix()); err != nil {
		return etcdErr("clear a stopped re-key's copy", err)
	}
	if _, err := s.kv.Delete(ctx, s.k.dataID(m.DataID)); err != nil {
		return etcdErr("free a stopped re-key's data id", err)
	}
	return s.undoMove(ctx, id, src, d, src.name)
}

// rekeyer copies one tenant's data from src to dst on one cluster, each key
// built anew with dst's tokens and each value sealed under its new key.
type rekeyer struct {
	s        *Store
	id       string
	sh       *shard
	src, dst data
}

// copyAll copies every key under src at one revision, which it returns
// with the number of source keys copied.
func (r *rekeyer) copyAll(ctx context.Context) (int64, int, error) {
	if _, err := r.sh.kv.Delete(ctx, r.dst.all(), clientv3.WithPrefix()); err != nil {
		return 0, 0, etcdErr("clear the re-key's target", err)
	}
	var rev int64
	n := 0
	from, end := r.src.all(), clientv3.GetPrefixRangeEnd(r.src.all())
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(500)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := r.sh.kv.Get(ctx, from, opts...)
		if err != nil {
			return 0, 0, etcdErr("copy tenant", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		var groups [][]clientv3.Op
		for _, kv := range resp.Kvs {
			ops, err := r.put(kv)
			if err != nil {
				return 0, 0, err
			}
			if len(ops) > 0 {
				groups = append(groups, ops)
				n++
			}
		}
		if err := r.commit(ctx, groups); err != nil {
			return 0, 0, err
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, n, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// apply replays a watch response's events: the ops of each event in turn,
// then the last op of each key (the state at the response's end), in
// transactions within etcd's bounds.
func (r *rekeyer) apply(ctx context.Context, events []*clientv3.Event) (int, error) {
	var all []clientv3.Op
	for _, ev := range events {
		var ops []clientv3.Op
		var err error
		if ev.PrevKv != nil {
			if ops, err = r.del(ev.PrevKv); err != nil {
				return 0, err
			}
		} else if ev.Type == clientv3.EventTypeDelete || ev.IsModify() {
			// The previous value names the target's keys to drop (a
			// mapping's index entries); etcd leaves it out once compacted.
			return 0, fmt.Errorf("store: re-key: the watch gave no previous value of a changed key (compacted meanwhile?): %w", ErrUnavailable)
		}
		if ev.Type == clientv3.EventTypePut {
			put, err := r.put(ev.Kv)
			if err != nil {
				return 0, err
			}
			ops = append(ops, put...)
		}
		all = append(all, ops...)
	}
	last := map[string]int{}
	for i, op := range all {
		last[string(op.KeyBytes())] = i
	}
	var groups [][]clientv3.Op
	for i, op := range all {
		if last[string(op.KeyBytes())] == i {
			groups = append(groups, []clientv3.Op{op})
		}
	}
	return len(events), r.commit(ctx, groups)
}

// rel is key's place under the tenant's data, and what it holds.
func (r *rekeyer) rel(key []byte) string { return strings.TrimPrefix(string(key), r.src.p) }

// put is what the target gets for the source key kv: nothing for the
// marker and index entries (each record brings its own), a record with its
// index entries under the target's tokens, sealed anew; a value that does
// not decode is copied as it is, under the same place (it reads as corrupt
// there as it did here).
func (r *rekeyer) put(kv *mvccpb.KeyValue) ([]clientv3.Op, error) {
	rel := r.rel(kv.Key)
	var lease []clientv3.OpOption
	if kv.Lease != 0 {
		lease = []clientv3.OpOption{clientv3.WithLease(clientv3.LeaseID(kv.Lease))}
	}
	v := r.s.vals
	switch {
	case rel == "tenant", isIndexEntry(rel):
		return nil, nil
	case strings.HasPrefix(rel, "users/"):
		plain, uid, err := r.user(kv)
		if errors.Is(err, ErrCorrupt) {
			break
		} else if err != nil {
			return nil, err
		}
		k := r.dst.user(uid)
		return []clientv3.Op{clientv3.OpPut(k, v.seal(k, plain), lease...)}, nil
	case strings.HasPrefix(rel, idxMail):
		m, err := v.decodeMapping(r.id, kv)
		if errors.Is(err, ErrCorrupt) {
			break
		} else if err != nil {
			return nil, err
		}
		return v.mappingPuts(r.dst, &m, clientv3.LeaseID(kv.Lease)), nil
	case strings.HasPrefix(rel, "reports/"):
		plain, err := v.open(kv.Key, kv.Value, "error report", r.id)
		if errors.Is(err, ErrCorrupt) {
			break
		} else if err != nil {
			return nil, err
		}
		k := r.dst.p + rel
		return []clientv3.Op{clientv3.OpPut(k, v.seal(k, plain), lease...)}, nil
	}
	return []clientv3.Op{clientv3.OpPut(r.dst.p+rel, string(kv.Value), lease...)}, nil
}

// del is what the target loses when the source key prev is deleted (or
// replaced): the keys put made of it.
func (r *rekeyer) del(prev *mvccpb.KeyValue) ([]clientv3.Op, error) {
	rel := r.rel(prev.Key)
	switch {
	case rel == "tenant", isIndexEntry(rel):
		return nil, nil
	case strings.HasPrefix(rel, "users/"):
		_, uid, err := r.user(prev)
		if errors.Is(err, ErrCorrupt) {
			break
		} else if err != nil {
			return nil, err
		}
		return []clientv3.Op{clientv3.OpDelete(r.dst.user(uid))}, nil
	case strings.HasPrefix(rel, idxMail):
		m, err := r.s.vals.decodeMapping(r.id, prev)
		if errors.Is(err, ErrCorrupt) {
			break
		} else if err != nil {
			return nil, err
		}
		var ops []clientv3.Op
		for _, k := range r.dst.mappingKeys(&m) {
			ops = append(ops, clientv3.OpDelete(k))
		}
		return ops, nil
	}
	return []clientv3.Op{clientv3.OpDelete(r.dst.p + rel)}, nil
}

// user opens a user record and reads its user id.
func (r *rekeyer) user(kv *mvccpb.KeyValue) ([]byte, string, error) {
	plain, err := r.s.vals.open(kv.Key, kv.Value, "user", r.id)
	if err != nil {
		return nil, "", err
	}
	var u struct {
		UserID string `json:"userId"`
	}
	if json.Unmarshal(plain, &u) != nil || !ValidOpaqueID(u.UserID) {
		return nil, "", corrupt("user", r.id)
	}
	return plain, u.UserID, nil
}

// isIndexEntry: rel is a mapping's index entry (c/, i/, k/, u/).
func isIndexEntry(rel string) bool {
	for _, p := range []string{idxConversation, idxIssue, idxIssueKey, idxUser} {
		if strings.HasPrefix(rel, p) {
			return true
		}
	}
	return false
}

// commit writes groups of ops (each group the keys of one source key) in
// transactions within etcd's bounds (txnBatches). A group on a lease that
// expired meanwhile is dropped: its source keys went with the lease, and
// their deletion reaches the watch.
func (r *rekeyer) commit(ctx context.Context, groups [][]clientv3.Op) error {
	for _, b := range txnBatches(groups) {
		_, err := r.sh.kv.Txn(ctx).Then(flatten(b)...).Commit()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			for _, g := range b {
				if _, err := r.sh.kv.Txn(ctx).Then(g...).Commit(); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
					return etcdErr("re-key tenant", err)
				}
			}
		} else if err != nil {
			return etcdErr("re-key tenant", err)
		}
	}
	return nil
}
