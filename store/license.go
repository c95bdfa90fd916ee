package store

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jira-relay/jira-relay/internal/seal"
)

// The instance record stays JSON every relay reads (routing needs its URL,
// data id, shard and key hashes), but with a key file its licence is
// sealed: the record's "license" is then a JSON string,
//
//	"license":"enc:v1:<key name>:<base64 of the nonce and ciphertext>"
//
// the licence's JSON sealed like any value (internal/seal) with the
// record's etcd key, a NUL and "license" as additional data: copied into
// another record (or under another field) it does not open. A licence
// that is a JSON object is plaintext (written without a key file, or
// before encryption was turned on) and reads as it is.
//
// A record whose licence is sealed with a key this relay's file does not
// list (or read by a relay without a key file) is no corrupt record:
// routing, key checks and configurations go on; the licence stays sealed
// in the Instance (sealedLicense), is written back as it was when the
// record is updated without a new licence, and View fails with
// ErrEncryptionKeyMissing. A sealed licence that does not open with its
// key (altered, moved) makes the record corrupt.

// licenseAAD is the additional data a licence is sealed with: the record's
// etcd key, a NUL and the field's name.
func licenseAAD(recordKey string) []byte {
	return append([]byte(recordKey), "\x00license"...)
}

// instanceRecord is the instance record as it is stored: the Instance, its
// licence replaced by the licence's stored form (a JSON object, or a
// sealed JSON string). The shallower License shadows the Instance's for
// both json.Marshal and json.Unmarshal.
type instanceRecord struct {
	*Instance
	License json.RawMessage `json:"license,omitempty"`
}

// encodeInstance is the value of the instance record to write under
// recordKey: with a key file, its licence sealed. A record read with a
// licence this relay could not open, and given no new one, keeps the
// licence as it was read.
func (v values) encodeInstance(recordKey string, in *Instance) (string, error) {
	rec := instanceRecord{Instance: in}
	switch {
	case in.License != nil:
		lic, err := json.Marshal(in.License)
		if err != nil {
			return "", fmt.Errorf("store: encode instance: licence: %w", err)
		}
		rec.License = v.licenseField(recordKey, lic)
	case len(in.sealedLicense) > 0:
		rec.License = in.sealedLicense
	}
	return encode("instance", rec)
}

// licenseField is the stored form of a licence's JSON: as it is without a
// key file, else sealed into a JSON string.
func (v values) licenseField(recordKey string, lic []byte) json.RawMessage {
	if v.keys == nil {
		return lic
	}
	sealed := v.keys.Seal(nil, licenseAAD(recordKey), lic)
	head := len(seal.Prefix) + len(v.keys.Primary()) + 1 // "enc:v1:<key>:"
	s := string(sealed[:head]) + base64.StdEncoding.EncodeToString(sealed[head:])
	out, _ := json.Marshal(s) // a string always encodes
	return out
}

// sealedLicenseValue turns a licence's stored JSON string back into the
// sealed value internal/seal opens, and names its key. ok is false for
// anything that is no sealed licence.
func sealedLicenseValue(field json.RawMessage) (value []byte, name string, ok bool) {
	var s string
	if json.Unmarshal(field, &s) != nil {
		return nil, "", false
	}
	rest, found := strings.CutPrefix(s, seal.Prefix)
	if !found {
		return nil, "", false
	}
	name, b64, found := strings.Cut(rest, ":")
	if !found {
		return nil, "", false
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return nil, "", false
	}
	value = append([]byte(seal.Prefix+name+":"), raw...)
	if n, sealed := seal.KeyOf(value); !sealed || n != name {
		return nil, "", false // not a key name
	}
	return value, name, true
}

// licenseKeyOf names the key that seals the licence of a stored instance
// record; sealed is false for a plaintext licence, a record without one, or
// a value that is no record. It decrypts nothing (for counts by key).
func licenseKeyOf(record []byte) (name string, sealed bool) {
	var r struct {
		License json.RawMessage `json:"license"`
	}
	if json.Unmarshal(record, &r) != nil || len(r.License) == 0 || r.License[0] != '"' {
		return "", false
	}
	_, name, sealed = sealedLicenseValue(r.License)
	return name, sealed
}

