package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

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

// LinkMapping stores a mapping and its index entries in one transaction.
// created is false when the same mail, issue and user were linked already;
// if the conversation id, app, key or project changed since (a reply's
// subject was edited, an issue moved), the record and its index entries are
// updated in place.
func (s *Store) LinkMapping(ctx context.Context, id string, m Mapping) (*Mapping, bool, error) {
	if err := ValidateMapping(&m); err != nil {
		return nil, false, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	m.CreatedAt = s.nowUTC()
	instKey, key := s.k.instance(id), s.k.mapping(id, &m)
	val, err := encode("mapping", m)
	if err != nil {
		return nil, false, err
	}
	var puts []clientv3.Op
	for _, k := range s.k.mappingKeys(id, &m) {
		puts = append(puts, clientv3.OpPut(k, val))
	}
	for {
		resp, err := s.kv.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(instKey), ">", 0),
				clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
			Then(puts...).
			Else(clientv3.OpGet(instKey, clientv3.WithCountOnly()), clientv3.OpGet(key)).Commit()
		if err != nil {
			return nil, false, etcdErr("link mapping", err)
		}
		if resp.Succeeded {
			return &m, true, nil
		}
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return nil, false, fmt.Errorf("store: instance %s: %w", id, ErrNotFound)
		}
		kvs := resp.Responses[1].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // unlinked meanwhile: create again
		}
		old, err := decodeMapping(id, kvs[0].Value)
		if err != nil {
			return nil, false, err
		}
		if sameLink(&old, &m) {
			return &old, false, nil
		}
		upd := m
		upd.CreatedAt = old.CreatedAt
		ok, err := s.replaceMapping(ctx, id, &old, &upd, kvs[0].ModRevision)
		if err != nil {
			return nil, false, err
		}
		if ok {
			return &upd, false, nil
		}
	}
}

// replaceMapping swaps old for upd (same identity) if the primary record is
// still at rev: stale index entries go, new ones come, in one transaction.
func (s *Store) replaceMapping(ctx context.Context, id string, old, upd *Mapping, rev int64) (bool, error) {
	val, err := encode("mapping", upd)
	if err != nil {
		return false, err
	}
	newKeys := s.k.mappingKeys(id, upd)
	keep := map[string]bool{}
	var ops []clientv3.Op
	for _, k := range newKeys {
		keep[k] = true
		ops = append(ops, clientv3.OpPut(k, val))
	}
	for _, k := range s.k.mappingKeys(id, old) {
		if !keep[k] {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	resp, err := s.kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(newKeys[0]), "=", rev)).
		Then(ops...).Commit()
	if err != nil {
		return false, etcdErr("update mapping", err)
	}
	return resp.Succeeded, nil
}

// queryPrefix is the key prefix that holds the mappings a query selects.
func (s *Store) queryPrefix(id string, q *MappingQuery) (string, error) {
	var p string
	switch q.By {
	case ByConversation:
		p = s.k.index(id, "conversation", q.Value)
	case ByMail:
		p = s.k.mappingsByMail(id, q.Value)
	case ByIssueID:
		if !ValidNumericID(q.Value) {
			return "", invalid("issueId", "must be Jira's numeric issue id")
		}
		p = s.k.index(id, "issue", q.Value)
	case ByIssueKey:
		if !ValidIssueKey(q.Value) {
			return "", invalid("issueKey", "must be an issue key like ABC-123")
		}
		p = s.k.index(id, "issuekey", q.Value)
	default:
		return "", invalid("query", "give one of conversationId, mailId, issueId, issueKey")
	}
	if !ValidOpaqueID(q.Value) {
		return "", invalid(q.By, "must be 1 to 1024 bytes of printable UTF-8")
	}
	if q.UserID != "" {
		if !ValidOpaqueID(q.UserID) {
			return "", invalid("userId", "must be 1 to 1024 bytes of printable UTF-8")
		}
		p += EscapeSegment(q.UserID) + "/"
	}
	return p, nil
}

// Mappings answers a lookup, one page at a time; next is empty on the last page.
func (s *Store) Mappings(ctx context.Context, id string, q MappingQuery) ([]Mapping, string, error) {
	p, err := s.queryPrefix(id, &q)
	if err != nil {
		return nil, "", err
	}
	if q.Limit == 0 {
		q.Limit = 100
	}
	if q.Limit < 1 || q.Limit > MaxMappingsPage {
		return nil, "", invalid("limit", "must be between 1 and 1000")
	}
	from := p
	if q.Cursor != "" {
		rest, err := decodeCursor(p, q.Cursor, 8<<10)
		if err != nil {
			return nil, "", err
		}
		from = p + rest + "\x00"
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.kv.Get(ctx, from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(p)), clientv3.WithLimit(int64(q.Limit)))
	if err != nil {
		return nil, "", etcdErr("list mappings", err)
	}
	out := make([]Mapping, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		m, err := decodeMapping(id, kv.Value)
		if err != nil {
			return nil, "", err
		}
		out = append(out, m)
	}
	next := ""
	if resp.More && len(resp.Kvs) > 0 {
		last := resp.Kvs[len(resp.Kvs)-1].Key
		next = encodeCursor(p, last[len(p):])
	}
	return out, next, nil
}

