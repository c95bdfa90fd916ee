package store

import (
	"context"
	"encoding/json"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// User is what the relay keeps about an add-in user: a name and an e-mail
// address, nothing more.
type User struct {
	UserID    string    `json:"userId"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// UserExport is everything held about one user.
type UserExport struct {
	User     *User     `json:"user"`
	Mappings []Mapping `json:"mappings"`
}

func validName(n string) error {
	if strings.TrimSpace(n) == "" {
		return invalid("name", "is required")
	}
	if utf8.RuneCountInString(n) > 256 || !ValidOpaqueID(n) {
		return invalid("name", "must be at most 256 printable characters")
	}
	return nil
}

func validEmail(e string) error {
	if e == "" {
		return invalid("email", "is required")
	}
	if len(e) > 254 || !ValidOpaqueID(e) {
		return invalid("email", "is not an e-mail address")
	}
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || a.Name != "" {
		return invalid("email", "is not an e-mail address")
	}
	return nil
}

// PutUser creates or replaces a user of the instance; created says which.
func (s *Store) PutUser(ctx context.Context, id string, u User) (*User, bool, error) {
	if !ValidOpaqueID(u.UserID) {
		return nil, false, invalid("userId", "must be 1 to 1024 bytes of printable UTF-8")
	}
	if err := validName(u.Name); err != nil {
		return nil, false, err
	}
	if err := validEmail(u.Email); err != nil {
		return nil, false, err
	}
	u.UpdatedAt = s.nowUTC()
	val, err := encode("user", u)
	if err != nil {
		return nil, false, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var created bool
	err = s.onTenant(ctx, id, func(t tenant) error {
		key := t.d.user(u.UserID)
		cmps := []clientv3.Cmp{markerExists(t.d)}
		if s.quotas.usersFull(ctx, t) {
			// At the quota a user may still be changed, not added.
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), ">", 0))
		}
		resp, err := t.sh.kv.Txn(ctx).If(cmps...).
			Then(clientv3.OpPut(key, s.vals.seal(key, []byte(val)), clientv3.WithPrevKV())).
			Else(clientv3.OpGet(t.d.tenant(), clientv3.WithCountOnly())).Commit()
		if err != nil {
			return etcdErr("put user", err)
		}
		if !resp.Succeeded {
			if resp.Responses[0].GetResponseRange().Count == 0 {
				return errFenced
			}
			return s.quotas.usersExceeded()
		}
		prev := resp.Responses[0].GetResponsePut().PrevKv
		if prev != nil {
			if _, ok := s.otherUser(prev, id, u.UserID); ok {
				// Two user ids of one token: put the other user back.
				if _, err := t.sh.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Header.Revision)).
					Then(clientv3.OpPut(key, string(prev.Value))).Commit(); err != nil {
					return etcdErr("put user", err)
				}
				s.log.Error("store: two user ids of one token; the second was refused", "instance", id, "token", t.d.token(u.UserID))
				return fmt.Errorf("store: user: another user id of the instance has the same token: %w", ErrExists)
			}
		}
		created = prev == nil
		if created {
			s.quotas.userAdded(t.in.ID)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return &u, created, nil
}

// User returns one user of the instance.
func (s *Store) User(ctx context.Context, id, userID string) (*User, error) {
	if !ValidOpaqueID(userID) {
		return nil, invalid("userId", "must be 1 to 1024 bytes of printable UTF-8")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	t, err := s.tenant(ctx, id)
	if err != nil {
		return nil, err
	}
	resp, err := t.sh.kv.Get(ctx, t.d.user(userID))
	if err != nil {
		return nil, etcdErr("get user", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("store: user: %w", ErrNotFound)
	}
	v, err := s.vals.open(resp.Kvs[0].Key, resp.Kvs[0].Value, "user", id)
	if err != nil {
		return nil, err
	}
	u := new(User)
	if err := json.Unmarshal(v, u); err != nil {
		return nil, corrupt("user", id)
	}
	if u.UserID != userID {
		return nil, fmt.Errorf("store: user: %w", ErrNotFound) // another user id of the same token
	}
	return u, nil
}

// otherUser reports whether the user record kv belongs to a user id other
// than userID (two ids of one token), and which; a record that does not
// open or decode belongs to nobody.
func (s *Store) otherUser(kv *mvccpb.KeyValue, id, userID string) (string, bool) {
	v, err := s.vals.open(kv.Key, kv.Value, "user", id)
	if err != nil {
		return "", false
	}
	var u struct {
		UserID string `json:"userId"`
	}
	if json.Unmarshal(v, &u) != nil || u.UserID == userID {
		return "", false
	}
	return u.UserID, true
}

// ExportUser returns the user record and every mapping of the user.
func (s *Store) ExportUser(ctx context.Context, id, userID string) (*UserExport, error) {
	u, err := s.User(ctx, id, userID)
	if err != nil && !isNotFound(err) {
		return nil, err
	}
	t, err := s.tenant(ctx, id)
	if err != nil {
		return nil, err
	}
	sms, err := s.userMappings(ctx, t, userID)
	if err != nil {
		return nil, err
	}
	if u == nil && len(sms) == 0 {
		return nil, fmt.Errorf("store: user: %w", ErrNotFound)
	}
	ms := make([]Mapping, 0, len(sms))
	for _, sm := range sms {
		ms = append(ms, sm.m)
	}
	return &UserExport{User: u, Mappings: ms}, nil
}

// DeleteUser erases the user and every mapping of the user. Mappings go in
// batches (etcd allows 128 operations per transaction), each batch removing
// whole mappings with all their index entries; the user record goes last.
// Calling it again finishes an erase that was interrupted.
func (s *Store) DeleteUser(ctx context.Context, id, userID string) error {
	if !ValidOpaqueID(userID) {
		return invalid("userId", "must be 1 to 1024 bytes of printable UTF-8")
	}
	return s.onTenant(ctx, id, func(t tenant) error {
		ms, err := s.userMappings(ctx, t, userID)
		if err != nil {
			return err
		}
		deleted, err := s.deleteMappings(ctx, t, ms)
		if err != nil {
			return err
		}
		cctx, cancel := s.ctx(ctx)
		defer cancel()
		// The record goes only if it is this user's (not another user id
		// of the same token), as read; a write meanwhile makes it read
		// again.
		key := t.d.user(userID)
		for {
			cur, err := t.sh.kv.Get(cctx, key)
			if err != nil {
				return etcdErr("delete user", err)
			}
			var rev int64
			var ops []clientv3.Op
			if len(cur.Kvs) == 1 {
				rev = cur.Kvs[0].ModRevision
				if _, other := s.otherUser(cur.Kvs[0], id, userID); !other {
					ops = append(ops, clientv3.OpDelete(key))
				}
			}
			resp, err := t.sh.kv.Txn(cctx).If(markerExists(t.d), clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
				Then(ops...).Else(clientv3.OpGet(t.d.tenant(), clientv3.WithCountOnly())).Commit()
			if err != nil {
				return etcdErr("delete user", err)
			}
			if !resp.Succeeded {
				if resp.Responses[0].GetResponseRange().Count == 0 {
					return errFenced
				}
				continue // the record changed since it was read
			}
			if len(ops) > 0 {
				s.quotas.userRemoved(t.in.ID)
			} else if deleted == 0 {
				return fmt.Errorf("store: user: %w", ErrNotFound)
			}
			return nil
		}
	})
}

// userMappings reads every mapping of one user (through the user index),
// only the user's own: a token shared with another user id (one chance in
// 2^72) is skipped.
func (s *Store) userMappings(ctx context.Context, t tenant, userID string) ([]storedMapping, error) {
	all, err := s.allMappings(ctx, t, idxUser, t.d.token(userID))
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, sm := range all {
		if sm.m.UserID == userID {
			out = append(out, sm)
		}
	}
	return out, nil
}
