package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// JiraRef is all the relay keeps of a Jira issue: its id, key and project id.
type JiraRef struct {
	ID        string `json:"id"`
	Key       string `json:"key"`
	ProjectID string `json:"projectId,omitempty"`
}

// Mapping links one e-mail of one user to one Jira issue. Its identity is
// (MailID, UserID, Jira.ID).
type Mapping struct {
	ConversationID string    `json:"conversationId,omitempty"`
	MailID         string    `json:"mailId"`
	UserID         string    `json:"userId"`
	App            string    `json:"app,omitempty"`
	Jira           JiraRef   `json:"jira"`
	CreatedAt      time.Time `json:"createdAt"`
}

// Lookups a mapping query may use.
const (
	ByConversation = "conversationId"
	ByMail         = "mailId"
	ByIssueID      = "issueId"
	ByIssueKey     = "issueKey"
)

// MappingQuery selects mappings by one field, optionally of one user, a page
// at a time.
type MappingQuery struct {
	By     string // one of ByConversation, ByMail, ByIssueID, ByIssueKey
	Value  string
	UserID string // optional
	Limit  int    // 1..1000; default 100
	Cursor string // from the previous page's Next
}

// MaxMappingsPage is the largest page a query may ask for.
const MaxMappingsPage = 1000

// ErrBadCursor: a cursor that no query of this relay produced.
var ErrBadCursor = invalid("cursor", "is not a cursor this relay gave out")

// ValidateMapping checks a mapping as the API receives it.
func ValidateMapping(m *Mapping) error {
	if m.ConversationID != "" && !ValidOpaqueID(m.ConversationID) {
		return invalid("conversationId", "must be 1 to 1024 bytes of printable UTF-8")
	}
	if !ValidOpaqueID(m.MailID) {
		return invalid("mailId", "is required: 1 to 1024 bytes of printable UTF-8")
	}
	if !ValidOpaqueID(m.UserID) {
		return invalid("userId", "is required: 1 to 1024 bytes of printable UTF-8")
	}
	if len(m.App) > 64 || (m.App != "" && !ValidOpaqueID(m.App)) {
		return invalid("app", "must be at most 64 printable characters")
	}
	if !ValidNumericID(m.Jira.ID) {
		return invalid("jira.id", "is required: Jira's numeric issue id")
	}
	if !ValidIssueKey(m.Jira.Key) {
		return invalid("jira.key", "is required: an issue key like ABC-123")
	}
	if m.Jira.ProjectID != "" && !ValidNumericID(m.Jira.ProjectID) {
		return invalid("jira.projectId", "must be Jira's numeric project id")
	}
	return nil
}

func sameLink(a, b *Mapping) bool {
	return a.ConversationID == b.ConversationID && a.App == b.App && a.Jira == b.Jira
}

// sameIdentity: a and b are the same link (mail, user, issue).
func sameIdentity(a, b *Mapping) bool {
	return a.MailID == b.MailID && a.UserID == b.UserID && a.Jira.ID == b.Jira.ID
}

// ErrTokenCollision: a mapping's key is held by a mapping of other ids whose
// tokens are the same (one chance in 2^72 per pair; or a record edited by
// hand). Nothing is written.
var ErrTokenCollision = fmt.Errorf("another mapping holds this mapping's key: %w", ErrExists)

