package store

import (
	"errors"
	"strings"
)

// The key layout, documented for operators in docs/key-layout.md and kept
// stable. P is the configured prefix (default /jira-relay/); every id that
// comes from outside is escaped with EscapeSegment, so a segment never holds
// a "/" and never acts as a path.
//
//	P urls/<url>                                  → {"instanceId": ...}   global index: normalised URL → instance
//	P cloudids/<cloudId>                          → {"instanceId": ...}   global index: a Cloud site's cloud id (lower-case UUID) → instance
//	P instances/<id>/instance                     → the instance record (URL, deployment type, cloud id, versions, licence, key hashes)
//	P instances/<id>/config                       → the admin's configuration document
//	P instances/<id>/users/<user>                 → {"userId","name","email",...}
//	P instances/<id>/mappings/<mail>/<user>/<issueId>          → mapping (primary record)
//	P instances/<id>/index/conversation/<conv>/<user>/<mail>/<issueId> → mapping copy
//	P instances/<id>/index/issue/<issueId>/<user>/<mail>       → mapping copy
//	P instances/<id>/index/issuekey/<key>/<user>/<mail>/<issueId> → mapping copy
//	P instances/<id>/index/user/<user>/<mail>/<issueId>        → mapping copy
//	P instances/<id>/error-reports/<millis>-<random>           → error report (on a lease)
//
// Everything of one instance lives under P instances/<id>/ (plus its urls/
// entry and, with a cloud id, its cloudids/ entry), so one `etcdctl get
// --prefix` shows a tenant and one `etcdctl del --prefix` (and the index
// entries) erases it.
type keys struct {
	prefix string
}

func (k keys) url(normalised string) string { return k.prefix + "urls/" + EscapeSegment(normalised) }
func (k keys) urls() string                 { return k.prefix + "urls/" }
func (k keys) cloudID(id string) string     { return k.prefix + "cloudids/" + id }
func (k keys) cloudIDs() string             { return k.prefix + "cloudids/" }
func (k keys) instances() string            { return k.prefix + "instances/" }
func (k keys) tenant(id string) string      { return k.prefix + "instances/" + id + "/" }
func (k keys) instance(id string) string    { return k.tenant(id) + "instance" }
func (k keys) config(id string) string      { return k.tenant(id) + "config" }
func (k keys) users(id string) string       { return k.tenant(id) + "users/" }
func (k keys) user(id, user string) string  { return k.users(id) + EscapeSegment(user) }

func (k keys) errorReports(id string) string { return k.tenant(id) + "error-reports/" }
func (k keys) errorReport(id, reportID string) string {
	return k.errorReports(id) + EscapeSegment(reportID)
}

func (k keys) mappingsByMail(id, mail string) string {
	return k.tenant(id) + "mappings/" + EscapeSegment(mail) + "/"
}

func (k keys) mapping(id string, m *Mapping) string {
	return k.mappingsByMail(id, m.MailID) + EscapeSegment(m.UserID) + "/" + EscapeSegment(m.Jira.ID)
}

func (k keys) index(id, kind, value string) string {
	return k.tenant(id) + "index/" + kind + "/" + EscapeSegment(value) + "/"
}

// mappingKeys lists every key that holds mapping m: the primary record first,
// then its index entries.
func (k keys) mappingKeys(id string, m *Mapping) []string {
	user, mail, issue := EscapeSegment(m.UserID), EscapeSegment(m.MailID), EscapeSegment(m.Jira.ID)
	out := make([]string, 0, 5)
	out = append(out, k.mapping(id, m))
	if m.ConversationID != "" {
		out = append(out, k.index(id, "conversation", m.ConversationID)+user+"/"+mail+"/"+issue)
	}
	out = append(out,
		k.index(id, "issue", m.Jira.ID)+user+"/"+mail,
		k.index(id, "issuekey", m.Jira.Key)+user+"/"+mail+"/"+issue,
		k.index(id, "user", m.UserID)+mail+"/"+issue,
	)
	return out
}

// keepByte reports the bytes that stand for themselves in an escaped segment:
// letters, digits and the few punctuation marks that Outlook and Jira ids use
// and that mean nothing to etcdctl or a shell.
func keepByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '-' || c == '_' || c == '.' || c == '~' || c == '@' || c == '+' || c == '=':
		return true
	}
	return false
}

const hexDigits = "0123456789ABCDEF"

// EscapeSegment turns an opaque id into one key segment: bytes other than
// letters, digits and -_.~@+= become %XX, so the result never contains "/",
// control characters or spaces. "." and ".." are escaped too, so no segment
// looks like a path step. Reversible with UnescapeSegment.
func EscapeSegment(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !keepByte(s[i]) {
			n++
		}
	}
	dotsOnly := s != "" && strings.Trim(s, ".") == ""
	if n == 0 && !dotsOnly {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n + 4)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keepByte(c) && !(dotsOnly && c == '.') {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// errBadEscape means a key segment was not produced by EscapeSegment.
var errBadEscape = errors.New("store: malformed escaped segment")

// UnescapeSegment reverses EscapeSegment.
func UnescapeSegment(s string) (string, error) {
	if !strings.Contains(s, "%") {
		for i := 0; i < len(s); i++ {
			if !keepByte(s[i]) {
				return "", errBadEscape
			}
		}
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if !keepByte(c) {
				return "", errBadEscape
			}
			b = append(b, c)
			continue
		}
		if i+2 >= len(s) {
			return "", errBadEscape
		}
		hi, lo := unhex(s[i+1]), unhex(s[i+2])
		if hi < 0 || lo < 0 {
			return "", errBadEscape
		}
		b = append(b, byte(hi<<4|lo))
		i += 2
	}
	return string(b), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
