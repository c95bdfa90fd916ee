package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// quotas keeps, per tenant, how many mappings and users it holds, to refuse
// the writes past --tenant-max-mappings and --tenant-max-users.
//
// The counts come from etcd's count-only ranges over the tenant's records
// (P d/<dataId>/m/ and users/), which every relay of a fleet reads alike,
// plus this relay's own writes since. A count is read again when it is 10 s
// old, or 1 s old once the tenant is within 5% of its quota: another
// relay's writes are seen within a second where it matters, far under 1%
// of any quota for the write rates one etcd takes (2,000/s × 1 s against a
// default quota of 1,000,000). A counter kept in the link transaction
// would be exact, but every link of a tenant would then write one more key
// (two revisions of history per link) and contend on it; the ranges cost
// nothing on the write path.
type quotas struct {
	maxMappings, maxUsers int64
	now                   func() time.Time

	mu sync.Mutex
	t  map[string]*tenantCount
}

type tenantCount struct {
	mappings, users     int64
	mappingsAt, usersAt time.Time
}

func (q *quotas) count(id string) *tenantCount {
	if q.t == nil {
		q.t = map[string]*tenantCount{}
	}
	c := q.t[id]
	if c == nil {
		c = &tenantCount{}
		q.t[id] = c
	}
	return c
}

// stale says whether a count read at `at` must be read again.
func (q *quotas) stale(at time.Time, n, limit int64) bool {
	age := q.now().Sub(at)
	return at.IsZero() || age >= 10*time.Second || (age >= time.Second && limit-n <= max(limit/20, 1))
}

// countRange counts the keys under p.
func countRange(ctx context.Context, kv clientv3.KV, p string) (int64, error) {
	resp, err := kv.Get(ctx, p, clientv3.WithRange(clientv3.GetPrefixRangeEnd(p)), clientv3.WithCountOnly())
	if err != nil {
		return 0, etcdErr("count", err)
	}
	return resp.Count, nil
}

// held is how many mappings (or users) the tenant holds, counted again
// from etcd when the count is stale.
func (q *quotas) held(ctx context.Context, t tenant, users bool) (int64, error) {
	limit, prefix := q.maxMappings, t.d.p+idxMail
	if users {
		limit, prefix = q.maxUsers, t.d.users()
	}
	q.mu.Lock()
	c := q.count(t.in.ID)
	n, at := c.mappings, c.mappingsAt
	if users {
		n, at = c.users, c.usersAt
	}
	q.mu.Unlock()
	if !q.stale(at, n, limit) {
		return n, nil
	}
	got, err := countRange(ctx, t.sh.kv, prefix)
	if err != nil {
		return 0, err
	}
	q.mu.Lock()
	if users {
		c.users, c.usersAt = got, q.now()
	} else {
		c.mappings, c.mappingsAt = got, q.now()
	}
	q.mu.Unlock()
	return got, nil
}

// checkMappings refuses a new mapping of a tenant at its quota.
func (q *quotas) checkMappings(ctx context.Context, t tenant) error {
	if q.maxMappings <= 0 {
		return nil
	}
	n, err := q.held(ctx, t, false)
	if err != nil {
		return err
	}
	if n >= q.maxMappings {
		return &QuotaError{What: "mappings", Held: n, Quota: q.maxMappings}
	}
	return nil
}

// usersFull says whether the tenant holds its quota of users (a count
// that cannot be read counts as not full: the write then fails on its own).
func (q *quotas) usersFull(ctx context.Context, t tenant) bool {
	if q.maxUsers <= 0 {
		return false
	}
	n, err := q.held(ctx, t, true)
	return err == nil && n >= q.maxUsers
}

func (q *quotas) usersExceeded() error {
	return &QuotaError{What: "users", Held: q.maxUsers, Quota: q.maxUsers}
}

// QuotaError is a write refused at a tenant's quota. It matches
// ErrQuotaExceeded.
type QuotaError struct {
	What  string // "mappings" or "users"
	Held  int64  // how many the tenant holds (as last counted)
	Quota int64
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("store: the tenant holds %d %s, its quota is %d", e.Held, e.What, e.Quota)
}

// Is makes errors.Is(err, ErrQuotaExceeded) true.
func (e *QuotaError) Is(target error) bool { return target == ErrQuotaExceeded }

func (q *quotas) add(id string, mappings, users int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if c, ok := q.t[id]; ok {
		c.mappings += mappings
		c.users += users
	}
}

func (q *quotas) linked(id string)          { q.add(id, 1, 0) }
func (q *quotas) unlinked(id string, n int) { q.add(id, -int64(n), 0) }
func (q *quotas) userAdded(id string)       { q.add(id, 0, 1) }
func (q *quotas) userRemoved(id string)     { q.add(id, 0, -1) }

// counted records a fresh count of the tenant's mappings.
func (q *quotas) counted(id string, mappings int64, at time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.count(id)
	c.mappings, c.mappingsAt = mappings, at
}

func (q *quotas) forget(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.t, id)
}
