package store

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrorReport is an add-in error report, already scrubbed of personal data
// and credentials by the HTTP layer. It expires through an etcd lease.
type ErrorReport struct {
	ID           string         `json:"id"`
	ReceivedAt   time.Time      `json:"receivedAt"`
	Message      string         `json:"message"`
	Stack        string         `json:"stack,omitempty"`
	AddinVersion string         `json:"addinVersion,omitempty"`
	Context      map[string]any `json:"context,omitempty"`
}

// errorReportLease hands out one lease for all reports of a window (a
// minute, or a tenth of the TTL when that is shorter): a report expires
// between ttl and ttl + window after it arrived, and etcd keeps a few leases
// instead of one per report.
type errorReportLease struct {
	mu      sync.Mutex
	id      clientv3.LeaseID
	granted time.Time
	ttl     time.Duration
}

// ErrNoLeases: the store was built without a Lease client.
var ErrNoLeases = errors.New("store: error reports need an etcd lease client")

func (s *Store) reportLease(ctx context.Context, sh *shard, ttl time.Duration) (clientv3.LeaseID, error) {
	if sh.lease == nil {
		return 0, ErrNoLeases
	}
	l := &sh.reports
	l.mu.Lock()
	defer l.mu.Unlock()
	now := s.now()
	window := reportLeaseWindow(ttl)
	if l.id != 0 && l.ttl == ttl && now.Sub(l.granted) < window {
		return l.id, nil
	}
	resp, err := sh.lease.Grant(ctx, int64((ttl+window+time.Second-1)/time.Second))
	if err != nil {
		return 0, etcdErr("grant error-report lease", err)
	}
	l.id, l.granted, l.ttl = resp.ID, now, ttl
	return l.id, nil
}

// reportLeaseWindow is how long one error-report lease takes new reports.
func reportLeaseWindow(ttl time.Duration) time.Duration {
	return max(min(time.Minute, ttl/10), time.Second)
}

// AddErrorReport stores a report under the instance for ttl.
func (s *Store) AddErrorReport(ctx context.Context, id string, r ErrorReport, ttl time.Duration) (*ErrorReport, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	now := s.nowUTC()
	var rnd [6]byte
	randomBytes(rnd[:])
	// Time-ordered ids: listing returns the oldest first.
	r.ID = fmt.Sprintf("%013d-%s", now.UnixMilli(), hex.EncodeToString(rnd[:]))
	r.ReceivedAt = now
	val, err := encode("error report", r)
	if err != nil {
		return nil, err
	}
	err = s.onTenant(ctx, id, func(t tenant) error {
		lease, err := s.reportLease(ctx, t.sh, ttl)
		if err != nil {
			return err
		}
		key := t.d.report(r.ID)
		resp, err := t.sh.kv.Txn(ctx).If(markerExists(t.d)).
			Then(clientv3.OpPut(key, s.vals.seal(key, []byte(val)), clientv3.WithLease(lease))).Commit()
		if err != nil {
			return etcdErr("put error report", err)
		}
		if !resp.Succeeded {
			return errFenced
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// ErrorReports lists an instance's reports, oldest first, a page at a time.
func (s *Store) ErrorReports(ctx context.Context, id string, limit int, cursor string) ([]ErrorReport, string, error) {
	if limit == 0 {
		limit = 100
	}
	if limit < 1 || limit > 1000 {
		return nil, "", invalid("limit", "must be between 1 and 1000")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	t, err := s.tenant(ctx, id)
	if err != nil {
		return nil, "", err
	}
	p := t.d.reports()
	from := p
	if cursor != "" {
		rest, err := decodeCursor(p, cursor, 256)
		if err != nil {
			return nil, "", err
		}
		from = p + rest + "\x00"
	}
	resp, err := t.sh.kv.Get(ctx, from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(p)), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return nil, "", etcdErr("list error reports", err)
	}
	out := make([]ErrorReport, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		v, err := s.vals.open(kv.Key, kv.Value, "error report", id)
		if err != nil {
			return nil, "", err
		}
		var r ErrorReport
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, "", corrupt("error report", id)
		}
		out = append(out, r)
	}
	next := ""
	if resp.More && len(resp.Kvs) > 0 {
		next = encodeCursor(p, resp.Kvs[len(resp.Kvs)-1].Key[len(p):])
	}
	return out, next, nil
}