// LinkMapping stores a mapping and its index entries in one transaction.
// created is false when the same mail, issue and user were linked already;
// if the conversation id, app, key or project changed since (a reply's
// subject was edited, an issue moved), the record and its index entries are
// updated in place. Under a retention (Retention), the mapping's keys are
// attached to the lease of the day it expires, and linking it again renews
// it.
func (s *Store) LinkMapping(ctx context.Context, id string, m Mapping) (*Mapping, bool, error) {
	if err := ValidateMapping(&m); err != nil {
		return nil, false, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	m.CreatedAt = s.nowUTC()
	var out *Mapping
	var created bool
	err := s.onTenant(ctx, id, func(t tenant) (err error) {
		out, created, err = s.linkMapping(ctx, t, m)
		return err
	})
	return out, created, err
}

func (s *Store) linkMapping(ctx context.Context, t tenant, m Mapping) (*Mapping, bool, error) {
	in, d, kv, id := t.in, t.d, t.sh.kv, t.in.ID
	lease, err := s.mappingLease(ctx, t)
	if err != nil {
		return nil, false, err
	}
	key := d.mapping(d.refOf(&m))
	if err := s.quotas.checkMappings(ctx, t); err != nil {
		// At the quota a mapping held already may still be linked again.
		resp, gerr := kv.Get(ctx, key, clientv3.WithCountOnly())
		if gerr != nil {
			return nil, false, etcdErr("link mapping", gerr)
		}
		if resp.Count == 0 {
			return nil, false, err
		}
	}
	// A write refused because its lease is gone (revoked by hand, an
	// older snapshot restored) is tried again on a new one, twice at most.
	renewals := 0
	renew := func(err error) (bool, error) {
		if lease == 0 || !leaseGone(err) || renewals == 2 {
			return false, nil
		}
		renewals++
		t.sh.forgetLease(lease)
		lease, err = s.mappingLease(ctx, t)
		return err == nil, err
	}
	for {
		resp, err := kv.Txn(ctx).
			If(markerExists(d), clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(s.vals.mappingPuts(d, &m, lease)...).
			Else(clientv3.OpGet(d.tenant(), clientv3.WithCountOnly()), clientv3.OpGet(key)).Commit()
		if err != nil {
			if again, rerr := renew(err); again || rerr != nil {
				if rerr != nil {
					return nil, false, rerr
				}
				continue
			}
			return nil, false, etcdErr("link mapping", err)
		}
		if resp.Succeeded {
			s.quotas.linked(in.ID)
			return &m, true, nil
		}
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return nil, false, errFenced
		}
		kvs := resp.Responses[1].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // unlinked meanwhile: create again
		}
		old, err := s.vals.decodeMapping(id, kvs[0])
		if err != nil {
			return nil, false, err
		}
		if !sameIdentity(&old, &m) {
			return nil, false, fmt.Errorf("store: link mapping: %w", ErrTokenCollision)
		}
		if sameLink(&old, &m) && clientv3.LeaseID(kvs[0].Lease) == lease {
			return &old, false, nil
		}
		upd := m
		upd.CreatedAt = old.CreatedAt
		ok, err := s.replaceMapping(ctx, kv, d, &old, &upd, kvs[0].ModRevision, lease)
		if errors.Is(err, errFenced) {
			return nil, false, err
		}
		if err != nil {
			if again, rerr := renew(err); again || rerr != nil {
				if rerr != nil {
					return nil, false, rerr
				}
				continue
			}
			return nil, false, etcdErr("update mapping", err)
		}
		if ok {
			return &upd, false, nil
		}
	}
}

// mappingPuts writes m's record (sealed when a key file is given) and
// index entries (keys only), on lease when it is not 0.
func (v values) mappingPuts(d data, m *Mapping, lease clientv3.LeaseID) []clientv3.Op {
	b, _ := json.Marshal(m) // a Mapping always encodes: strings and a valid time
	var opts []clientv3.OpOption
	if lease != 0 {
		opts = []clientv3.OpOption{clientv3.WithLease(lease)}
	}
	ks := d.mappingKeys(m)
	ops := make([]clientv3.Op, 0, len(ks))
	ops = append(ops, clientv3.OpPut(ks[0], v.seal(ks[0], b), opts...))
	for _, k := range ks[1:] {
		ops = append(ops, clientv3.OpPut(k, "", opts...))
	}
	return ops
}

// replaceMapping swaps old for upd (same identity) if the record is still at
// rev: stale index entries go, new ones come, on lease, in one transaction.
func (s *Store) replaceMapping(ctx context.Context, kv clientv3.KV, d data, old, upd *Mapping, rev int64, lease clientv3.LeaseID) (bool, error) {
	ops := s.vals.mappingPuts(d, upd, lease)
	keep := map[string]bool{}
	for _, k := range d.mappingKeys(upd) {
		keep[k] = true
	}
	for _, k := range d.mappingKeys(old) {
		if !keep[k] {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	resp, err := kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(d.mapping(d.refOf(upd))), "=", rev), markerExists(d)).
		Then(ops...).Else(clientv3.OpGet(d.tenant(), clientv3.WithCountOnly())).Commit()
	if err != nil {
		return false, err // the caller wraps it, after a look for a lease gone
	}
	if !resp.Succeeded && resp.Responses[0].GetResponseRange().Count == 0 {
		return false, errFenced // a move fenced the shard since the read
	}
	return resp.Succeeded, nil
}

