package seal

import (
	"bytes"
	"crypto/rand"
	"errors"

	"golang.org/x/crypto/chacha20poly1305"
)

// Prefix starts every sealed value; the key's name and a colon follow it,
// then the nonce and the ciphertext (raw bytes).
const Prefix = "enc:v1:"

// Errors of Open. A value sealed with a key the file no longer lists is a
// *KeyMissingError.
var (
	// ErrNotSealed: the value has no sealed value's prefix (plaintext, as
	// written before encryption was turned on).
	ErrNotSealed = errors.New("seal: value is not sealed")
	// ErrTampered: the value is cut short, or its ciphertext or etcd key is
	// not the one it was sealed with.
	ErrTampered = errors.New("seal: value does not open (cut short, altered, or moved from another etcd key)")
)

// KeyMissingError is a value sealed with a key the key file does not list.
type KeyMissingError struct{ Name string }

func (e *KeyMissingError) Error() string {
	return "seal: value sealed with key " + e.Name + ", which the key file does not list"
}

// Seal appends to dst plaintext sealed with the primary key, bound to
// etcdKey (the key the value is written under).
func (r *Keyring) Seal(dst, etcdKey, plaintext []byte) []byte {
	k := r.keys[0]
	dst = append(append(append(dst, Prefix...), k.name...), ':')
	nonce := len(dst)
	dst = append(dst, make([]byte, chacha20poly1305.NonceSizeX)...)
	if _, err := rand.Read(dst[nonce:]); err != nil {
		panic("seal: no randomness: " + err.Error()) // crypto/rand does not fail on supported systems
	}
	return k.aead.Seal(dst, dst[nonce:], plaintext, etcdKey)
}

// Open returns the plaintext of a value read under etcdKey and the name of
// the key that sealed it. It fails with ErrNotSealed, *KeyMissingError or
// ErrTampered, never with a wrong plaintext.
func (r *Keyring) Open(etcdKey, value []byte) (plaintext []byte, keyName string, err error) {
	name, rest, err := split(value)
	if err != nil {
		return nil, "", err
	}
	k := r.byName[string(name)]
	if k == nil {
		return nil, string(name), &KeyMissingError{Name: string(name)}
	}
	if len(rest) < chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return nil, k.name, ErrTampered
	}
	nonce, ct := rest[:chacha20poly1305.NonceSizeX], rest[chacha20poly1305.NonceSizeX:]
	plaintext, err = k.aead.Open(nil, nonce, ct, etcdKey)
	if err != nil {
		return nil, k.name, ErrTampered
	}
	return plaintext, k.name, nil
}

// KeyOf names the key a value is sealed with; sealed is false for a value
// without the prefix. It decrypts nothing (for counts by key).
func KeyOf(value []byte) (name string, sealed bool) {
	n, _, err := split(value)
	if err != nil {
		return "", false
	}
	return string(n), true
}

// split cuts a sealed value into its key's name and the rest.
func split(value []byte) (name, rest []byte, err error) {
	if !bytes.HasPrefix(value, []byte(Prefix)) {
		return nil, nil, ErrNotSealed
	}
	v := value[len(Prefix):]
	i := bytes.IndexByte(v, ':')
	if i < 0 || !validName(string(v[:i])) {
		return nil, nil, ErrTampered
	}
	return v[:i], v[i+1:], nil
}
