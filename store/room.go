package store

import (
	"cmp"
	"context"
	"errors"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Room is how full one etcd cluster is: the largest database file of its
// members (etcd raises NOSPACE when a member's file passes the quota), the
// part of it in use (the rest is freed pages a defragmentation returns),
// and the quota.
type Room struct {
	DBSize, DBSizeInUse, Quota int64
}

// Fill is DBSize over Quota: 1 is NOSPACE.
func (r Room) Fill() float64 {
	if r.Quota <= 0 {
		return 0
	}
	return float64(r.DBSize) / float64(r.Quota)
}

// ClusterRoom reads a cluster's room from the Status of each endpoint
// (members that do not answer are skipped; none answering is an error).
// defaultQuota stands in for a member that does not report its quota
// (etcd before 3.6).
func ClusterRoom(ctx context.Context, m clientv3.Maintenance, endpoints []string, defaultQuota int64) (Room, error) {
	var r Room
	var errs []error
	for _, ep := range endpoints {
		st, err := m.Status(ctx, ep)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.DBSize = max(r.DBSize, st.DbSize)
		r.DBSizeInUse = max(r.DBSizeInUse, st.DbSizeInUse)
		q := st.DbSizeQuota
		if q <= 0 {
			q = defaultQuota
		}
		if r.Quota == 0 || q < r.Quota {
			r.Quota = q
		}
	}
	if len(errs) == len(endpoints) {
		return Room{}, etcdErr("status", errors.Join(errs...))
	}
	return r, nil
}

// TenantMappings is how many mappings one tenant holds.
type TenantMappings struct {
	InstanceID string
	Mappings   int64
}

// LargestTenants counts every known tenant's mappings (a count-only range
// each: etcd walks its index, nothing crosses the wire) and returns the n
// largest, largest first. The counts also refresh the quota counters.
func (s *Store) LargestTenants(ctx context.Context, n int) ([]TenantMappings, error) {
	s.cache.mu.RLock()
	ins := make([]*Instance, 0, len(s.cache.instances))
	for _, in := range s.cache.instances {
		if !in.corrupt && validDataID(in.DataID) {
			ins = append(ins, in)
		}
	}
	s.cache.mu.RUnlock()
	out := make([]TenantMappings, 0, len(ins))
	for _, in := range ins {
		t, err := s.tenantOf(in)
		if err != nil {
			continue // a shard this relay has no client of
		}
		cctx, cancel := s.ctx(ctx)
		c, err := countRange(cctx, t.sh.kv, t.d.p+idxMail)
		cancel()
		if err != nil {
			continue // its shard does not answer: the others are still counted
		}
		s.quotas.counted(in.ID, c, s.now())
		out = append(out, TenantMappings{InstanceID: in.ID, Mappings: c})
	}
	slices.SortFunc(out, func(a, b TenantMappings) int {
		return cmp.Or(cmp.Compare(b.Mappings, a.Mappings), cmp.Compare(a.InstanceID, b.InstanceID))
	})
	return out[:min(n, len(out))], nil
}
