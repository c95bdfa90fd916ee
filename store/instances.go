package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const instanceIDLen = 26

// License is the add-in licence of an instance.
type License struct {
	Key       string    `json:"key"`
	ExpiresAt time.Time `json:"expiresAt"`
	Seats     int       `json:"seats"`
}

// Instance is one Jira Cloud site (tenant) as stored. The key hashes never
// leave the relay; the HTTP layer shows InstanceView.
type Instance struct {
	ID            string    `json:"id"`
	URL           string    `json:"url"`
	JiraVersion   string    `json:"jiraVersion"`
	AddinVersion  string    `json:"addinVersion"`
	License       *License  `json:"license,omitempty"`
	ErrorReports  bool      `json:"errorReports"`
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
	ClientKeyHash string    `json:"clientKeySha256"`
	AdminKeyHash  string    `json:"adminKeySha256"`

	// Revision is the etcd ModRevision the record was read at.
	Revision int64 `json:"-"`
}

// InstanceView is what the API shows of an instance.
type InstanceView struct {
	ID           string    `json:"id"`
	URL          string    `json:"url"`
	JiraVersion  string    `json:"jiraVersion"`
	AddinVersion string    `json:"addinVersion"`
	License      *License  `json:"license,omitempty"`
	ErrorReports bool      `json:"errorReports"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// View is the public part of the instance.
func (in *Instance) View() InstanceView {
	return InstanceView{
		ID: in.ID, URL: in.URL, JiraVersion: in.JiraVersion, AddinVersion: in.AddinVersion,
		License: in.License, ErrorReports: in.ErrorReports, CreatedAt: in.CreatedAt, UpdatedAt: in.UpdatedAt,
	}
}

// NewInstance is what registration takes. URL must already be normalised
// and checked against the allowed upstreams (the HTTP layer does that).
type NewInstance struct {
	URL          string
	JiraVersion  string
	AddinVersion string
	License      *License
}

// InstancePatch changes some fields of an instance; nil leaves a field as is.
type InstancePatch struct {
	JiraVersion  *string
	AddinVersion *string
	License      *License
	ErrorReports *bool
}

// Role is what a key entitles its holder to.
type Role int

// Roles, weakest first.
const (
	RoleNone Role = iota
	RoleClient
	RoleAdmin
)

// Registration is the answer to Register: the keys are shown exactly once.
type Registration struct {
	Instance  *Instance
	ClientKey string
	AdminKey  string
}

func validVersion(field, v string) error {
	if v == "" {
		return invalid(field, "is required")
	}
	if len(v) > 64 {
		return invalid(field, "is longer than 64 characters")
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '-' || c == '_' || c == '+') {
			return invalid(field, "may hold only letters, digits and . - _ +")
		}
	}
	return nil
}

func validLicense(l *License) error {
	if l == nil {
		return nil
	}
	if l.Key == "" || len(l.Key) > 1024 || !ValidOpaqueID(l.Key) {
		return invalid("license.key", "must be 1 to 1024 printable characters")
	}
	if l.ExpiresAt.IsZero() {
		return invalid("license.expiresAt", "is required (RFC 3339)")
	}
	if l.Seats < 0 || l.Seats > 10_000_000 {
		return invalid("license.seats", "must be between 0 and 10000000")
	}
	return nil
}

func newInstanceID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return lower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func newKey(kind string) string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return kind + base64.RawURLEncoding.EncodeToString(b[:])
}

// HashKey is the stored form of a client or admin key.
func HashKey(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:])
}

// Register creates an instance with fresh client and admin keys. A URL
// registered already → ErrExists.
func (s *Store) Register(ctx context.Context, n NewInstance) (*Registration, error) {
	if err := validVersion("jiraVersion", n.JiraVersion); err != nil {
		return nil, err
	}
	if err := validVersion("addinVersion", n.AddinVersion); err != nil {
		return nil, err
	}
	if err := validLicense(n.License); err != nil {
		return nil, err
	}
	now := s.nowUTC()
	ck, ak := newKey("jrc_"), newKey("jra_")
	in := &Instance{
		ID: newInstanceID(), URL: n.URL, JiraVersion: n.JiraVersion, AddinVersion: n.AddinVersion,
		License: n.License, CreatedAt: now, UpdatedAt: now,
		ClientKeyHash: HashKey([]byte(ck)), AdminKeyHash: HashKey([]byte(ak)),
	}
	if in.License != nil {
		l := *in.License
		l.ExpiresAt = l.ExpiresAt.UTC()
		in.License = &l
	}
	val, _ := json.Marshal(in)
	idx, _ := json.Marshal(map[string]string{"instanceId": in.ID})
	urlKey, instKey := s.k.url(in.URL), s.k.instance(in.ID)

	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(urlKey), "=", 0),
			clientv3.Compare(clientv3.ModRevision(instKey), "=", 0)).
		Then(clientv3.OpPut(urlKey, string(idx)), clientv3.OpPut(instKey, string(val))).
		Commit()
	if err != nil {
		return nil, etcdErr("register instance", err)
	}
	if !resp.Succeeded {
		return nil, fmt.Errorf("store: register instance %s: %w", in.URL, ErrExists)
	}
	in.Revision = resp.Header.Revision
	s.cache.putInstance(in)
	return &Registration{Instance: in, ClientKey: ck, AdminKey: ak}, nil
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Instance returns an instance by id: from the cache, or from etcd when the
// cache has not seen it (registered moments ago on another relay).
func (s *Store) Instance(ctx context.Context, id string) (*Instance, error) {
	if !ValidInstanceID(id) {
		return nil, fmt.Errorf("store: instance: %w", ErrNotFound)
	}
	if in, ok := s.cache.instance([]byte(id)); ok {
		return in, nil
	}
	return s.loadInstance(ctx, id)
}

func (s *Store) loadInstance(ctx context.Context, id string) (*Instance, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	in, err := s.readInstance(ctx, id)
	if err != nil {
		return nil, err
	}
	s.cache.putInstance(in)
	return in, nil
}

// readInstance reads the instance record from etcd (not the cache).
func (s *Store) readInstance(ctx context.Context, id string) (*Instance, error) {
	resp, err := s.kv.Get(ctx, s.k.instance(id))
	if err != nil {
		return nil, etcdErr("get instance", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("store: instance %s: %w", id, ErrNotFound)
	}
	return decodeInstance(resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

func decodeInstance(v []byte, rev int64) (*Instance, error) {
	in := new(Instance)
	if err := json.Unmarshal(v, in); err != nil {
		return nil, fmt.Errorf("store: decode instance: %w", err)
	}
	in.Revision = rev
	return in, nil
}

// Authenticate checks a key against an instance, in constant time, from the
// cache (falling back to etcd for an instance the cache has not seen). An
// unknown instance → ErrNotFound; a wrong key → RoleNone.
func (s *Store) Authenticate(ctx context.Context, id, key []byte) (*Instance, Role, error) {
	if !validIDBytes(id) {
		return nil, RoleNone, fmt.Errorf("store: instance: %w", ErrNotFound)
	}
	in, ok := s.cache.instance(id)
	if !ok {
		var err error
		if in, err = s.loadInstance(ctx, string(id)); err != nil {
			return nil, RoleNone, err
		}
	}
	return in, in.roleOf(key), nil
}

// roleOf compares the key's hash with both stored hashes in constant time.
func (in *Instance) roleOf(key []byte) Role {
	if len(key) == 0 {
		return RoleNone
	}
	sum := sha256.Sum256(key)
	var hx [64]byte
	hex.Encode(hx[:], sum[:])
	admin := subtle.ConstantTimeCompare(hx[:], []byte(in.AdminKeyHash))
	client := subtle.ConstantTimeCompare(hx[:], []byte(in.ClientKeyHash))
	switch {
	case admin == 1:
		return RoleAdmin
	case client == 1:
		return RoleClient
	}
	return RoleNone
}

// updateInstance applies f to the current record with compare-and-swap,
// retrying when another writer got there first.
func (s *Store) updateInstance(ctx context.Context, id string, f func(*Instance) error) (*Instance, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key := s.k.instance(id)
	for {
		in, err := s.readInstance(ctx, id)
		if err != nil {
			return nil, err
		}
		readAt := in.Revision
		if err := f(in); err != nil {
			return nil, err
		}
		in.UpdatedAt = s.nowUTC()
		val, _ := json.Marshal(in)
		tr, err := s.kv.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", readAt)).
			Then(clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return nil, etcdErr("update instance", err)
		}
		if tr.Succeeded {
			in.Revision = tr.Header.Revision
			s.cache.putInstance(in)
			return in, nil
		}
	}
}

// PatchInstance changes versions, licence or the error-report switch.
func (s *Store) PatchInstance(ctx context.Context, id string, p InstancePatch) (*Instance, error) {
	if p.JiraVersion != nil {
		if err := validVersion("jiraVersion", *p.JiraVersion); err != nil {
			return nil, err
		}
	}
	if p.AddinVersion != nil {
		if err := validVersion("addinVersion", *p.AddinVersion); err != nil {
			return nil, err
		}
	}
	if err := validLicense(p.License); err != nil {
		return nil, err
	}
	return s.updateInstance(ctx, id, func(in *Instance) error {
		if p.JiraVersion != nil {
			in.JiraVersion = *p.JiraVersion
		}
		if p.AddinVersion != nil {
			in.AddinVersion = *p.AddinVersion
		}
		if p.License != nil {
			l := *p.License
			l.ExpiresAt = l.ExpiresAt.UTC()
			in.License = &l
		}
		if p.ErrorReports != nil {
			in.ErrorReports = *p.ErrorReports
		}
		return nil
	})
}

// RotateClientKey gives the instance a new client key; the old one stops
// working at once on this relay, and on the others as soon as their watch
// delivers the change.
func (s *Store) RotateClientKey(ctx context.Context, id string) (string, *Instance, error) {
	ck := newKey("jrc_")
	in, err := s.updateInstance(ctx, id, func(in *Instance) error {
		in.ClientKeyHash = HashKey([]byte(ck))
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	return ck, in, nil
}

// DeleteInstance erases every record of the instance and its URL index entry
// in one transaction.
func (s *Store) DeleteInstance(ctx context.Context, id string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key := s.k.instance(id)
	for {
		in, err := s.readInstance(ctx, id)
		if err != nil {
			return err
		}
		tenant := s.k.tenant(id)
		tr, err := s.kv.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", in.Revision)).
			Then(clientv3.OpDelete(tenant, clientv3.WithRange(prefixEnd(tenant))),
				clientv3.OpDelete(s.k.url(in.URL))).Commit()
		if err != nil {
			return etcdErr("delete instance", err)
		}
		if tr.Succeeded {
			s.cache.deleteInstance(id, tr.Header.Revision)
			return nil
		}
	}
}
