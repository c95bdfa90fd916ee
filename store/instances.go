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
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
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
	ID           string   `json:"id"`
	URL          string   `json:"url"`
	JiraVersion  string   `json:"jiraVersion"`
	AddinVersion string   `json:"addinVersion"`
	License      *License `json:"license,omitempty"`
	ErrorReports bool     `json:"errorReports"`
	// DeploymentType is "Cloud", "Server" or "DataCenter" (Jira's own
	// serverInfo.deploymentType). Records written before it existed have
	// none and are Cloud: see Deployment.
	DeploymentType string `json:"deploymentType,omitempty"`
	// CloudID is a Cloud site's cloud id (a lower-case UUID), when the
	// add-in sent it; unique across tenants and never changed.
	CloudID string `json:"cloudId,omitempty"`
	// DataID names where the tenant's data lives: P d/<DataID>/ (keys.go).
	// Six characters, unique across tenants, never changed.
	DataID string `json:"dataId,omitempty"`
	// Shard names the etcd cluster holding the tenant's data (--etcd-shards);
	// empty: the directory's.
	Shard string `json:"shard,omitempty"`
	// Tokens names how the outside ids in the keys of the tenant's data
	// are made tokens (tokens.go): TokensUnkeyed, or "hmac:<key name>" for
	// tokens keyed by that key of the encryption key file. Empty only in a
	// record of layout 2, before its migration.
	Tokens string `json:"tokens,omitempty"`
	// Move is set while the tenant's data moves to another shard, or to
	// another data id with other tokens (a re-key): its writes wait (at
	// most a second) until the move switches.
	Move *Move `json:"move,omitempty"`
	// MappingRetentionDays, when set by the admin, replaces the relay's
	// --mapping-retention for this tenant: 0 keeps mappings forever.
	MappingRetentionDays *int      `json:"mappingRetentionDays,omitempty"`
	CreatedAt            time.Time `json:"createdAt"`
	UpdatedAt            time.Time `json:"updatedAt"`
	ClientKeyHash        string    `json:"clientKeySha256"`
	AdminKeyHash         string    `json:"adminKeySha256"`

	// Revision is the etcd ModRevision the record was read at.
	Revision int64 `json:"-"`

	// corrupt marks a cache placeholder for a record that does not decode:
	// it holds only ID, Revision and the key hashes that could be read.
	corrupt bool
	// sealedLicense is the licence as stored (a sealed JSON string) when
	// this relay could not open it (license.go): License is nil, the
	// licence is written back as it was, and licenseErr (matching
	// ErrEncryptionKeyMissing) says why.
	sealedLicense json.RawMessage
	licenseErr    error
}

// Move is a tenant's move in progress.
type Move struct {
	To    string    `json:"to"`
	Since time.Time `json:"since"`
	// DataID and Tokens are set for a re-key (RekeyTenant): the data id
	// the tenant's data is copied to, with keys of these tokens.
	DataID string `json:"dataId,omitempty"`
	Tokens string `json:"tokens,omitempty"`
}

// ShardName is the shard holding the tenant's data, DirectoryShard for
// the directory's own cluster.
func (in *Instance) ShardName() string {
	if in.Shard == "" {
		return DirectoryShard
	}
	return in.Shard
}

// Deployment types, as Jira's serverInfo.deploymentType names them.
const (
	DeploymentCloud      = "Cloud"
	DeploymentServer     = "Server"
	DeploymentDataCenter = "DataCenter"
)

// Deployment is the instance's deployment type; a record without one
// (written before the field existed) is Cloud.
func (in *Instance) Deployment() string {
	if in.DeploymentType == "" {
		return DeploymentCloud
	}
	return in.DeploymentType
}

// Relayed reports whether the relay carries the instance's attachments:
// only Cloud sites. Server and Data Center tenants keep data in the store,
// but the add-in sends their attachments to Jira itself, and the relay never
// opens a connection to them.
func (in *Instance) Relayed() bool { return in.Deployment() == DeploymentCloud }