// openLicense reads a record's licence field: nil for none, the licence
// for a plaintext or sealed one that opens. A sealed licence whose key this
// relay lacks → ErrEncryptionKeyMissing (the record itself is sound); one
// that does not open or decode → ErrCorrupt.
func (v values) openLicense(recordKey string, field json.RawMessage, id string) (*License, error) {
	lic, err := v.licenseJSON(recordKey, field, id)
	if err != nil || lic == nil {
		return nil, err
	}
	l := new(License)
	if err := json.Unmarshal(lic, l); err != nil {
		return nil, corrupt("instance", id)
	}
	return l, nil
}

// licenseJSON is the plaintext JSON of a record's licence field, nil for
// none; errors as openLicense's.
func (v values) licenseJSON(recordKey string, field json.RawMessage, id string) ([]byte, error) {
	field = bytes.TrimSpace(field)
	if len(field) == 0 || string(field) == "null" {
		return nil, nil
	}
	switch field[0] {
	case '{':
		return field, nil // plaintext, from before encryption
	case '"':
	default:
		return nil, corrupt("instance", id)
	}
	val, name, ok := sealedLicenseValue(field)
	if !ok {
		return nil, corrupt("instance", id)
	}
	if v.keys == nil {
		return nil, fmt.Errorf("store: licence of instance %s sealed with key %q, and this relay has no --encryption-key-file: %w", id, name, ErrEncryptionKeyMissing)
	}
	plain, _, err := v.keys.Open(licenseAAD(recordKey), val)
	var km *seal.KeyMissingError
	switch {
	case errors.As(err, &km):
		return nil, fmt.Errorf("store: licence of instance %s sealed with key %q: %w", id, km.Name, ErrEncryptionKeyMissing)
	case err != nil:
		return nil, corrupt("instance", id)
	}
	return plain, nil
}

// decodeInstance decodes the record of instance id read under recordKey at
// rev. One that does not decode, or decodes to no record of this instance
// (JSON null, {}, another id, no URL or key hashes), or whose sealed
// licence does not open → ErrCorrupt. A licence sealed with a key this
// relay lacks leaves License nil, and the record sound: see above.
func (v values) decodeInstance(recordKey, id string, val []byte, rev int64) (*Instance, error) {
	in := new(Instance)
	rec := instanceRecord{Instance: in}
	if err := json.Unmarshal(val, &rec); err != nil {
		return nil, corrupt("instance", id)
	}
	if in.ID != id || in.URL == "" || !validHash(in.ClientKeyHash) || !validHash(in.AdminKeyHash) {
		return nil, corrupt("instance", id)
	}
	lic, err := v.openLicense(recordKey, rec.License, id)
	switch {
	case errors.Is(err, ErrEncryptionKeyMissing):
		in.sealedLicense, in.licenseErr = bytes.Clone(rec.License), err
	case err != nil:
		return nil, err
	}
	in.License = lic
	in.Revision = rev
	return in, nil
}

// decodeInstance decodes the record of instance id read at rev (from the
// directory, under s.k.instance(id)): values.decodeInstance.
func (s *Store) decodeInstance(id string, val []byte, rev int64) (*Instance, error) {
	return s.vals.decodeInstance(s.k.instance(id), id, val, rev)
}

// cacheEntry is what the cache holds for an instance record: the record, or
// for one that does not decode a corrupt placeholder with the key hashes
// that can still be read from it (a record that is JSON but has a field
// that does not parse, such as a time out of range, or a sealed licence
// that does not open), so that Authenticate can still tell the tenant's
// admin key.
func (s *Store) cacheEntry(id string, val []byte, rev int64) *Instance {
	if in, err := s.decodeInstance(id, val, rev); err == nil {
		return in
	}
	in := &Instance{ID: id, Revision: rev, corrupt: true}
	var h struct {
		ClientKeyHash string `json:"clientKeySha256"`
		AdminKeyHash  string `json:"adminKeySha256"`
	}
	if json.Unmarshal(val, &h) == nil {
		if validHash(h.ClientKeyHash) {
			in.ClientKeyHash = h.ClientKeyHash
		}
		if validHash(h.AdminKeyHash) {
			in.AdminKeyHash = h.AdminKeyHash
		}
	}
	return in
}

