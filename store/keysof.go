package store

import (
	"context"
	"fmt"
)

// IDKey is where one id of a tenant stands in etcd, for operators: a key,
// or a prefix of keys, on the cluster named Cluster.
type IDKey struct {
	Key     string
	Prefix  bool   // Key is a prefix: etcdctl get --prefix
	What    string // what is there, in words
	Cluster string // DirectoryShard or a shard's name
}

// The kinds of id KeysOf takes.
const (
	IDUser         = "user"
	IDConversation = "conversation"
	IDMail         = "mail"
)

// KeysOf returns where an id of the instance's tenant stands in etcd: a
// user's record and the index of its mappings, the index of a
// conversation's mappings, or the records of an e-mail's mappings. The
// keys are what the relay itself builds (the ids' tokens, docs/key-layout.md).
func (s *Store) KeysOf(ctx context.Context, instanceID, kind, id string) ([]IDKey, error) {
	if !ValidOpaqueID(id) {
		return nil, invalid(kind, "must be 1 to 1024 bytes of printable UTF-8")
	}
	in, err := s.Instance(ctx, instanceID)
	if err != nil {
		return nil, err
	}
	if in.DataID == "" {
		return nil, fmt.Errorf("store: instance %s has no data id (an older layout): %w", instanceID, ErrNotFound)
	}
	t, err := s.tenantOf(in)
	if err != nil {
		return nil, err
	}
	d, cluster := t.d, t.sh.name
	tok := d.token(id)
	switch kind {
	case IDUser:
		return []IDKey{
			{Key: d.user(id), What: "the user's record (name, e-mail)", Cluster: cluster},
			{Key: d.p + idxUser + tok + "/", Prefix: true, What: "the user's mappings (index keys, no values)", Cluster: cluster},
		}, nil
	case IDConversation:
		return []IDKey{{Key: d.p + idxConversation + tok + "/", Prefix: true, What: "the conversation's mappings (index keys, no values)", Cluster: cluster}}, nil
	case IDMail:
		return []IDKey{{Key: d.p + idxMail + tok + "/", Prefix: true, What: "the e-mail's mapping records", Cluster: cluster}}, nil
	}
	return nil, invalid("kind", "must be user, conversation or mail")
}
