package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Layout 1 → 2: a tenant's users, mappings and error reports move from
// P instances/<id>/{users,mappings,index,error-reports}/ to P d/<dataId>/,
// each mapping kept once (its record) with key-only index entries; the
// instance record gains its dataId, and P dataids/<dataId> and the tenant
// marker P d/<dataId>/tenant appear.
//
// For one tenant, in order, each part safe to run again:
//  1. pick the data id (kept in P migrations/2/<id> until the switch, so a
//     run that stopped uses the same one) and reserve P dataids/<dataId>;
//  2. copy users, mappings and error reports (same lease) at one revision;
//  3. switch in one transaction, only if nothing under P instances/<id>/
//     changed since the copy's revision (else copy again): the record gets
//     its dataId, the marker is written, the progress key goes;
//  4. delete the layout-1 keys of the tenant.
//
// Mappings are copied without a lease: a retention applies to them from
// their next link (docs/operations.md, "Capacity").

// migrationKey is the progress key of tenant id's step to layout 2.
func (k keys) migrationKey(id string) string { return k.prefix + "migrations/2/" + id }

type migrationProgress struct {
	DataID string `json:"dataId"`
}

func migrateV1Tenant(ctx context.Context, s *Store, id string) error {
	dir := s.k.directory(id)
	for {
		cctx, cancel := s.ctx(ctx)
		resp, err := s.kv.Txn(cctx).Then(clientv3.OpGet(s.k.instance(id)), clientv3.OpGet(s.k.migrationKey(id))).Commit()
		cancel()
		if err != nil {
			return etcdErr("read tenant", err)
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return nil // erased meanwhile
		}
		var rec map[string]json.RawMessage
		if err := json.Unmarshal(kvs[0].Value, &rec); err != nil {
			// A record that does not decode cannot take a data id; its
			// layout-1 keys stay for DeleteInstance, which finds them.
			s.log.Warn("store: migrate: instance record does not decode; tenant left in layout 1 until erased", "instance", id)
			return nil
		}
		if _, done := rec["dataId"]; done {
			return deleteV1Keys(ctx, s, id)
		}
		dataID, err := reserveDataID(ctx, s, id, resp.Responses[1].GetResponseRange().Kvs)
		if err != nil {
			return err
		}
		d := s.k.data(dataID)
		copyRev, err := copyV1Tenant(ctx, s, id, d)
		if errors.Is(err, errRetryCopy) {
			continue
		}
		if err != nil {
			return err
		}
		if err := s.migrateHook("copied", id); err != nil {
			return err
		}
		dataIDJSON, _ := json.Marshal(dataID)
		rec["dataId"] = dataIDJSON
		val, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("store: encode instance: %w", err)
		}
		idx, _ := encode("index entry", urlIndexEntry{InstanceID: id})
		cctx, cancel = s.ctx(ctx)
		tr, err := s.kv.Txn(cctx).If(
			clientv3.Compare(clientv3.ModRevision(s.k.instance(id)), "=", kvs[0].ModRevision),
			clientv3.Compare(clientv3.ModRevision(dir), "<", copyRev+1).WithPrefix(),
		).Then(
			clientv3.OpPut(s.k.instance(id), string(val)),
			clientv3.OpPut(d.tenant(), idx),
			clientv3.OpDelete(s.k.migrationKey(id)),
		).Commit()
		cancel()
		if err != nil {
			return etcdErr("switch tenant", err)
		}
		if tr.Succeeded {
			s.cache.putInstance(s.cacheEntry(id, val, tr.Header.Revision))
			if err := s.migrateHook("switched", id); err != nil {
				return err
			}
			return deleteV1Keys(ctx, s, id)
		}
		// Written meanwhile: copy again (the puts are idempotent).
	}
}

