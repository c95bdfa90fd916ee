package store

import (
	"unicode/utf8"
)

// MaxIDBytes bounds every opaque id (user, conversation, message): ids are
// stored in keys, and etcd keys are not the place for essays.
const MaxIDBytes = 1024

// ValidOpaqueID reports whether s can be used as an Outlook or user id: 1 to
// 1024 bytes of valid UTF-8 with no control characters. Its content is
// otherwise opaque (base64 with "/+=", "<...@...>").
func ValidOpaqueID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDBytes || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 {
			return false
		}
	}
	return true
}

// ValidIssueKey reports whether s has Jira's issue key form
// ^[A-Z][A-Z0-9_]+-[0-9]+$ (at most 255 bytes).
func ValidIssueKey(s string) bool {
	if len(s) < 4 || len(s) > 255 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	i := 1
	for i < len(s) && (s[i] >= 'A' && s[i] <= 'Z' || s[i] >= '0' && s[i] <= '9' || s[i] == '_') {
		i++
	}
	if i < 2 || i >= len(s) || s[i] != '-' {
		return false
	}
	return ValidNumericID(s[i+1:])
}

// ValidNumericID reports whether s is a Jira numeric id: 1 to 19 ASCII digits.
func ValidNumericID(s string) bool {
	if len(s) == 0 || len(s) > 19 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ValidIssueIDOrKey reports whether s is an issue id (digits) or key.
func ValidIssueIDOrKey(s string) bool { return ValidNumericID(s) || ValidIssueKey(s) }

// ValidInstanceID reports whether s has the form of the ids Register makes:
// 26 characters of lower-case base32.
func ValidInstanceID(s string) bool {
	if len(s) != instanceIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// validIDBytes is ValidInstanceID for a byte slice, without allocating.
func validIDBytes(b []byte) bool {
	if len(b) != instanceIDLen {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}
