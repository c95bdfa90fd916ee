package store

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jira-relay/jira-relay/internal/seal"
)

// TokenLen is the length of an unkeyed token: 12 characters of unpadded
// base64url, 72 bits of SHA-256.
const TokenLen = 12

// Token stands for an outside id of any length (an Outlook conversation or
// message id, a user id) in a key of a tenant without encryption: the first
// 9 bytes of SHA-256 over "jira-relay\x00" + id, in unpadded base64url (12
// characters of A–Z a–z 0–9 - _). A key built of tokens has a fixed size
// however long the ids are; the record the key leads to holds the ids
// themselves, and every read compares them, so two ids of one token (one
// chance in 2^72 for a pair) never mix: a lookup skips the record of the
// other id. Operators compute a token with
//
//	printf 'jira-relay\0%s' "$ID" | sha256sum | head -c 18 | xxd -r -p | basenc --base64url
//
// With an encryption key file a tenant's tokens are keyed instead
// (TokensOf): HMAC-SHA-256 under a key derived from the file's key and the
// tenant's data id, 128 bits, 22 characters, which nobody without the key
// file can compute (relay encryption key-of does).
func Token(id string) string {
	h := sha256.New()
	h.Write([]byte("jira-relay\x00"))
	h.Write([]byte(id))
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(h.Sum(sum[:0])[:9])
}

// Token schemes, the value of an instance record's "tokens".
const (
	// TokensUnkeyed: Token, for a tenant written without a key file.
	TokensUnkeyed = "sha256"
	// tokensKeyed prefixes the name of the key whose tokens a tenant uses.
	tokensKeyed = "hmac:"
)

// tokensScheme is the scheme new data is written with: keyed by the key
// file's first key, or unkeyed without a key file.
func (s *Store) tokensScheme() string {
	if s.vals.keys == nil {
		return TokensUnkeyed
	}
	return tokensKeyed + s.vals.keys.Primary()
}

// tokenizers caches each tenant's tokenizer (a key derivation per tenant
// and key, not per request), by key name and data id.
type tokenizers struct {
	mu sync.RWMutex
	m  map[tokenizerKey]*seal.Tokenizer
}

type tokenizerKey struct{ name, dataID string }

// tokenizer is the tokenizer of scheme for the tenant of dataID: nil for
// unkeyed tokens (and for a record of layout 2, which has none),
// ErrEncryptionKeyMissing when the key is not in the key file.
func (s *Store) tokenizer(scheme, dataID, instanceID string) (*seal.Tokenizer, error) {
	name, keyed := strings.CutPrefix(scheme, tokensKeyed)
	if !keyed {
		if scheme != "" && scheme != TokensUnkeyed {
			return nil, corrupt("instance", instanceID)
		}
		return nil, nil
	}
	if s.vals.keys == nil {
		return nil, fmt.Errorf("store: the keys of instance %s are tokens of key %q, and this relay has no --encryption-key-file: %w", instanceID, name, ErrEncryptionKeyMissing)
	}
	ck := tokenizerKey{name, dataID}
	s.toks.mu.RLock()
	t := s.toks.m[ck]
	s.toks.mu.RUnlock()
	if t != nil {
		return t, nil
	}
	t, err := s.vals.keys.Tokens(name, dataID)
	var km *seal.KeyMissingError
	if errors.As(err, &km) {
		return nil, fmt.Errorf("store: the keys of instance %s are tokens of key %q: %w", instanceID, km.Name, ErrEncryptionKeyMissing)
	} else if err != nil {
		return nil, err
	}
	s.toks.mu.Lock()
	defer s.toks.mu.Unlock()
	if s.toks.m == nil {
		s.toks.m = map[tokenizerKey]*seal.Tokenizer{}
	}
	if old := s.toks.m[ck]; old != nil {
		return old, nil
	}
	s.toks.m[ck] = t
	return t, nil
}

// TokensKey is the key file's key name a token scheme uses, "" for
// unkeyed tokens.
func TokensKey(scheme string) string {
	name, _ := strings.CutPrefix(scheme, tokensKeyed)
	if name == scheme {
		return ""
	}
	return name
}
