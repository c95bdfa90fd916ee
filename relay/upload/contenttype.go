package upload

import (
	"mime"
	"strings"
)

// DefaultContentType is the part Content-Type used when the caller gives
// none.
const DefaultContentType = "application/octet-stream"

// NormalizeContentType validates a caller's Content-Type and returns it
// re-formatted by mime.FormatMediaType: lower-case type/subtype, parameters
// sorted and quoted or RFC 2231-encoded as needed. Re-formatting guarantees
// the result holds no CR, LF or other byte that could break out of a header
// line. An empty (or all-space) value yields DefaultContentType; a value that
// does not parse, or that has no "/", yields a *ContentTypeError (matching
// ErrBadContentType).
func NormalizeContentType(contentType string) (string, error) {
	if strings.TrimSpace(contentType) == "" {
		return DefaultContentType, nil
	}
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", &ContentTypeError{Value: contentType, Err: err}
	}
	if !strings.Contains(mediaType, "/") {
		return "", &ContentTypeError{Value: contentType}
	}
	out := mime.FormatMediaType(mediaType, params)
	if out == "" {
		return "", &ContentTypeError{Value: contentType}
	}
	return out, nil
}