// ValidDeployment reports whether t is one of the deployment types, exactly
// as Jira spells it.
func ValidDeployment(t string) bool {
	return t == DeploymentCloud || t == DeploymentServer || t == DeploymentDataCenter
}

// InstanceView is what the API shows of an instance.
type InstanceView struct {
	ID             string   `json:"id"`
	URL            string   `json:"url"`
	DeploymentType string   `json:"deploymentType"`
	CloudID        string   `json:"cloudId,omitempty"`
	JiraVersion    string   `json:"jiraVersion"`
	AddinVersion   string   `json:"addinVersion"`
	License        *License `json:"license,omitempty"`
	ErrorReports   bool     `json:"errorReports"`
	// MappingRetentionDays is the admin's override of the relay's mapping
	// retention (0: forever); absent when the relay's applies.
	MappingRetentionDays *int      `json:"mappingRetentionDays,omitempty"`
	CreatedAt            time.Time `json:"createdAt"`
	UpdatedAt            time.Time `json:"updatedAt"`
}

// View is the public part of the instance. A licence this relay cannot
// open (sealed with a key its key file does not list) → an error matching
// ErrEncryptionKeyMissing: the view is never shown without it.
func (in *Instance) View() (InstanceView, error) {
	if err := in.LicenseError(); err != nil {
		return InstanceView{}, fmt.Errorf("store: view of instance %s: %w", in.ID, err)
	}
	return InstanceView{
		ID: in.ID, URL: in.URL, DeploymentType: in.Deployment(), CloudID: in.CloudID,
		JiraVersion: in.JiraVersion, AddinVersion: in.AddinVersion,
		License: in.License, ErrorReports: in.ErrorReports, MappingRetentionDays: in.MappingRetentionDays, CreatedAt: in.CreatedAt, UpdatedAt: in.UpdatedAt,
	}, nil
}

// NewInstance is what registration takes. URL must already be normalised
// and, for a Cloud site, checked against the allowed upstreams (the HTTP
// layer does that).
type NewInstance struct {
	URL string
	// DeploymentType is one of the Deployment* types; empty is Cloud.
	DeploymentType string
	// CloudID is a Cloud site's cloud id (a UUID); optional.
	CloudID      string
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
	// URL renames the site (normalised by the HTTP layer): the URL index
	// entry moves with the record, in one transaction.
	URL *string
	// CloudID may be given only as it is: a cloud id never changes, so a
	// rename cannot move a tenant onto another Jira.
	CloudID *string
	// MappingRetentionDays sets the tenant's own mapping retention, 0 to
	// MaxRetentionDays (0: forever). It applies to mappings linked (or
	// linked again) from then on.
	MappingRetentionDays *int
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
		// Go's zero time stands for "absent"; 0001-01-01T00:00:00Z is no
		// licence date anyway.
		return invalid("license.expiresAt", "is required (RFC 3339, after 0001-01-01T00:00:00Z)")
	}
	if err := validTime("license.expiresAt", l.ExpiresAt); err != nil {
		return err
	}
	if l.Seats < 0 || l.Seats > 10_000_000 {
		return invalid("license.seats", "must be between 0 and 10000000")
	}
	return nil
}

// validTime checks a time the store will write: records hold times in UTC
// as RFC 3339, whose years are 0000 to 9999, and json.Marshal fails on any
// other ("9999-12-31T23:59:59-23:59" is in the year 10000 in UTC).
func validTime(field string, t time.Time) error {
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return invalid(field, "must lie between 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z (in UTC)")
	}
	return nil
}

// randomBytes fills b from crypto/rand. Its Read never returns an error
// (since Go 1.24 it crashes the program instead); the check is for form.
func randomBytes(b []byte) {
	if _, err := rand.Read(b); err != nil {
		panic("store: crypto/rand: " + err.Error())
	}
}

// newDataID draws a data id: six characters of lower-case base32 (30 bits);
// registration draws again in the rare case it is taken.
func newDataID() string {
	var b [5]byte
	randomBytes(b[:])
	return lower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])[:6])
}

