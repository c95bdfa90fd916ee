// Package layoutv1 is the store's old key layout for mappings (layout 1, the
// code of commit 143ce13), kept frozen to measure the current layout
// against: `go run ./cmd/bench --scenario capacity` writes the same mappings
// both ways and compares keys, bytes, etcd database in use and rates. It is
// never used by the relay, which reads layout 1 only to migrate it
// (store/migrate_v1.go).
//
// In layout 1 each mapping is five keys under P instances/<instanceId>/,
// every one holding a full JSON copy of the mapping:
//
//	mappings/<mail>/<user>/<issueId>                    the primary record
//	index/conversation/<conv>/<user>/<mail>/<issueId>   (only with a conversation id)
//	index/issue/<issueId>/<user>/<mail>
//	index/issuekey/<key>/<user>/<mail>/<issueId>
//	index/user/<user>/<mail>/<issueId>
//
// each segment escaped with store.EscapeSegment, all written in one
// transaction guarded by the instance record's existence and the primary
// record's absence. A lookup by conversation is one range read of the
// conversation index, with values.
package layoutv1

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// InstanceKey is the instance record's key: Link writes only while it
// exists.
func InstanceKey(prefix, instanceID string) string {
	return tenant(prefix, instanceID) + "instance"
}

func tenant(prefix, instanceID string) string { return prefix + "instances/" + instanceID + "/" }

func index(prefix, instanceID, kind, value string) string {
	return tenant(prefix, instanceID) + "index/" + kind + "/" + store.EscapeSegment(value) + "/"
}

// Keys lists every key that holds mapping m: the primary record first, then
// its index entries (the conversation entry only when m has a conversation
// id).
func Keys(prefix, instanceID string, m *store.Mapping) []string {
	user, mail, issue := store.EscapeSegment(m.UserID), store.EscapeSegment(m.MailID), store.EscapeSegment(m.Jira.ID)
	out := make([]string, 0, 5)
	out = append(out, tenant(prefix, instanceID)+"mappings/"+mail+"/"+user+"/"+issue)
	if m.ConversationID != "" {
		out = append(out, index(prefix, instanceID, "conversation", m.ConversationID)+user+"/"+mail+"/"+issue)
	}
	return append(out,
		index(prefix, instanceID, "issue", m.Jira.ID)+user+"/"+mail,
		index(prefix, instanceID, "issuekey", m.Jira.Key)+user+"/"+mail+"/"+issue,
		index(prefix, instanceID, "user", m.UserID)+mail+"/"+issue,
	)
}

func unavailable(op string, err error) error {
	return fmt.Errorf("layoutv1: %s: %w (%v)", op, store.ErrUnavailable, err)
}

func sameLink(a, b *store.Mapping) bool {
	return a.ConversationID == b.ConversationID && a.App == b.App && a.Jira == b.Jira
}

// Link stores m as layout 1 did: its five keys, each holding the mapping's
// JSON, in one transaction that requires the instance record
// (ModRevision > 0) and no primary record (ModRevision == 0). m.CreatedAt,
// when zero, is set to now (UTC, whole milliseconds), as the old store set
// it. A mapping linked already with the same conversation, app and issue is
// left as it is; one whose conversation, app or issue key changed is
// replaced in place (stale index entries deleted), only if its primary
// record is still as read. An unknown instance → store.ErrNotFound.
func Link(ctx context.Context, kv clientv3.KV, prefix, instanceID string, m store.Mapping) error {
	if err := store.ValidateMapping(&m); err != nil {
		return err
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC().Truncate(time.Millisecond)
	}
	val, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("layoutv1: encode mapping: %w", err)
	}
	ks := Keys(prefix, instanceID, &m)
	instKey, key := InstanceKey(prefix, instanceID), ks[0]
	puts := make([]clientv3.Op, 0, len(ks))
	for _, k := range ks {
		puts = append(puts, clientv3.OpPut(k, string(val)))
	}
	for {
		resp, err := kv.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(instKey), ">", 0),
				clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
			Then(puts...).
			Else(clientv3.OpGet(instKey, clientv3.WithCountOnly()), clientv3.OpGet(key)).Commit()
		if err != nil {
			return unavailable("link mapping", err)
		}
		if resp.Succeeded {
			return nil
		}
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return fmt.Errorf("layoutv1: instance %s: %w", instanceID, store.ErrNotFound)
		}
		kvs := resp.Responses[1].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // unlinked meanwhile: create again
		}
		var old store.Mapping
		if err := json.Unmarshal(kvs[0].Value, &old); err != nil {
			return fmt.Errorf("layoutv1: mapping of instance %s: %w", instanceID, store.ErrCorrupt)
		}
		if sameLink(&old, &m) {
			return nil
		}
		upd := m
		upd.CreatedAt = old.CreatedAt
		ok, err := replace(ctx, kv, prefix, instanceID, &old, &upd, kvs[0].ModRevision)
		if err != nil || ok {
			return err
		}
	}
}

// replace swaps old for upd (same identity) if the primary record is still
// at rev: stale index entries go, new ones come, in one transaction.
func replace(ctx context.Context, kv clientv3.KV, prefix, instanceID string, old, upd *store.Mapping, rev int64) (bool, error) {
	val, err := json.Marshal(upd)
	if err != nil {
		return false, fmt.Errorf("layoutv1: encode mapping: %w", err)
	}
	newKeys := Keys(prefix, instanceID, upd)
	keep := map[string]bool{}
	var ops []clientv3.Op
	for _, k := range newKeys {
		keep[k] = true
		ops = append(ops, clientv3.OpPut(k, string(val)))
	}
	for _, k := range Keys(prefix, instanceID, old) {
		if !keep[k] {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	resp, err := kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(newKeys[0]), "=", rev)).
		Then(ops...).Commit()
	if err != nil {
		return false, unavailable("update mapping", err)
	}
	return resp.Succeeded, nil
}

// ByConversation is layout 1's lookup by conversation, first page: one
// range read of index/conversation/<conv>/ with values, at most limit
// entries (0: 100; 1 to store.MaxMappingsPage), each decoded.
func ByConversation(ctx context.Context, kv clientv3.KV, prefix, instanceID, conv string, limit int) ([]store.Mapping, error) {
	if !store.ValidOpaqueID(conv) {
		return nil, &store.InvalidError{Field: store.ByConversation, Reason: "must be 1 to 1024 bytes of printable UTF-8"}
	}
	if limit == 0 {
		limit = 100
	}
	if limit < 1 || limit > store.MaxMappingsPage {
		return nil, &store.InvalidError{Field: "limit", Reason: "must be between 1 and 1000"}
	}
	p := index(prefix, instanceID, "conversation", conv)
	resp, err := kv.Get(ctx, p, clientv3.WithRange(clientv3.GetPrefixRangeEnd(p)), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return nil, unavailable("list mappings", err)
	}
	out := make([]store.Mapping, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var m store.Mapping
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			return nil, fmt.Errorf("layoutv1: mapping of instance %s: %w", instanceID, store.ErrCorrupt)
		}
		out = append(out, m)
	}
	return out, nil
}