// decodeMapping decodes a mapping record (primary or index copy) of
// instance id; one that does not decode → ErrCorrupt.
func decodeMapping(id string, v []byte) (Mapping, error) {
	var m Mapping
	if err := json.Unmarshal(v, &m); err != nil {
		return Mapping{}, corrupt("mapping", id)
	}
	return m, nil
}

// storedMapping is a mapping as read, with the ModRevision of the key it
// was read from. Every key of a mapping is written in the same transaction,
// so an index copy's revision is its primary record's while the mapping is
// unchanged.
type storedMapping struct {
	m   Mapping
	rev int64
}

// allMappings reads every mapping under a prefix, in pages.
func (s *Store) allMappings(ctx context.Context, id, p string) ([]storedMapping, error) {
	var out []storedMapping
	from, end := p, clientv3.GetPrefixRangeEnd(p)
	for {
		cctx, cancel := s.ctx(ctx)
		resp, err := s.kv.Get(cctx, from, clientv3.WithRange(end), clientv3.WithLimit(500))
		cancel()
		if err != nil {
			return nil, etcdErr("list mappings", err)
		}
		for _, kv := range resp.Kvs {
			m, err := decodeMapping(id, kv.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, storedMapping{m: m, rev: kv.ModRevision})
		}
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
// mappingsBatch per transaction, and says how many primary records it
// removed. Each delete is guarded by the primary record's ModRevision as
// read: when a concurrent LinkMapping changed a mapping meanwhile (moving
// its index entries) or removed it, the transaction fails, returns the
// primary records as they are now (Else), and the batch is tried again with
// the index keys computed from those. A mapping found gone is tried again
// with its primary record required absent, so index entries left of it go
// too.
func (s *Store) deleteMappings(ctx context.Context, id string, ms []storedMapping) (int, error) {
	n := 0
	for start := 0; start < len(ms); start += mappingsBatch {
		batch := slices.Clone(ms[start:min(start+mappingsBatch, len(ms))])
		for {
			cmps := make([]clientv3.Cmp, 0, len(batch))
			gets := make([]clientv3.Op, 0, len(batch))
			var ops []clientv3.Op
			var primaries []int // positions of the primary records in ops
			for i := range batch {
				ks := s.k.mappingKeys(id, &batch[i].m)
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(ks[0]), "=", batch[i].rev))
				gets = append(gets, clientv3.OpGet(ks[0]))
				primaries = append(primaries, len(ops))
				for _, k := range ks {
					ops = append(ops, clientv3.OpDelete(k))
				}
			}
			cctx, cancel := s.ctx(ctx)
			resp, err := s.kv.Txn(cctx).If(cmps...).Then(ops...).Else(gets...).Commit()
			cancel()
			if err != nil {
				return n, etcdErr("delete mappings", err)
			}
			if resp.Succeeded {
				for _, i := range primaries {
					if resp.Responses[i].GetResponseDeleteRange().Deleted > 0 {
						n++
					}
				}
				break
			}
			for i, r := range resp.Responses {
				kvs := r.GetResponseRange().Kvs
				if len(kvs) == 0 {
					batch[i].rev = 0
					continue
				}
				m, err := decodeMapping(id, kvs[0].Value)
				if err != nil {
					return n, err
				}
				batch[i] = storedMapping{m: m, rev: kvs[0].ModRevision}
			}
		}
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
	p := s.k.mappingsByMail(id, mailID)
	if userID != "" {
		p += EscapeSegment(userID) + "/"
	}
	all, err := s.allMappings(ctx, id, p)
	if err != nil {
		return 0, err
	}
	var ms []storedMapping
	for _, sm := range all {
		if sm.m.Jira.ID == issueID {
			ms = append(ms, sm)
		}
	}
	if len(ms) == 0 {
		return 0, fmt.Errorf("store: mapping: %w", ErrNotFound)
	}
	n, err := s.deleteMappings(ctx, id, ms)
	if err != nil {
		return n, err
	}
	if n == 0 {
		return 0, fmt.Errorf("store: mapping: %w", ErrNotFound)
	}
	return n, nil
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
