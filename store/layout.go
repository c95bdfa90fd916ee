package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// LayoutVersion is the key layout this code reads and writes
// (docs/key-layout.md). Version 1 is the layout before the layout key
// existed: every record of a tenant under P instances/<id>/, each mapping
// held whole by its record and four index entries.
//
// Version 2 keeps each tenant's data under P d/<dataId>/ with compact
// mappings; version 3 makes every outside id in those keys a token of the
// tenant's scheme (Instance.Tokens): user records by their user id's token
// instead of the escaped id, and, with an encryption key file, keyed tokens
// (HMAC under the file's key) instead of unkeyed SHA-256 ones.
const LayoutVersion = 3

// layoutRecord is the value of P layout.
type layoutRecord struct {
	Version    int       `json:"version"`
	MigratedAt time.Time `json:"migratedAt"`
}

// ErrLayoutNewer: the store was migrated by a newer relay; this one must
// not write to it.
var ErrLayoutNewer = errors.New("store: the key layout is newer than this relay knows")

// Layout reads the store's layout version: P layout's, or for a store
// without that key 1 when it holds any tenant and 0 when it is empty.
func (s *Store) Layout(ctx context.Context) (int, error) {
	v, _, err := s.layout(ctx)
	return v, err
}

func (s *Store) layout(ctx context.Context) (version int, rev int64, err error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.kv.Txn(ctx).Then(
		clientv3.OpGet(s.k.layout()),
		clientv3.OpGet(s.k.urls(), clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.k.urls())), clientv3.WithCountOnly()),
		clientv3.OpGet(s.k.instances(), clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.k.instances())), clientv3.WithLimit(1), clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		return 0, 0, etcdErr("read layout", err)
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
		var l layoutRecord
		if json.Unmarshal(kvs[0].Value, &l) != nil || l.Version < 1 {
			return 0, 0, fmt.Errorf("store: layout record: %w", ErrCorrupt)
		}
		return l.Version, kvs[0].ModRevision, nil
	}
	if resp.Responses[1].GetResponseRange().Count > 0 || len(resp.Responses[2].GetResponseRange().Kvs) > 0 {
		return 1, 0, nil
	}
	return 0, 0, nil
}

// setLayout records version v if the layout key is still at rev.
func (s *Store) setLayout(ctx context.Context, v int, rev int64) error {
	val, err := encode("layout", layoutRecord{Version: v, MigratedAt: s.nowUTC()})
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(s.k.layout()), "=", rev)).
		Then(clientv3.OpPut(s.k.layout(), val)).Commit()
	if err != nil {
		return etcdErr("write layout", err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("store: layout changed while migrating: %w", ErrPrecondition)
	}
	return nil
}

// migration is one step of the layout, from version from to from+1, run
// tenant by tenant.
type migration struct {
	from int
	name string
	// tenant migrates one tenant; run again after a failure, it finishes
	// the work (each step is idempotent).
	tenant func(ctx context.Context, s *Store, id string) error
}

// migrations are every step, in order: migrations[i] goes from i+1 to i+2.
var migrations = []migration{
	{from: 1, name: "tenant data under d/<dataId>/, mappings compact (one record, key-only indexes)", tenant: migrateV1Tenant},
	{from: 2, name: "ids in keys as tokens of the tenant's scheme (keyed with an encryption key file)", tenant: migrateV2Tenant},
}

// MigrateProgress reports a migration's progress, tenant by tenant.
type MigrateProgress func(step string, done, total int)

