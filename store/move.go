package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MoveReport tells how a move went.
type MoveReport struct {
	From, To string
	// Copied is how many keys were copied at the start; CaughtUp how many
	// changes made meanwhile were replayed from the watch.
	Copied, CaughtUp int
	// Hold is how long the tenant's writes waited: from the fence on the
	// old shard to the switch in the directory.
	Hold time.Duration
	// Total is the whole move, the old copy's deletion included.
	Total time.Duration

	started time.Time
}

// MoveOptions tune a move.
type MoveOptions struct {
	// Grace is how long the old copy stays after the switch, for relays
	// whose directory watch has not yet delivered it (their reads still go
	// there; their writes are fenced and follow the switch). Default 2s.
	Grace time.Duration
}

// MoveTenant moves a tenant's data (users, mappings, error reports) to
// shard to, online:
//
//  1. take the tenant's move lock (P moves/<id>, on a lease: one move of a
//     tenant at a time) and note the move in the directory record
//     ("move": {"to": …}), so that an erase meanwhile clears the target too;
//  2. copy everything at one revision (each lease mapped to the target's
//     lease of the same expiry), then catch up from the old shard's watch;
//  3. hold: fence the old shard (delete the tenant's marker: every write
//     compares it, so a write there fails and waits for the switch), catch
//     up to the fence, write the marker on the target, switch the directory
//     record to the target in one transaction: the writes held go on there
//     (the hold is this step, well under a second);
//  4. after opts.Grace, delete the old copy.
//
// A move that fails is undone (the target's copy cleared, the old marker
// restored, the note removed); one whose mover died is undone by the next
// move of the tenant.
func (s *Store) MoveTenant(ctx context.Context, id, to string, opts MoveOptions) (*MoveReport, error) {
	if opts.Grace <= 0 {
		opts.Grace = 2 * time.Second
	}
	start := time.Now()
	dst, ok := s.shardOf(to)
	if !ok {
		return nil, fmt.Errorf("store: move: no shard %q: %w", to, ErrNotFound)
	}
	unlock, err := s.lock(ctx, s.k.prefix+"moves/"+id, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	in, _, err := s.readRecord(ctx, id)
	if err != nil {
		return nil, err
	}
	src, ok := s.shardOf(in.Shard)
	if !ok {
		return nil, fmt.Errorf("store: move: the tenant's shard %q has no client here: %w", in.Shard, ErrUnavailable)
	}
	d := s.k.data(in.DataID)
	if in.Move != nil {
		// A move or re-key whose process died: undo it, then move afresh.
		if err := s.undoStopped(ctx, id, src, d, in.Move); err != nil {
			return nil, err
		}
	}
	if src == dst {
		return nil, fmt.Errorf("store: move: the tenant is on shard %s already: %w", dst.name, ErrExists)
	}
	rep := &MoveReport{From: src.name, To: dst.name}
	// 1. The note, before anything is copied.
	if _, err := s.updateInstance(ctx, id, func(in *Instance) error {
		if in.ShardName() != src.name || in.Move != nil {
			return fmt.Errorf("store: move: the tenant changed shard meanwhile: %w", ErrPrecondition)
		}
		in.Move = &Move{To: dst.name, Since: s.nowUTC()}
		return nil
	}); err != nil {
		return nil, err
	}
	fail := func(err error) (*MoveReport, error) {
		// Undo only a move the record shows as this one, not switched: a
		// switch etcd applied while the client saw an error is done
		// (undoing would clear the only copy in use), and a record that
		// cannot be read says neither.
		cur, _, rerr := s.readRecord(context.WithoutCancel(ctx), id)
		switch {
		case rerr == nil && cur.Move == nil && cur.ShardName() == dst.name:
			return nil, fmt.Errorf("%w (the switch was applied: the tenant is on %s; delete P d/%s/ on %s by hand)", err, dst.name, cur.DataID, src.name)
		case rerr != nil && !errors.Is(rerr, ErrNotFound):
			return nil, fmt.Errorf("%w (and the tenant's record could not be read to undo the move: %v; move the tenant again to undo it)", err, rerr)
		case rerr == nil && (cur.Move == nil || cur.Move.To != dst.name || cur.Move.DataID != ""):
			return nil, fmt.Errorf("%w (the tenant's record changed meanwhile: the move was left as it is)", err)
		}
		// Noted and not switched, or erased meanwhile (the target's copy
		// goes all the same).
		if uerr := s.undoMove(context.WithoutCancel(ctx), id, src, d, dst.name); uerr != nil && !errors.Is(uerr, ErrNotFound) {
			return nil, fmt.Errorf("%w (and undoing the move failed: %v; move the tenant again to undo it)", err, uerr)
		}
		return nil, err
	}
	if _, err := dst.kv.Delete(ctx, d.all(), clientv3.WithPrefix()); err != nil {
		return fail(etcdErr("clear the move's target", err))
	}
	leases := &leaseMap{s: s, src: src, dst: dst, ids: map[int64]clientv3.LeaseID{}}
	if err := leases.readRegistry(ctx); err != nil {
		return fail(err)
	}
	// 2. Copy at one revision, then catch up from the watch, in rounds until
	// a round replays little: the backlog left for the hold is then small.
	copyRev, n, err := s.copyPrefix(ctx, src, dst, d, leases)
	if err != nil {
		return fail(err)
	}
	rep.Copied = n
	wctx, stop := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer stop()
	replay := &moveReplay{dst: dst, d: d, leases: leases}
	w := &catchUp{s: s, d: d, apply: replay.apply,
		ch:      src.watcher.Watch(wctx, d.all(), clientv3.WithPrefix(), clientv3.WithRev(copyRev+1)),
		watcher: src.watcher, ctx: wctx, seen: copyRev}
	if err := w.rounds(ctx, src, d); err != nil {
		return fail(err)
	}
	// 3. Hold: fence, catch up to the fence, mark the target, switch.
	holdStart := time.Now()
	fence, err := src.kv.Delete(ctx, d.tenant())
	if err != nil {
		return fail(etcdErr("fence the old shard", err))
	}
	if err := w.until(fence.Header.Revision); err != nil {
		return fail(err)
	}
	idx, _ := encode("index entry", urlIndexEntry{InstanceID: id})
	if _, err := dst.kv.Put(ctx, d.tenant(), idx); err != nil {
		return fail(etcdErr("mark the new shard", err))
	}
	if _, err := s.updateInstance(ctx, id, func(in *Instance) error {
		if in.Move == nil || in.Move.To != dst.name {
			return fmt.Errorf("store: move: the move's note changed meanwhile: %w", ErrPrecondition)
		}
		in.Move, in.Shard = nil, dst.name
		if dst == s.dir {
			in.Shard = ""
		}
		return nil
	}); err != nil {
		return fail(err)
	}
	rep.Hold = time.Since(holdStart)
	rep.CaughtUp = w.applied
	stop()
	// 4. The old copy goes after the grace (at once if the mover is
	// stopped: the copy must not outlive the move).
	select {
	case <-ctx.Done():
	case <-time.After(opts.Grace):
	}
	if _, err := src.kv.Delete(context.WithoutCancel(ctx), d.all(), clientv3.WithPrefix()); err != nil {
		return rep, etcdErr("delete the old copy (delete P d/"+in.DataID+"/ on shard "+src.name+" by hand)", err)
	}
	rep.Total = time.Since(start)
	return rep, nil
}

// undoMove restores a tenant whose move to shard `to` stopped: the target's
// copy cleared, the old shard's marker back (unless the tenant was erased
// meanwhile), the note removed from the record.
func (s *Store) undoMove(ctx context.Context, id string, src *shard, d data, to string) error {
	if dst, ok := s.shardOf(to); ok && dst != src {
		if _, err := dst.kv.Delete(ctx, d.all(), clientv3.WithPrefix()); err != nil {
			return etcdErr("clear a stopped move's copy", err)
		}
	}
	in, _, err := s.readRecord(ctx, id)
	if err != nil {
		return err // erased: nothing to restore
	}
	idx, _ := encode("index entry", urlIndexEntry{InstanceID: id})
	if _, err := src.kv.Put(ctx, d.tenant(), idx); err != nil {
		return etcdErr("restore the old shard's marker (if that shard is full, make room first)", err)
	}
	if in.Move == nil {
		return nil
	}
	_, err = s.updateInstance(ctx, id, func(in *Instance) error {
		in.Move = nil
		return nil
	})
	return err
}

// readRecord reads an instance record from the directory.
func (s *Store) readRecord(ctx context.Context, id string) (*Instance, int64, error) {
	cctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.kv.Get(cctx, s.k.instance(id))
	if err != nil {
		return nil, 0, etcdErr("read instance", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, fmt.Errorf("store: instance %s: %w", id, ErrNotFound)
	}
	in, err := s.decodeInstance(id, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	if err != nil {
		return nil, 0, err
	}
	if !validDataID(in.DataID) {
		return nil, 0, corrupt("instance", id)
	}
	return in, resp.Kvs[0].ModRevision, nil
}

// copyPrefix copies every key under d but the marker from src to dst, read
// at one revision, which it returns with the number of keys copied.
func (s *Store) copyPrefix(ctx context.Context, src, dst *shard, d data, leases *leaseMap) (int64, int, error) {
	var rev int64
	n := 0
	from, end := d.all(), clientv3.GetPrefixRangeEnd(d.all())
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(500)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := src.kv.Get(ctx, from, opts...)
		if err != nil {
			return 0, 0, etcdErr("copy tenant", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		var ops []clientv3.Op
		for _, kv := range resp.Kvs {
			if string(kv.Key) == d.tenant() {
				continue
			}
			op, ok, err := leases.put(ctx, kv)
			if err != nil {
				return 0, 0, err
			}
			if ok {
				ops = append(ops, op)
			}
		}
		for _, b := range txnBatches(singles(ops)) {
			if _, err := dst.kv.Txn(ctx).Then(flatten(b)...).Commit(); err != nil {
				return 0, 0, etcdErr("copy tenant", err)
			}
		}
		n += len(ops)
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, n, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// catchUp replays the changes made to a tenant's data since it was copied
// onto the copy (a move's target shard, a re-key's new data id).
type catchUp struct {
	s *Store
	d data // the data being left
	// apply replays one watch response's events and returns how many it
	// replayed.
	apply   func(ctx context.Context, events []*clientv3.Event) (int, error)
	ch      clientv3.WatchChan
	watcher clientv3.Watcher
	ctx     context.Context
	seen    int64 // every change up to this revision is replayed
	applied int
}

// rounds catches up in rounds, each to the revision src is at when it
// starts, until a round replays little (at most 20): the backlog left for
// the hold is then small.
func (c *catchUp) rounds(ctx context.Context, src *shard, d data) error {
	for round := 0; round < 20; round++ {
		now, err := src.kv.Get(ctx, d.tenant(), clientv3.WithCountOnly())
		if err != nil {
			return etcdErr("read the data being left", err)
		}
		before := c.applied
		if err := c.until(now.Header.Revision); err != nil {
			return err
		}
		if c.applied-before < 64 {
			return nil
		}
	}
	return nil
}

// until replays changes until every one up to rev is on the target. It
// asks the watch for its progress every 50 ms while waiting (on the
// watch's own stream): etcd reports the revision a quiet watch is at only
// when asked, and drops the question while the watch catches up.
func (c *catchUp) until(rev int64) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for c.seen < rev {
		if err := c.watcher.RequestProgress(c.ctx); err != nil {
			return etcdErr("watch the data being left", err)
		}
		select {
		case <-c.ctx.Done():
			return etcdErr("watch the data being left", c.ctx.Err())
		case <-tick.C:
		case resp, ok := <-c.ch:
			if !ok {
				return etcdErr("watch the data being left", errors.New("the watch ended"))
			}
			if err := resp.Err(); err != nil {
				return etcdErr("watch the data being left", err)
			}
			n, err := c.apply(c.ctx, resp.Events)
			if err != nil {
				return err
			}
			c.applied += n
			// A response's header revision is where the watch's catch-up
			// stood when it was sent, not how far its events reach: a watch
			// far behind gets its backlog in batches (1,000 revisions each),
			// every one stamped with the store's current revision. Only a
			// progress notice says that everything up to its revision was
			// delivered.
			if len(resp.Events) > 0 {
				c.seen = max(c.seen, resp.Events[len(resp.Events)-1].Kv.ModRevision)
			} else if resp.IsProgressNotify() {
				c.seen = max(c.seen, resp.Header.Revision)
			}
		}
	}
	return nil
}

// moveReplay replays a tenant's changes on its old shard onto the move's
// target, under the same keys.
type moveReplay struct {
	dst    *shard
	d      data
	leases *leaseMap
}

// apply replays a watch response's events onto the target: the last event
// of each key (the key's state at the response's end), in transactions
// within etcd's bounds (txnBatches), one round trip each.
func (c *moveReplay) apply(ctx context.Context, events []*clientv3.Event) (int, error) {
	last := map[string]int{}
	var order []string
	for i, ev := range events {
		k := string(ev.Kv.Key)
		if k == c.d.tenant() {
			continue // the fence
		}
		if _, ok := last[k]; !ok {
			order = append(order, k)
		}
		last[k] = i
	}
	ops := make([]clientv3.Op, 0, len(order))
	for _, k := range order {
		ev := events[last[k]]
		if ev.Type == clientv3.EventTypeDelete {
			ops = append(ops, clientv3.OpDelete(k))
			continue
		}
		op, ok, err := c.leases.put(ctx, ev.Kv)
		if err != nil {
			return 0, err
		}
		if ok {
			ops = append(ops, op)
		} else {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	for _, b := range txnBatches(singles(ops)) {
		if _, err := c.dst.kv.Txn(ctx).Then(flatten(b)...).Commit(); err != nil {
			return 0, etcdErr("replay changes", err)
		}
	}
	return len(events), nil
}

// leaseMap gives each lease of the old shard its counterpart on the
// target: a retention bucket's lease (named in P leases/ on the old shard)
// the target's lease of the same bucket, any other lease (error reports)
// a new lease of the same remaining time.
type leaseMap struct {
	s        *Store
	src, dst *shard
	buckets  map[int64]time.Time // old lease → its bucket's end
	ids      map[int64]clientv3.LeaseID
}

func (m *leaseMap) readRegistry(ctx context.Context) error {
	p := m.s.k.prefix + "leases/"
	resp, err := m.src.kv.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return etcdErr("read the retention leases", err)
	}
	m.buckets = map[int64]time.Time{}
	for _, kv := range resp.Kvs {
		end, err1 := strconv.ParseInt(strings.TrimPrefix(string(kv.Key), p), 10, 64)
		id, err2 := strconv.ParseInt(string(kv.Value), 16, 64)
		if err1 == nil && err2 == nil {
			m.buckets[id] = time.Unix(end, 0).UTC()
		}
	}
	return nil
}

// put is the write of kv on the target, on the mapped lease; false when
// kv's lease has expired (the key goes with it).
func (m *leaseMap) put(ctx context.Context, kv *mvccpb.KeyValue) (clientv3.Op, bool, error) {
	if kv.Lease == 0 {
		return clientv3.OpPut(string(kv.Key), string(kv.Value)), true, nil
	}
	id, ok := m.ids[kv.Lease]
	if !ok {
		var err error
		if end, bucket := m.buckets[kv.Lease]; bucket {
			if !end.After(m.s.now().Add(time.Second)) {
				return clientv3.Op{}, false, nil // expiring now
			}
			id, err = m.s.bucketLease(ctx, m.dst, end)
		} else {
			var ttl *clientv3.LeaseTimeToLiveResponse
			if ttl, err = m.src.lease.TimeToLive(ctx, clientv3.LeaseID(kv.Lease)); err == nil {
				if ttl.TTL <= 0 {
					return clientv3.Op{}, false, nil
				}
				var g *clientv3.LeaseGrantResponse
				if g, err = m.dst.lease.Grant(ctx, ttl.TTL); err == nil {
					id = g.ID
				}
			}
		}
		if err != nil {
			return clientv3.Op{}, false, etcdErr("map a lease", err)
		}
		m.ids[kv.Lease] = id
	}
	return clientv3.OpPut(string(kv.Key), string(kv.Value), clientv3.WithLease(id)), true, nil
}

// ShardStatus is one shard's room and tenants.
type ShardStatus struct {
	Name    string `json:"name"`
	Room    Room   `json:"room"`
	Tenants int    `json:"tenants"`
	Moving  int    `json:"moving,omitempty"`
}

// TenantsByShard counts the tenants whose data each shard holds, from the
// directory (every record read).
func (s *Store) TenantsByShard(ctx context.Context) (tenants, moving map[string]int, err error) {
	tenants, moving = map[string]int{}, map[string]int{}
	p := s.k.instances()
	from, end := p, clientv3.GetPrefixRangeEnd(p)
	for {
		resp, err := s.kv.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(1000))
		if err != nil {
			return nil, nil, etcdErr("list tenants", err)
		}
		for _, kv := range resp.Kvs {
			if !strings.HasSuffix(string(kv.Key), "/instance") {
				continue
			}
			var in Instance
			if json.Unmarshal(kv.Value, &in) != nil {
				continue
			}
			tenants[in.ShardName()]++
			if in.Move != nil {
				moving[in.ShardName()]++
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return tenants, moving, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