// LicenseError is why the instance's licence could not be read
// (ErrEncryptionKeyMissing: sealed with a key this relay lacks), nil when
// it could (or there is none).
func (in *Instance) LicenseError() error {
	if in.License == nil && len(in.sealedLicense) > 0 {
		return in.licenseErr
	}
	return nil
}

// isInstanceRecord reports whether key (under prefix) is an instance
// record: P instances/<id>/instance.
func isInstanceRecord(prefix, key string) bool {
	rest, ok := strings.CutPrefix(key, prefix+"instances/")
	if !ok {
		return false
	}
	id, ok := strings.CutSuffix(rest, "/instance")
	return ok && id != "" && !strings.Contains(id, "/")
}

// SealedWith names the key that seals the value stored under key (the
// store's keys start with prefix), for counts by key: the value's own
// (internal/seal), or for an instance record, whose JSON stays readable,
// its licence's. sealed is false for plaintext (an instance record
// without a licence or with a plaintext one among them). It decrypts
// nothing.
func SealedWith(prefix string, key, value []byte) (name string, sealed bool) {
	if isInstanceRecord(prefix, string(key)) {
		return licenseKeyOf(value)
	}
	return seal.KeyOf(value)
}

// rewrittenInstance is the instance record val under key with its licence
// sealed with the primary key, for RewriteValues; ok is false when there
// is nothing to rewrite (no licence, sealed with the primary key already,
// or a licence this relay cannot open, counted in rep). Only the licence
// changes: the record's other members are written back as they were read.
func (s *Store) rewrittenInstance(key string, val []byte, primary string, rep *RewriteReport) (string, bool) {
	var rec map[string]json.RawMessage
	if json.Unmarshal(val, &rec) != nil || rec == nil {
		rep.Unreadable["(does not open)"]++
		return "", false
	}
	field := bytes.TrimSpace(rec["license"])
	if len(field) == 0 || string(field) == "null" {
		return "", false // no licence: nothing sealed in this record
	}
	if field[0] == '"' {
		if _, name, ok := sealedLicenseValue(field); ok {
			switch {
			case name == primary:
				rep.Current++
				return "", false
			case !s.vals.keys.Has(name):
				rep.Unreadable[name]++
				return "", false
			}
		}
	}
	id := strings.TrimSuffix(strings.TrimPrefix(key, s.k.prefix+"instances/"), "/instance")
	plain, err := s.vals.licenseJSON(key, field, id)
	if err != nil || plain == nil || json.Unmarshal(plain, new(License)) != nil {
		rep.Unreadable["(does not open)"]++
		return "", false
	}
	rec["license"] = s.vals.licenseField(key, plain)
	out, err := json.Marshal(rec)
	if err != nil {
		rep.Unreadable["(does not open)"]++
		return "", false
	}
	return string(out), true
}

// OpenRecordLicense is an instance record read under key (as etcdctl
// prints it) with its licence opened by keys, for operators' tools: the
// record's JSON with "license" an object again, and the name of the key
// that sealed it. A record whose licence is not sealed comes back as it
// is, with name "". A licence sealed with a key keys does not list (or
// keys nil) → a *seal.KeyMissingError; one that does not open → an error
// saying so.
func OpenRecordLicense(keys *seal.Keyring, key, value []byte) (record []byte, name string, err error) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(value, &fields) != nil {
		return value, "", nil
	}
	sealed, name, ok := sealedLicenseValue(fields["license"])
	if !ok {
		return value, "", nil
	}
	if keys == nil {
		return nil, name, &seal.KeyMissingError{Name: name}
	}
	lic, _, err := keys.Open(licenseAAD(string(key)), sealed)
	if err != nil {
		return nil, name, err
	}
	if !json.Valid(lic) {
		return nil, name, fmt.Errorf("store: the licence of %s is no JSON", key)
	}
	fields["license"] = lic
	out, err := json.Marshal(fields)
	return out, name, err
}