// reserveDataID returns the data id a run that stopped had picked, or picks
// one and records it with its P dataids/ entry.
func reserveDataID(ctx context.Context, s *Store, id string, progress []*mvccpb.KeyValue) (string, error) {
	if len(progress) == 1 {
		var p migrationProgress
		if json.Unmarshal(progress[0].Value, &p) == nil && validDataID(p.DataID) {
			return p.DataID, nil
		}
	}
	idx, _ := encode("index entry", urlIndexEntry{InstanceID: id})
	for {
		dataID := newDataID()
		val, _ := encode("migration progress", migrationProgress{DataID: dataID})
		cctx, cancel := s.ctx(ctx)
		tr, err := s.kv.Txn(cctx).If(clientv3.Compare(clientv3.CreateRevision(s.k.dataID(dataID)), "=", 0)).
			Then(clientv3.OpPut(s.k.dataID(dataID), idx), clientv3.OpPut(s.k.migrationKey(id), val)).Commit()
		cancel()
		if err != nil {
			return "", etcdErr("reserve data id", err)
		}
		if tr.Succeeded {
			return dataID, nil
		}
	}
}

// copyV1Tenant copies a tenant's layout-1 users, mappings and error reports
// into d, all read at one revision, which it returns.
func copyV1Tenant(ctx context.Context, s *Store, id string, d data) (int64, error) {
	dir := s.k.directory(id)
	var rev int64
	var ops []clientv3.Op
	size := 0
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		cctx, cancel := s.ctx(ctx)
		defer cancel()
		_, err := s.kv.Txn(cctx).Then(ops...).Commit()
		ops, size = ops[:0], 0
		if leaseGone(err) {
			return errRetryCopy
		}
		return etcdErr("copy tenant", err)
	}
	add := func(o ...clientv3.Op) error {
		if len(ops)+len(o) > maxTxnOps || size+opsBytes(o) > maxTxnBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		ops, size = append(ops, o...), size+opsBytes(o)
		return nil
	}
	for _, part := range []string{"users/", "mappings/", "error-reports/"} {
		p := dir + part
		from, end := p, clientv3.GetPrefixRangeEnd(p)
		for {
			opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(500)}
			if rev != 0 {
				opts = append(opts, clientv3.WithRev(rev))
			}
			cctx, cancel := s.ctx(ctx)
			resp, err := s.kv.Get(cctx, from, opts...)
			cancel()
			if err != nil {
				return 0, etcdErr("read tenant", err)
			}
			if rev == 0 {
				rev = resp.Header.Revision
			}
			for _, kv := range resp.Kvs {
				var err error
				switch part {
				case "users/":
					var u User
					if json.Unmarshal(kv.Value, &u) != nil || u.UserID == "" {
						return 0, corrupt("user", id)
					}
					err = add(clientv3.OpPut(d.user(u.UserID), string(kv.Value)))
				case "mappings/":
					m, derr := decodeMappingJSON(id, kv.Value)
					if derr != nil {
						return 0, derr
					}
					err = add(s.vals.mappingPuts(d, &m, 0)...)
				case "error-reports/":
					var r ErrorReport
					if json.Unmarshal(kv.Value, &r) != nil || r.ID == "" {
						return 0, corrupt("error report", id)
					}
					var o []clientv3.OpOption
					if kv.Lease != 0 {
						o = append(o, clientv3.WithLease(clientv3.LeaseID(kv.Lease)))
					}
					err = add(clientv3.OpPut(d.report(r.ID), string(kv.Value), o...))
				}
				if err != nil {
					return 0, err
				}
			}
			if !resp.More || len(resp.Kvs) == 0 {
				break
			}
			from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return rev, nil
}

// errRetryCopy: an error report's lease expired during the copy; the
// tenant is copied again, without it.
var errRetryCopy = fmt.Errorf("store: a lease expired during the copy: %w", ErrPrecondition)

// deleteV1Keys deletes what is left of a tenant in layout 1: everything
// under P instances/<id>/ but its record and configuration.
func deleteV1Keys(ctx context.Context, s *Store, id string) error {
	dir := s.k.directory(id)
	cctx, cancel := s.ctx(ctx)
	defer cancel()
	var ops []clientv3.Op
	for _, part := range []string{"users/", "mappings/", "index/", "error-reports/"} {
		ops = append(ops, deletePrefix(dir+part))
	}
	_, err := s.kv.Txn(cctx).Then(ops...).Commit()
	return etcdErr("delete layout-1 keys", err)
}