// mappingQuery is a query resolved to keys: the prefix its entries share,
// the index kind and the indexed value as it appears in keys, and the test
// a record must pass (a token is shared by other ids once in 2^72).
type mappingQuery struct {
	prefix string
	kind   string
	value  string
	match  func(*Mapping) bool
}

// resolve checks a query and turns it into keys.
func (d data) resolve(q *MappingQuery) (mappingQuery, error) {
	if q.By != ByConversation && q.By != ByMail && q.By != ByIssueID && q.By != ByIssueKey {
		return mappingQuery{}, invalid("query", "give one of conversationId, mailId, issueId, issueKey")
	}
	if !ValidOpaqueID(q.Value) {
		return mappingQuery{}, invalid(q.By, "must be 1 to 1024 bytes of printable UTF-8")
	}
	if q.UserID != "" && !ValidOpaqueID(q.UserID) {
		return mappingQuery{}, invalid("userId", "must be 1 to 1024 bytes of printable UTF-8")
	}
	v, user := q.Value, q.UserID
	var mq mappingQuery
	switch q.By {
	case ByConversation:
		mq = mappingQuery{kind: idxConversation, value: d.token(v), match: func(m *Mapping) bool { return m.ConversationID == v }}
	case ByMail:
		mq = mappingQuery{kind: idxMail, value: d.token(v), match: func(m *Mapping) bool { return m.MailID == v }}
	case ByIssueID:
		if !ValidNumericID(v) {
			return mappingQuery{}, invalid("issueId", "must be Jira's numeric issue id")
		}
		mq = mappingQuery{kind: idxIssue, value: EscapeSegment(v), match: func(m *Mapping) bool { return m.Jira.ID == v }}
	case ByIssueKey:
		if !ValidIssueKey(v) {
			return mappingQuery{}, invalid("issueKey", "must be an issue key like ABC-123")
		}
		mq = mappingQuery{kind: idxIssueKey, value: EscapeSegment(v), match: func(m *Mapping) bool { return m.Jira.Key == v }}
	}
	mq.prefix = d.p + mq.kind + mq.value + "/"
	if user != "" {
		mq.prefix += d.token(user) + "/"
		match := mq.match
		mq.match = func(m *Mapping) bool { return m.UserID == user && match(m) }
	}
	return mq, nil
}

// Mappings answers a lookup, one page at a time; next is empty on the last
// page. A lookup by mail reads the records themselves; the others read keys
// of an index, then the records they name at the same revision.
func (s *Store) Mappings(ctx context.Context, id string, q MappingQuery) ([]Mapping, string, error) {
	if q.Limit == 0 {
		q.Limit = 100
	}
	if q.Limit < 1 || q.Limit > MaxMappingsPage {
		return nil, "", invalid("limit", "must be between 1 and 1000")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	t, err := s.tenant(ctx, id)
	if err != nil {
		return nil, "", err
	}
	d, kv := t.d, t.sh.kv
	mq, err := d.resolve(&q)
	if err != nil {
		return nil, "", err
	}
	p := mq.prefix
	from := p
	if q.Cursor != "" {
		rest, err := decodeCursor(p, q.Cursor, 8<<10)
		if err != nil {
			return nil, "", err
		}
		from = p + rest + "\x00"
	}
	opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(p)), clientv3.WithLimit(int64(q.Limit))}
	if mq.kind != idxMail {
		opts = append(opts, clientv3.WithKeysOnly())
	}
	resp, err := kv.Get(ctx, from, opts...)
	if err != nil {
		return nil, "", etcdErr("list mappings", err)
	}
	var sms []storedMapping
	if mq.kind == idxMail {
		sms, err = s.vals.decodeMappings(id, resp.Kvs)
	} else {
		sms, err = s.recordsOf(ctx, kv, id, d, mq.kind, mq.value, resp.Kvs, resp.Header.Revision)
	}
	if err != nil {
		return nil, "", err
	}
	out := make([]Mapping, 0, len(sms))
	for i := range sms {
		if mq.match(&sms[i].m) {
			out = append(out, sms[i].m)
		}
	}
	next := ""
	if resp.More && len(resp.Kvs) > 0 {
		last := resp.Kvs[len(resp.Kvs)-1].Key
		next = encodeCursor(p, last[len(p):])
	}
	return out, next, nil
}

// maxTxnOps is how many operations one transaction carries: etcd's default
// --max-txn-ops.
const maxTxnOps = 128

