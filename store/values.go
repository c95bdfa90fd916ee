package store

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/jira-relay/jira-relay/internal/seal"
)

// ErrEncryptionKeyMissing marks a value sealed with a key the relay's key
// file does not list (or a sealed value read by a relay without a key
// file): that one request fails, nothing is guessed.
var ErrEncryptionKeyMissing = errors.New("value sealed with an encryption key the key file does not list")

// values seals what the store writes of people and their e-mails (users,
// mapping records, configurations, error reports) and opens what it reads.
// Without a key file it writes plaintext, as before; with one, a value is
// "enc:v1:<key>:" and XChaCha20-Poly1305 bound to its etcd key
// (internal/seal). A plaintext value (written before encryption was turned
// on) is read as it is.
type values struct{ keys *seal.Keyring }

// seal is the value to write under key.
func (v values) seal(key string, plain []byte) string {
	if v.keys == nil {
		return string(plain)
	}
	return string(v.keys.Seal(make([]byte, 0, len(plain)+len(seal.Prefix)+72), []byte(key), plain))
}

// open is the plaintext of val read under key (a what of instance id, for
// errors): ErrEncryptionKeyMissing when its key is not in the file,
// ErrCorrupt when it does not open (cut short, altered, moved from another
// key).
func (v values) open(key, val []byte, what, id string) ([]byte, error) {
	if !bytes.HasPrefix(val, []byte(seal.Prefix)) {
		return val, nil
	}
	if v.keys == nil {
		name, _ := seal.KeyOf(val)
		return nil, fmt.Errorf("store: %s of instance %s sealed with key %q, and this relay has no --encryption-key-file: %w", what, id, name, ErrEncryptionKeyMissing)
	}
	plain, _, err := v.keys.Open(key, val)
	var km *seal.KeyMissingError
	switch {
	case errors.As(err, &km):
		return nil, fmt.Errorf("store: %s of instance %s sealed with key %q: %w", what, id, km.Name, ErrEncryptionKeyMissing)
	case err != nil:
		return nil, corrupt(what, id)
	}
	return plain, nil
}
