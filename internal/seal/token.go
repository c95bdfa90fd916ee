package seal

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"sync"
)

// TokenSize is a token's length in bytes before encoding (128 bits).
const TokenSize = 16

// Tokenizer turns ids into the tokens that stand for them in etcd keys:
// HMAC-SHA-256 under a key derived from one key of the file and the
// tenant, truncated to 128 bits, in unpadded base64url (22 characters).
// Equal ids of one tenant give equal tokens; nothing can be learnt of an
// id from its token without the key, and one id gives unrelated tokens in
// two tenants. It is safe for concurrent use.
type Tokenizer struct {
	key  string
	pool sync.Pool // of *tokenState
}

// tokenState is an HMAC under a tenant's token key with its buffers.
type tokenState struct {
	h   hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

// Tokens returns the tokenizer of tenant (a stable id of the tenant's
// own, e.g. its data id) under the key named keyName. The key a tenant's
// tokens use must stay in the file until its keys are rewritten under
// another.
func (r *Keyring) Tokens(keyName, tenant string) (*Tokenizer, error) {
	k := r.byName[keyName]
	if k == nil {
		return nil, &KeyMissingError{Name: keyName}
	}
	tk, err := hkdf.Key(sha256.New, k.secret, []byte(tenant), "jira-relay/v1/tokens", sha256.Size)
	if err != nil {
		return nil, err
	}
	t := &Tokenizer{key: keyName}
	t.pool.New = func() any { return &tokenState{h: hmac.New(sha256.New, tk)} }
	return t, nil
}

// Key is the name of the key the tokens are derived from.
func (t *Tokenizer) Key() string { return t.key }

// Append appends id's token to dst.
func (t *Tokenizer) Append(dst []byte, id string) []byte {
	st := t.pool.Get().(*tokenState)
	st.h.Reset()
	st.in = append(st.in[:0], id...)
	st.h.Write(st.in)
	dst = base64.RawURLEncoding.AppendEncode(dst, st.h.Sum(st.sum[:0])[:TokenSize])
	t.pool.Put(st)
	return dst
}

// Token is id's token.
func (t *Tokenizer) Token(id string) string { return string(t.Append(nil, id)) }
