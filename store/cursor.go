package store

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
)

// Paging cursors name the last key of a page (below the listing's prefix),
// with a CRC-32C of the listing's prefix and that key, so that a cursor this
// relay did not give out (typed, cut or altered), or one given out for
// another listing (another query, another instance), is refused with
// ErrBadCursor instead of quietly listing from somewhere else. A cursor can
// only point inside the listing's own prefix, so the checksum is about
// clear errors, not access.

var cursorTable = crc32.MakeTable(crc32.Castagnoli)

// cursorSum is the checksum of key suffix rest in the listing under prefix.
func cursorSum(prefix string, rest []byte) uint32 {
	sum := crc32.Update(0, cursorTable, []byte(prefix))
	sum = crc32.Update(sum, cursorTable, []byte{0}) // keys hold no NUL
	return crc32.Update(sum, cursorTable, rest)
}

// encodeCursor makes the cursor that continues the listing under prefix
// after key suffix rest.
func encodeCursor(prefix string, rest []byte) string {
	b := make([]byte, len(rest)+4)
	copy(b, rest)
	binary.BigEndian.PutUint32(b[len(rest):], cursorSum(prefix, rest))
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor returns the key suffix a cursor of the listing under prefix
// names, refusing cursors not made by encodeCursor for that listing, empty
// ones, and ones longer than max bytes.
func decodeCursor(prefix, c string, max int) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) <= 4 || len(b) > max+4 {
		return "", ErrBadCursor
	}
	rest, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if cursorSum(prefix, rest) != sum || bytes.IndexByte(rest, 0) >= 0 {
		return "", ErrBadCursor
	}
	return string(rest), nil
}