func newInstanceID() string {
	var b [16]byte
	randomBytes(b[:])
	return lower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func newKey(kind string) string {
	var b [32]byte
	randomBytes(b[:])
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
	if n.DeploymentType == "" {
		n.DeploymentType = DeploymentCloud
	}
	if !ValidDeployment(n.DeploymentType) {
		return nil, invalid("deploymentType", `must be "Cloud", "Server" or "DataCenter"`)
	}
	if n.CloudID != "" {
		if n.DeploymentType != DeploymentCloud {
			return nil, invalid("cloudId", "is for Cloud sites only")
		}
		id, ok := canonicalUUID(n.CloudID)
		if !ok {
			return nil, invalid("cloudId", "must be a UUID like 3f1c2b9a-5d4e-4f6a-8b7c-9d0e1f2a3b4c")
		}
		n.CloudID = id
	}
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
		ID: newInstanceID(), URL: n.URL, DeploymentType: n.DeploymentType, CloudID: n.CloudID,
		JiraVersion: n.JiraVersion, AddinVersion: n.AddinVersion,
		License: n.License, CreatedAt: now, UpdatedAt: now, Tokens: s.tokensScheme(),
		ClientKeyHash: HashKey([]byte(ck)), AdminKeyHash: HashKey([]byte(ak)),
	}
	if in.License != nil {
		l := *in.License
		l.ExpiresAt = l.ExpiresAt.UTC()
		in.License = &l
	}
	idx, err := encode("url index entry", urlIndexEntry{InstanceID: in.ID})
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	sh := s.placeNew()
	if sh != s.dir {
		in.Shard = sh.name
	}
	for {
		in.DataID = newDataID()
		val, err := s.vals.encodeInstance(s.k.instance(in.ID), in)
		if err != nil {
			return nil, err
		}
		urlKey, instKey, dataKey := s.k.url(in.URL), s.k.instance(in.ID), s.k.dataID(in.DataID)
		d := s.k.data(in.DataID)
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(urlKey), "=", 0),
			clientv3.Compare(clientv3.ModRevision(instKey), "=", 0),
			clientv3.Compare(clientv3.ModRevision(dataKey), "=", 0)}
		ops := []clientv3.Op{clientv3.OpPut(urlKey, idx), clientv3.OpPut(instKey, val), clientv3.OpPut(dataKey, idx)}
		if sh == s.dir {
			ops = append(ops, clientv3.OpPut(d.tenant(), idx))
		} else {
			// The marker on the tenant's shard first: a tenant the directory
			// names always has its data's marker. Undone below if the
			// directory refuses.
			tr, err := sh.kv.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(d.tenant()), "=", 0)).
				Then(clientv3.OpPut(d.tenant(), idx)).Commit()
			if err != nil {
				return nil, etcdErr("register instance on shard "+sh.name, err)
			}
			if !tr.Succeeded {
				continue // that data id is in use on the shard: draw another
			}
		}
		if in.CloudID != "" {
			cloudKey := s.k.cloudID(in.CloudID)
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(cloudKey), "=", 0))
			ops = append(ops, clientv3.OpPut(cloudKey, idx))
		}
		resp, err := s.kv.Txn(ctx).If(cmps...).Then(ops...).
			Else(clientv3.OpGet(urlKey, clientv3.WithCountOnly()), clientv3.OpGet(dataKey, clientv3.WithCountOnly())).Commit()
		if (err != nil || !resp.Succeeded) && sh != s.dir {
			if _, derr := sh.kv.Delete(ctx, d.tenant()); derr != nil {
				s.log.Warn("store: register: remove the marker of a refused registration", "shard", sh.name, "data_id", in.DataID, "err", derr)
			}
		}
		if err != nil {
			return nil, etcdErr("register instance", err)
		}
		if !resp.Succeeded {
			if resp.Responses[0].GetResponseRange().Count > 0 {
				return nil, fmt.Errorf("store: register instance %s: %w", in.URL, ErrExists)
			}
			if resp.Responses[1].GetResponseRange().Count > 0 {
				continue // that data id is taken: draw another
			}
			if in.CloudID != "" {
				return nil, fmt.Errorf("store: register instance: cloud id %s: %w", in.CloudID, ErrCloudIDTaken)
			}
			return nil, fmt.Errorf("store: register instance %s: %w", in.URL, ErrExists)
		}
		in.Revision = resp.Header.Revision
		break
	}
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
// cache has not seen it (registered moments ago on another relay). A record
// that does not decode → ErrCorrupt.
func (s *Store) Instance(ctx context.Context, id string) (*Instance, error) {
	if !ValidInstanceID(id) {
		return nil, fmt.Errorf("store: instance: %w", ErrNotFound)
	}
	in, err := s.cachedInstance(ctx, []byte(id))
	if err != nil {
		return nil, err
	}
	if in.corrupt {
		return nil, corrupt("instance", id)
	}
	return in, nil
}

