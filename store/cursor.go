package store

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
)

// Paging cursors name the last key of a page (below the listing's prefix),
// with a CRC-32C of it so that a cursor this relay did not give out (typed,
// cut or altered) is refused with ErrBadCursor instead of quietly listing
// from somewhere else. A cursor can only point inside the listing's own
// prefix, so the checksum is about clear errors, not access.

var cursorTable = crc32.MakeTable(crc32.Castagnoli)

// encodeCursor makes the cursor that continues after key suffix rest.
func encodeCursor(rest []byte) string {
	b := make([]byte, len(rest)+4)
	copy(b, rest)
	binary.BigEndian.PutUint32(b[len(rest):], crc32.Checksum(rest, cursorTable))
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor returns the key suffix a cursor names, refusing cursors not
// made by encodeCursor, empty ones, and ones longer than max bytes.
func decodeCursor(c string, max int) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) <= 4 || len(b) > max+4 {
		return "", ErrBadCursor
	}
	rest, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(rest, cursorTable) != sum || bytes.IndexByte(rest, 0) >= 0 {
		return "", ErrBadCursor
	}
	return string(rest), nil
}