// Migrate brings the store's key layout to LayoutVersion: each step in
// turn, each tenant of a step on its own (its records copied, then switched
// in one transaction, then the old keys deleted), the layout key written
// after a step. One relay migrates at a time (the lock P layout-lock, on a
// lease, so a relay that dies lets the next one go on); a relay that
// starts meanwhile waits for it. Stopped anywhere, Migrate run again goes
// on from where it was. A store written by a newer relay → ErrLayoutNewer.
func (s *Store) Migrate(ctx context.Context, progress MigrateProgress) error {
	// Current already: nothing to write, no lock (a relay must start while
	// etcd is at its quota, to serve reads and let room be made).
	if v, _, err := s.layout(ctx); err != nil {
		return err
	} else if v == LayoutVersion {
		return nil
	} else if v > LayoutVersion {
		return fmt.Errorf("%w: the store is at layout %d, this relay knows %d; run a relay of that version or newer", ErrLayoutNewer, v, LayoutVersion)
	}
	unlock, err := s.lock(ctx, s.k.prefix+"layout-lock", true)
	if err != nil {
		return err
	}
	defer unlock()
	for {
		v, rev, err := s.layout(ctx)
		if err != nil {
			return err
		}
		switch {
		case v == 0:
			return s.setLayout(ctx, LayoutVersion, 0)
		case v == LayoutVersion:
			return nil
		case v > LayoutVersion:
			return fmt.Errorf("%w: the store is at layout %d, this relay knows %d; run a relay of that version or newer", ErrLayoutNewer, v, LayoutVersion)
		}
		step := migrations[v-1]
		s.log.Info("store: migrating the key layout", "from", v, "to", v+1, "step", step.name)
		ids, err := s.tenantIDs(ctx)
		if err != nil {
			return err
		}
		for i, id := range ids {
			if err := step.tenant(ctx, s, id); err != nil {
				return fmt.Errorf("store: migrate tenant %s to layout %d: %w", id, v+1, err)
			}
			if progress != nil {
				progress(step.name, i+1, len(ids))
			}
		}
		if err := s.setLayout(ctx, v+1, rev); err != nil {
			return err
		}
		s.log.Info("store: key layout migrated", "version", v+1, "tenants", len(ids))
	}
}

// tenantIDs lists every tenant by the URL index (one small key each).
func (s *Store) tenantIDs(ctx context.Context) ([]string, error) {
	var ids []string
	from, end := s.k.urls(), clientv3.GetPrefixRangeEnd(s.k.urls())
	for {
		cctx, cancel := s.ctx(ctx)
		resp, err := s.kv.Get(cctx, from, clientv3.WithRange(end), clientv3.WithLimit(1000))
		cancel()
		if err != nil {
			return nil, etcdErr("list tenants", err)
		}
		for _, kv := range resp.Kvs {
			if id, ok := indexedID(kv.Value); ok {
				ids = append(ids, id)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return ids, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// ErrLocked: another process holds the lock (a move of the same tenant).
var ErrLocked = fmt.Errorf("held by another process: %w", ErrExists)

// lock takes the lock key (P layout-lock, P moves/<id>) for this process:
// waiting while another holds it, or failing with ErrLocked when !wait.
// The key is on a lease of 10 s kept alive while held, so the lock of a
// process that died frees itself.
func (s *Store) lock(ctx context.Context, key string, wait bool) (unlock func(), err error) {
	if s.lease == nil {
		return nil, ErrNoLeases
	}
	for {
		g, err := s.lease.Grant(ctx, 10)
		if err != nil {
			return nil, etcdErr("grant a lock's lease", err)
		}
		kctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		ka, err := s.lease.KeepAlive(kctx, g.ID)
		if err != nil {
			stop()
			return nil, etcdErr("keep a lock", err)
		}
		go func() {
			for range ka {
			}
		}()
		release := func() {
			stop()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
			defer cancel()
			if _, err := s.lease.Revoke(rctx, g.ID); err != nil {
				s.log.Warn("store: release a lock; it frees itself within 10 s", "key", key, "err", err)
			}
		}
		resp, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, strconv.FormatInt(int64(g.ID), 16), clientv3.WithLease(g.ID))).Commit()
		if err != nil {
			release()
			return nil, etcdErr("take a lock", err)
		}
		if resp.Succeeded {
			return release, nil
		}
		release()
		if !wait {
			return nil, fmt.Errorf("store: %s: %w", key, ErrLocked)
		}
		s.log.Info("store: another relay holds the lock; waiting", "key", key)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// migrateV2Tenant gives a tenant of layout 2 the keys of layout 3: its data
// re-keyed to the store's token scheme (RekeyTenant), which also writes
// the record's "tokens". No relay of layout 2 runs meanwhile, so the old
// copy goes at once.
func migrateV2Tenant(ctx context.Context, s *Store, id string) error {
	in, _, err := s.readRecord(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil // erased meanwhile
	case errors.Is(err, ErrCorrupt):
		// A record that does not decode serves nothing either way (its
		// requests answer record_corrupt) and is erased as it is: it does
		// not hold the store back.
		s.log.Warn("store: migrate: tenant left as it is: its record does not decode", "instance", id)
		return nil
	case err != nil:
		return err
	}
	if in.Tokens != "" && in.Move == nil {
		return nil // migrated, or registered by a relay of layout 3
	}
	_, err = s.RekeyTenant(ctx, id, MoveOptions{Grace: time.Millisecond})
	return err
}