// cachedInstance returns the cache's entry for the instance, loading it from
// etcd when the cache has none. The entry may be a corrupt placeholder.
func (s *Store) cachedInstance(ctx context.Context, id []byte) (*Instance, error) {
	if in, ok := s.cache.instance(id); ok {
		return in, nil
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	sid := string(id)
	resp, err := s.kv.Get(ctx, s.k.instance(sid))
	if err != nil {
		return nil, etcdErr("get instance", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("store: instance %s: %w", sid, ErrNotFound)
	}
	in := s.cacheEntry(sid, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	s.cache.putInstance(in)
	return in, nil
}

// urlIndexEntry is the value of a URL index key.
type urlIndexEntry struct {
	InstanceID string `json:"instanceId"`
}

// decodeInstance and cacheEntry are in license.go: the licence of the
// record is sealed.

// validHash reports whether h has the form HashKey gives: 64 lower-case hex digits.
func validHash(h string) bool {
	if len(h) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Authenticate checks a key against an instance, in constant time, from the
// cache (falling back to etcd for an instance the cache has not seen). An
// unknown instance → ErrNotFound; a wrong key → RoleNone.
//
// An instance whose record does not decode → a nil instance, an error
// matching ErrCorrupt, and the role the key has by the key hashes that could
// still be read from the record: RoleNone when none could (an empty or
// garbled value). The caller may let RoleAdmin erase the tenant
// (DeleteInstance) and must refuse everything else.
func (s *Store) Authenticate(ctx context.Context, id, key []byte) (*Instance, Role, error) {
	if !validIDBytes(id) {
		return nil, RoleNone, fmt.Errorf("store: instance: %w", ErrNotFound)
	}
	in, err := s.cachedInstance(ctx, id)
	if err != nil {
		return nil, RoleNone, err
	}
	role := in.roleOf(key)
	if in.corrupt {
		return nil, role, corrupt("instance", in.ID)
	}
	return in, role, nil
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

// updateInstance applies f to the current record with compare-and-swap.
// When another writer got there first, the failed transaction returns the
// record as it is now (Else), and f is applied to that: no extra read.
func (s *Store) updateInstance(ctx context.Context, id string, f func(*Instance) error) (*Instance, error) {
	if !ValidInstanceID(id) {
		return nil, fmt.Errorf("store: instance: %w", ErrNotFound)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key := s.k.instance(id)
	resp, err := s.kv.Get(ctx, key)
	if err != nil {
		return nil, etcdErr("get instance", err)
	}
	kvs := resp.Kvs
	for {
		if len(kvs) == 0 {
			return nil, fmt.Errorf("store: instance %s: %w", id, ErrNotFound)
		}
		in, err := s.decodeInstance(id, kvs[0].Value, kvs[0].ModRevision)
		if err != nil {
			return nil, err
		}
		readAt, oldURL := in.Revision, in.URL
		if err := f(in); err != nil {
			return nil, err
		}
		in.UpdatedAt = s.nowUTC()
		val, err := s.vals.encodeInstance(key, in)
		if err != nil {
			return nil, err
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", readAt)}
		ops := []clientv3.Op{clientv3.OpPut(key, val)}
		elses := []clientv3.Op{clientv3.OpGet(key)}
		if in.URL != oldURL {
			// A rename: the URL index entry moves in the same transaction,
			// onto a URL no other tenant holds.
			idx, err := encode("url index entry", urlIndexEntry{InstanceID: id})
			if err != nil {
				return nil, err
			}
			newKey := s.k.url(in.URL)
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(newKey), "=", 0))
			ops = append(ops, clientv3.OpDelete(s.k.url(oldURL)), clientv3.OpPut(newKey, idx))
			elses = append(elses, clientv3.OpGet(newKey, clientv3.WithCountOnly()))
		}
		tr, err := s.kv.Txn(ctx).If(cmps...).Then(ops...).Else(elses...).Commit()
		if err != nil {
			return nil, etcdErr("update instance", err)
		}
		if tr.Succeeded {
			in.Revision = tr.Header.Revision
			s.cache.putInstance(in)
			return in, nil
		}
		kvs = tr.Responses[0].GetResponseRange().Kvs
		if len(tr.Responses) > 1 && tr.Responses[1].GetResponseRange().Count > 0 {
			return nil, fmt.Errorf("store: rename instance %s to %s: %w", id, in.URL, ErrURLTaken)
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
	if p.URL != nil && *p.URL == "" {
		return nil, invalid("url", "must not be empty")
	}
	if d := p.MappingRetentionDays; d != nil && (*d < 0 || *d > MaxRetentionDays) {
		return nil, invalid("mappingRetentionDays", fmt.Sprintf("must be a whole number of days from 0 (keep forever) to %d", MaxRetentionDays))
	}
	return s.updateInstance(ctx, id, func(in *Instance) error {
		if p.CloudID != nil {
			if c, ok := canonicalUUID(*p.CloudID); !ok || c != in.CloudID {
				return invalid("cloudId", "cannot change: a rename cannot move a tenant onto another Jira")
			}
		}
		if p.URL != nil {
			in.URL = *p.URL
		}
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
		if p.MappingRetentionDays != nil {
			d := *p.MappingRetentionDays
			in.MappingRetentionDays = &d
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

// DeleteInstance erases every record of the instance (everything under its
// prefix: record, configuration, users, mappings, error reports), its URL
// index entry and the fleet's cool-downs of it, in one transaction. An instance whose record does not decode
// is erased too: its URL index entries are then found by the instance id
// they name. A conflicting write makes the transaction return the record as
// it is now (Else), and the erase is tried again from that.
func (s *Store) DeleteInstance(ctx context.Context, id string) error {
	if !ValidInstanceID(id) {
		return fmt.Errorf("store: instance: %w", ErrNotFound)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key, dir := s.k.instance(id), s.k.directory(id)
	resp, err := s.kv.Get(ctx, key)
	if err != nil {
		return etcdErr("get instance", err)
	}
	kvs := resp.Kvs
	for {
		if len(kvs) == 0 {
			return fmt.Errorf("store: instance %s: %w", id, ErrNotFound)
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", kvs[0].ModRevision)}
		// A migration's progress key goes too (a record that stopped
		// decoding half-way through its migration leaves one).
		ops := append([]clientv3.Op{deletePrefix(dir), clientv3.OpDelete(s.k.migrationKey(id))}, s.k.cooldownOps(id)...)
		in, err := s.decodeInstance(id, kvs[0].Value, kvs[0].ModRevision)
		switch {
		case err == nil:
			ops = append(ops, clientv3.OpDelete(s.k.url(in.URL)))
			if in.CloudID != "" {
				ops = append(ops, clientv3.OpDelete(s.k.cloudID(in.CloudID)))
			}
			if in.DataID != "" {
				ops = append(ops, clientv3.OpDelete(s.k.dataID(in.DataID)), deletePrefix(s.k.data(in.DataID).all()))
				if in.Move != nil && in.Move.DataID != "" {
					// A re-key's copy, under its own data id.
					ops = append(ops, clientv3.OpDelete(s.k.dataID(in.Move.DataID)), deletePrefix(s.k.data(in.Move.DataID).all()))
				}
				// Data on another shard (or a move's target), and copies
				// a re-key left, go first: an erase that stops half-way
				// leaves the directory naming them, so it can be run again.
				if err := s.eraseShardData(ctx, in); err != nil {
					return err
				}
			}
		case errors.Is(err, ErrCorrupt):
			var found []*mvccpb.KeyValue
			for _, index := range []string{s.k.urls(), s.k.cloudIDs(), s.k.dataIDs()} {
				kvs, err := s.indexKeysOf(ctx, index, id)
				if err != nil {
					return err
				}
				found = append(found, kvs...)
			}
			for _, u := range found {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(u.Key)), "=", u.ModRevision))
				ops = append(ops, clientv3.OpDelete(string(u.Key)))
				if d, ok := strings.CutPrefix(string(u.Key), s.k.dataIDs()); ok && validDataID(d) {
					ops = append(ops, deletePrefix(s.k.data(d).all()))
					// The record names no shard: its data is looked for on all.
					for _, sh := range s.shards {
						if _, err := sh.kv.Delete(ctx, s.k.data(d).all(), clientv3.WithPrefix()); err != nil {
							return etcdErr("erase tenant data on shard "+sh.name, err)
						}
					}
				}
			}
		default:
			return err
		}
		tr, err := s.kv.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			return etcdErr("delete instance", err)
		}
		if tr.Succeeded {
			s.cache.deleteInstance(id, tr.Header.Revision)
			s.quotas.forget(id)
			return nil
		}
		kvs = tr.Responses[0].GetResponseRange().Kvs
	}
}

// eraseShardData deletes a tenant's data from the shards other than the
// directory that may hold it: its own and, during a move, the target; and
// the copies a re-key left (sweepDataIDs).
func (s *Store) eraseShardData(ctx context.Context, in *Instance) error {
	if sh, ok := s.shardOf(in.Shard); ok {
		if err := s.sweepDataIDs(ctx, in, sh, 0); err != nil {
			return err
		}
	}
	names := []string{in.Shard}
	dataIDs := []string{in.DataID}
	if in.Move != nil {
		names = append(names, in.Move.To)
		if in.Move.DataID != "" {
			dataIDs = append(dataIDs, in.Move.DataID) // a re-key's copy
		}
	}
	for _, n := range names {
		sh, ok := s.shardOf(n)
		if !ok {
			return fmt.Errorf("store: erase tenant %s: shard %q has no client here: %w", in.ID, n, ErrUnavailable)
		}
		if sh == s.dir {
			continue // in the directory's transaction
		}
		for _, d := range dataIDs {
			if _, err := sh.kv.Delete(ctx, s.k.data(d).all(), clientv3.WithPrefix()); err != nil {
				return etcdErr("erase tenant data on shard "+sh.name, err)
			}
		}
	}
	return nil
}

// deletePrefix deletes every key under p.
func deletePrefix(p string) clientv3.Op {
	return clientv3.OpDelete(p, clientv3.WithRange(clientv3.GetPrefixRangeEnd(p)))
}

// validDataID: six characters of lower-case base32.
func validDataID(d string) bool {
	if len(d) != 6 {
		return false
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// indexKeysOf scans an index of instances (the URL index, the cloud id
// index) for the entries that name instance id (one, unless the data was
// edited by hand). Entries that do not decode name no instance and are left
// alone.
func (s *Store) indexKeysOf(ctx context.Context, prefix, id string) ([]*mvccpb.KeyValue, error) {
	var out []*mvccpb.KeyValue
	from, end := prefix, clientv3.GetPrefixRangeEnd(prefix)
	for {
		resp, err := s.kv.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(1000))
		if err != nil {
			return nil, etcdErr("list url index", err)
		}
		for _, kv := range resp.Kvs {
			if got, ok := indexedID(kv.Value); ok && got == id {
				out = append(out, kv)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// canonicalUUID checks a UUID (8-4-4-4-12 hex digits) and returns it in
// lower case.
func canonicalUUID(v string) (string, bool) {
	if len(v) != 36 {
		return "", false
	}
	b := []byte(v)
	for i, c := range b {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return "", false
			}
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			b[i] = c + 'a' - 'A'
		default:
			return "", false
		}
	}
	return string(b), true
}