// recordsOf reads the mapping records that index keys name, at revision
// rev (the index's), in transactions of gets sent together: one round trip.
// An entry whose record is gone (an index entry without its record cannot
// be written, but may be left by hand) is skipped.
func (s *Store) recordsOf(ctx context.Context, kv clientv3.KV, id string, d data, kind, value string, kvs []*mvccpb.KeyValue, rev int64) ([]storedMapping, error) {
	base := len(d.p) + len(kind) + len(value) + 1
	gets := make([]clientv3.Op, 0, len(kvs))
	for _, e := range kvs {
		r, ok := refFromIndex(kind, value, string(e.Key[base:]))
		if !ok {
			return nil, corrupt("mapping index entry", id)
		}
		gets = append(gets, clientv3.OpGet(d.mapping(r), clientv3.WithRev(rev)))
	}
	chunks := (len(gets) + maxTxnOps - 1) / maxTxnOps
	results := make([][]*mvccpb.KeyValue, chunks)
	errs := make([]error, chunks)
	var wg sync.WaitGroup
	for c := range chunks {
		wg.Go(func() {
			ops := gets[c*maxTxnOps : min((c+1)*maxTxnOps, len(gets))]
			resp, err := kv.Txn(ctx).Then(ops...).Commit()
			if err != nil {
				errs[c] = etcdErr("read mappings", err)
				return
			}
			for _, r := range resp.Responses {
				results[c] = append(results[c], r.GetResponseRange().Kvs...)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var out []storedMapping
	for _, kvs := range results {
		sms, err := s.vals.decodeMappings(id, kvs)
		if err != nil {
			return nil, err
		}
		out = append(out, sms...)
	}
	return out, nil
}

// decodeMapping opens and decodes a mapping record of instance id; one
// that does not decode → ErrCorrupt.
func (v values) decodeMapping(id string, kv *mvccpb.KeyValue) (Mapping, error) {
	b, err := v.open(kv.Key, kv.Value, "mapping", id)
	if err != nil {
		return Mapping{}, err
	}
	return decodeMappingJSON(id, b)
}

// decodeMappingJSON decodes a mapping record's plaintext.
func decodeMappingJSON(id string, b []byte) (Mapping, error) {
	var m Mapping
	if err := json.Unmarshal(b, &m); err != nil {
		return Mapping{}, corrupt("mapping", id)
	}
	return m, nil
}

func (v values) decodeMappings(id string, kvs []*mvccpb.KeyValue) ([]storedMapping, error) {
	out := make([]storedMapping, 0, len(kvs))
	for _, kv := range kvs {
		m, err := v.decodeMapping(id, kv)
		if err != nil {
			return nil, err
		}
		out = append(out, storedMapping{m: m, rev: kv.ModRevision})
	}
	return out, nil
}

// storedMapping is a mapping record as read, with its ModRevision.
type storedMapping struct {
	m   Mapping
	rev int64
}

// allMappings reads every mapping an index prefix (kind + value + "/")
// names, in pages of 500 keys.
func (s *Store) allMappings(ctx context.Context, t tenant, kind, value string) ([]storedMapping, error) {
	id, d, kv := t.in.ID, t.d, t.sh.kv
	p := d.p + kind + value + "/"
	var out []storedMapping
	from, end := p, clientv3.GetPrefixRangeEnd(p)
	for {
		cctx, cancel := s.ctx(ctx)
		resp, err := kv.Get(cctx, from, clientv3.WithRange(end), clientv3.WithLimit(500), clientv3.WithKeysOnly())
		if err != nil {
			cancel()
			return nil, etcdErr("list mappings", err)
		}
		sms, err := s.recordsOf(cctx, kv, id, d, kind, value, resp.Kvs, resp.Header.Revision)
		cancel()
		if err != nil {
			return nil, err
		}
		out = append(out, sms...)
		if !resp.More || len(resp.Kvs) == 0 {
			return out, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// mappingsBatch bounds the mappings deleted per transaction: five keys each
// stay within etcd's 128 operations.
const mappingsBatch = 25

// deleteMappings removes whole mappings (record and index entries),
// mappingsBatch per transaction, and says how many records it removed.
// Each delete is guarded by the record's ModRevision as read: when a
// concurrent LinkMapping changed a mapping meanwhile (moving its index
// entries) or removed it, the transaction fails, returns the records as
// they are now (Else), and the batch is tried again with the index keys
// computed from those. A mapping found gone is tried again with its record
// required absent, so index entries left of it go too.
func (s *Store) deleteMappings(ctx context.Context, t tenant, ms []storedMapping) (int, error) {
	id, d, kv := t.in.ID, t.d, t.sh.kv
	n := 0
	for start := 0; start < len(ms); start += mappingsBatch {
		batch := slices.Clone(ms[start:min(start+mappingsBatch, len(ms))])
		for {
			cmps := make([]clientv3.Cmp, 0, len(batch)+1)
			gets := make([]clientv3.Op, 0, len(batch)+1)
			var ops []clientv3.Op
			var records []int // positions of the records in ops
			for i := range batch {
				ks := d.mappingKeys(&batch[i].m)
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(ks[0]), "=", batch[i].rev))
				gets = append(gets, clientv3.OpGet(ks[0]))
				records = append(records, len(ops))
				for _, k := range ks {
					ops = append(ops, clientv3.OpDelete(k))
				}
			}
			// A delete on a fenced shard would be lost with a move.
			cmps = append(cmps, markerExists(d))
			gets = append(gets, clientv3.OpGet(d.tenant(), clientv3.WithCountOnly()))
			cctx, cancel := s.ctx(ctx)
			resp, err := kv.Txn(cctx).If(cmps...).Then(ops...).Else(gets...).Commit()
			cancel()
			if err != nil {
				return n, etcdErr("delete mappings", err)
			}
			if !resp.Succeeded && resp.Responses[len(resp.Responses)-1].GetResponseRange().Count == 0 {
				return n, errFenced
			}
			if resp.Succeeded {
				for _, i := range records {
					if resp.Responses[i].GetResponseDeleteRange().Deleted > 0 {
						n++
					}
				}
				break
			}
			for i, r := range resp.Responses[:len(batch)] {
				kvs := r.GetResponseRange().Kvs
				if len(kvs) == 0 {
					batch[i].rev = 0
					continue
				}
				m, err := s.vals.decodeMapping(id, kvs[0])
				if err != nil {
					return n, err
				}
				batch[i] = storedMapping{m: m, rev: kvs[0].ModRevision}
			}
		}
	}
	if n > 0 {
		s.quotas.unlinked(id, n)
	}
	return n, nil
}

// UnlinkMappings removes the links between a mail and an issue: of one user
// when userID is set, else of every user. None → ErrNotFound. A link changed
// meanwhile (new conversation id or issue key) is removed as it is now.
func (s *Store) UnlinkMappings(ctx context.Context, id, mailID, issueID, userID string) (int, error) {
	if !ValidOpaqueID(mailID) {
		return 0, invalid("mailId", "is required: 1 to 1024 bytes of printable UTF-8")
	}
	if !ValidNumericID(issueID) {
		return 0, invalid("issueId", "is required: Jira's numeric issue id")
	}
	if userID != "" && !ValidOpaqueID(userID) {
		return 0, invalid("userId", "must be 1 to 1024 bytes of printable UTF-8")
	}
	var n int
	err := s.onTenant(ctx, id, func(t tenant) (err error) {
		n, err = s.unlinkMappings(ctx, t, mailID, issueID, userID)
		return err
	})
	return n, err
}

func (s *Store) unlinkMappings(ctx context.Context, t tenant, mailID, issueID, userID string) (int, error) {
	id, d, kv := t.in.ID, t.d, t.sh.kv
	p := d.p + idxMail + t.d.token(mailID) + "/"
	if userID != "" {
		p += t.d.token(userID) + "/"
	}
	var ms []storedMapping
	from, end := p, clientv3.GetPrefixRangeEnd(p)
	for {
		cctx, cancel := s.ctx(ctx)
		resp, err := kv.Get(cctx, from, clientv3.WithRange(end), clientv3.WithLimit(500))
		cancel()
		if err != nil {
			return 0, etcdErr("list mappings", err)
		}
		sms, err := s.vals.decodeMappings(id, resp.Kvs)
		if err != nil {
			return 0, err
		}
		for _, sm := range sms {
			if sm.m.MailID == mailID && sm.m.Jira.ID == issueID && (userID == "" || sm.m.UserID == userID) {
				ms = append(ms, sm)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	if len(ms) == 0 {
		return 0, fmt.Errorf("store: mapping: %w", ErrNotFound)
	}
	n, err := s.deleteMappings(ctx, t, ms)
	if err != nil {
		return n, err
	}
	if n == 0 {
		return 0, fmt.Errorf("store: mapping: %w", ErrNotFound)
	}
	return n, nil
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
