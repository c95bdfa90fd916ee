package upload

import (
	"crypto/rand"
	"encoding/hex"
)

// boundaryBytes random bytes give a 48-character hex boundary: 192 bits, so
// it cannot plausibly occur inside a payload, and well within RFC 2046's
// 70-character limit with only characters from its bchars set.
const boundaryBytes = 24

// newBoundary returns a fresh random multipart boundary.
func newBoundary() (string, error) {
	var b [boundaryBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
