package upload

import (
	"mime"
	"strings"
	"unicode/utf8"
)

// MaxFilenameLen is the longest filename, in characters (Unicode code
// points), that ValidateFilename accepts: Outlook's limit for an attachment
// name.
const MaxFilenameLen = 255

// ValidateFilename reports whether name can be used as an attachment's
// filename: it must be valid UTF-8, not empty or all white space, and at most
// MaxFilenameLen characters long. The error is a *FilenameError (matching
// ErrBadFilename). Control characters and quotes are allowed: the encoding
// of EncodeDispositionParams carries them safely.
func ValidateFilename(name string) error {
	switch {
	case !utf8.ValidString(name):
		return &FilenameError{Reason: "not valid UTF-8"}
	case strings.TrimSpace(name) == "":
		return &FilenameError{Reason: "empty"}
	case utf8.RuneCountInString(name) > MaxFilenameLen:
		return &FilenameError{Reason: "longer than 255 characters"}
	}
	return nil
}

// EncodeDispositionParams returns the filename parameters of a multipart
// part's Content-Disposition header (RFC 7578 §4.2, RFC 5987) for filename.
//
// A name of printable ASCII without '"' or '\' is sent as is:
//
//	filename="report.pdf"
//
// Any other name is sent twice: in filename="…" with '"', '\', control
// characters and every non-ASCII byte percent-encoded (as browsers encode
// '"' → %22, CR → %0D, LF → %0A), for receivers that know only that form;
// and exactly, as UTF-8 percent-encoded in filename*, which RFC 6266
// receivers (and Go's mime package) prefer:
//
//	filename="%E2%82%AC %22q%22.pdf"; filename*=UTF-8''%E2%82%AC%20%22q%22.pdf
//
// The result never contains CR, LF, NUL or an unescaped '"', whatever
// filename holds.
func EncodeDispositionParams(filename string) string {
	plain := true
	for i := 0; i < len(filename); i++ {
		if c := filename[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			plain = false
			break
		}
	}
	if plain {
		return `filename="` + filename + `"`
	}

	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(`filename=""; filename*=UTF-8''`) + 6*len(filename))
	b.WriteString(`filename="`)
	for i := 0; i < len(filename); i++ {
		c := filename[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		} else {
			b.WriteByte(c)
		}
	}
	b.WriteString(`"; filename*=UTF-8''`)
	for i := 0; i < len(filename); i++ {
		c := filename[i]
		if isAttrChar(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
	}
	return b.String()
}

// isAttrChar reports whether c may appear unencoded in an RFC 5987
// ext-value (attr-char).
func isAttrChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '&', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// FilenameFromContentDisposition extracts the filename from a caller's
// Content-Disposition header value, such as
//
//	attachment; filename="a.pdf"
//	attachment; filename*=UTF-8''%E2%82%AC.pdf
//
// An RFC 5987/2231 filename* (UTF-8 or US-ASCII) wins over a plain filename
// when both are present and decodable. The header must parse with
// mime.ParseMediaType; a header without a filename, or one whose filename
// fails ValidateFilename, yields a *FilenameError (matching ErrBadFilename).
// No directory part is stripped: the name is returned exactly as sent.
func FilenameFromContentDisposition(header string) (string, error) {
	_, params, err := mime.ParseMediaType(header)
	if err != nil {
		return "", &FilenameError{Reason: "unparseable Content-Disposition", Err: err}
	}
	name, ok := params["filename"]
	if !ok {
		return "", &FilenameError{Reason: "no filename in Content-Disposition"}
	}
	if err := ValidateFilename(name); err != nil {
		return "", err
	}
	return name, nil
}
