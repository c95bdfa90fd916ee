package store

import (
	"errors"
	"strings"

	"github.com/jira-relay/jira-relay/internal/seal"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The key layout (version 2), documented for operators in
// docs/key-layout.md. P is the configured prefix (default /jira-relay/).
// Keys split in two parts: the directory (what every relay caches and
// watches: which tenants exist, their records and configurations) and each
// tenant's data (users, mappings, error reports) under a short data id.
//
//	P layout                                  → {"version":2}          the layout version (layout.go)
//	P urls/<url>                              → {"instanceId": ...}    directory: normalised URL → instance
//	P cloudids/<cloudId>                      → {"instanceId": ...}    directory: a Cloud site's cloud id → instance
//	P dataids/<dataId>                        → {"instanceId": ...}    directory: data id → instance
//	P instances/<id>/instance                 → the instance record (with its dataId)
//	P instances/<id>/config                   → the admin's configuration document
//	P d/<dataId>/tenant                       → {"instanceId": ...}    the tenant's data exists (writes require it)
//	P d/<dataId>/users/<user>                 → {"userId","name","email",...}
//	P d/<dataId>/m/<mail~>/<user~>/<issueId>  → a mapping (the one record holding it)
//	P d/<dataId>/c/<conv~>/<user~>/<mail~>/<issueId> → ""  lookup by conversation
//	P d/<dataId>/i/<issueId>/<user~>/<mail~>  → ""  lookup by issue id
//	P d/<dataId>/k/<issueKey>/<user~>/<mail~>/<issueId> → ""  lookup by issue key
//	P d/<dataId>/u/<user~>/<mail~>/<issueId>  → ""  a user's mappings (export, erase)
//	P d/<dataId>/reports/<millis>-<random>    → error report (on a lease)
//
// <x~> is Token(x): 12 characters standing for an outside id of any length
// (tokens.go). Index entries are keys only: the key names its mapping's
// record. Ids that appear whole in keys (user ids of user records, issue
// ids and keys) are escaped with EscapeSegment, so a segment never holds a
// "/" and never acts as a path.
type keys struct {
	prefix string
}

func (k keys) layout() string               { return k.prefix + "layout" }
func (k keys) url(normalised string) string { return k.prefix + "urls/" + EscapeSegment(normalised) }
func (k keys) urls() string                 { return k.prefix + "urls/" }
func (k keys) cloudID(id string) string     { return k.prefix + "cloudids/" + id }
func (k keys) cloudIDs() string             { return k.prefix + "cloudids/" }
func (k keys) dataID(d string) string       { return k.prefix + "dataids/" + d }
func (k keys) dataIDs() string              { return k.prefix + "dataids/" }
func (k keys) instances() string            { return k.prefix + "instances/" }
func (k keys) directory(id string) string   { return k.prefix + "instances/" + id + "/" }
func (k keys) instance(id string) string    { return k.directory(id) + "instance" }
func (k keys) config(id string) string      { return k.directory(id) + "config" }

// cooldownOps delete the fleet's cool-down keys of a tenant (written by
// internal/fleet: P fleet/cooldowns/tenant/<id>, endpoint/<id>/…,
// issue/<id>/…), so that an erased tenant leaves no key naming it.
func (k keys) cooldownOps(id string) []clientv3.Op {
	c := k.prefix + "fleet/cooldowns/"
	return []clientv3.Op{clientv3.OpDelete(c + "tenant/" + id), deletePrefix(c + "endpoint/" + id + "/"), deletePrefix(c + "issue/" + id + "/")}
}

// data is one tenant's data: its prefix, and the tokenizer that turns the
// outside ids in its keys into tokens (tokens.go): nil for unkeyed tokens
// (Token), a tenant's keyed tokens with an encryption key file.
type data struct {
	p   string
	tok *seal.Tokenizer
}

// data is the prefix of the tenant whose data id is dataID, with unkeyed
// tokens: enough for what works on the whole prefix (copy, erase); the
// keys of a tenant's ids come from Store.tenantOf's, which has its tokens.
func (k keys) data(dataID string) data { return data{p: k.prefix + "d/" + dataID + "/"} }

func (d data) all() string                   { return d.p }
func (d data) tenant() string                { return d.p + "tenant" }
func (d data) users() string                 { return d.p + "users/" }
func (d data) user(user string) string       { return d.p + "users/" + d.token(user) }
func (d data) reports() string               { return d.p + "reports/" }
func (d data) report(reportID string) string { return d.p + "reports/" + EscapeSegment(reportID) }

// token is the token of an outside id in this tenant's keys.
func (d data) token(id string) string {
	if d.tok == nil {
		return Token(id)
	}
	return d.tok.Token(id)
}

// mappingRef names one mapping: the tokens of its mail and user, and its
// issue id (escaped). Index keys end in the three; the record's key is
// built from them.
type mappingRef struct{ mail, user, issue string }

func (d data) refOf(m *Mapping) mappingRef {
	return mappingRef{mail: d.token(m.MailID), user: d.token(m.UserID), issue: EscapeSegment(m.Jira.ID)}
}

func (d data) mapping(r mappingRef) string {
	return d.p + "m/" + r.mail + "/" + r.user + "/" + r.issue
}

// Index kinds: the segment after the data prefix.
const (
	idxMail         = "m/" // the records themselves, by mail then user
	idxConversation = "c/"
	idxIssue        = "i/"
	idxIssueKey     = "k/"
	idxUser         = "u/"
)

// mappingKeys lists every key that holds mapping m: its record first, then
// its index entries.
func (d data) mappingKeys(m *Mapping) []string {
	r := d.refOf(m)
	out := make([]string, 0, 5)
	out = append(out, d.mapping(r))
	if m.ConversationID != "" {
		out = append(out, d.p+idxConversation+d.token(m.ConversationID)+"/"+r.user+"/"+r.mail+"/"+r.issue)
	}
	return append(out,
		d.p+idxIssue+r.issue+"/"+r.user+"/"+r.mail,
		d.p+idxIssueKey+EscapeSegment(m.Jira.Key)+"/"+r.user+"/"+r.mail+"/"+r.issue,
		d.p+idxUser+r.user+"/"+r.mail+"/"+r.issue,
	)
}

// refFromIndex reads the mapping an index key names. value is the indexed
// value as it appears in the key (a token, an escaped issue id or key) and
// rest the part of the key after kind + value + "/".
func refFromIndex(kind, value, rest string) (mappingRef, bool) {
	parts := strings.Split(rest, "/")
	switch {
	case kind == idxConversation && len(parts) == 3, kind == idxIssueKey && len(parts) == 3:
		return mappingRef{user: parts[0], mail: parts[1], issue: parts[2]}, true
	case kind == idxIssue && len(parts) == 2:
		return mappingRef{user: parts[0], mail: parts[1], issue: value}, true
	case kind == idxUser && len(parts) == 2:
		return mappingRef{user: value, mail: parts[0], issue: parts[1]}, true
	}
	return mappingRef{}, false
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
