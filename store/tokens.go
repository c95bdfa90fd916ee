package store

import (
	"crypto/sha256"
	"encoding/base64"
)

// TokenLen is the length of a token: 12 characters of unpadded base64url,
// 72 bits of SHA-256.
const TokenLen = 12

// Token stands for an outside id of any length (an Outlook conversation or
// message id, a user id) in a key: the first 9 bytes of SHA-256 over
// "jira-relay\x00" + id, in unpadded base64url (12 characters of
// A–Z a–z 0–9 - _). A key built of tokens has a fixed size however long the
// ids are; the record the key leads to holds the ids themselves, and every
// read compares them, so two ids of one token (one chance in 2^72 for a
// pair) never mix: a lookup skips the record of the other id. Operators
// compute a token with
//
//	printf 'jira-relay\0%s' "$ID" | sha256sum | head -c 18 | xxd -r -p | basenc --base64url
func Token(id string) string {
	h := sha256.New()
	h.Write([]byte("jira-relay\x00"))
	h.Write([]byte(id))
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(h.Sum(sum[:0])[:9])
}
