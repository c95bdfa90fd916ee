package store_test

import (
	"strings"
	"testing"

	"github.com/jira-relay/jira-relay/store"
)

func TestEscapeSegment(t *testing.T) {
	for in, want := range map[string]string{
		"1220":                    "1220",
		"ITSM-34":                 "ITSM-34",
		"AAQk/x+y=":               "AAQk%2Fx+y=",
		"<a@b.c>":                 "%3Ca@b.c%3E",
		"..":                      "%2E%2E",
		".":                       "%2E",
		"a.b":                     "a.b",
		"%2F":                     "%252F",
		"a b\r\n":                 "a%20b%0D%0A",
		"ü":                       "%C3%BC",
		"https://x.atlassian.net": "https%3A%2F%2Fx.atlassian.net",
	} {
		if got := store.EscapeSegment(in); got != want {
			t.Errorf("EscapeSegment(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzEscapeSegment(f *testing.F) {
	for _, s := range []string{"", "a", "..", "<x@y>", "a/b/../c", "%", "%2F", "\x00\xff", "AAQk/x+y="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := store.EscapeSegment(s)
		if strings.ContainsAny(e, "/ \x00\r\n\t%") && strings.ContainsAny(strings.ReplaceAll(e, "%", ""), "/ \x00\r\n\t") {
			t.Fatalf("escaped %q holds a separator or control byte: %q", s, e)
		}
		if s != "" && strings.Trim(e, ".") == "" {
			t.Fatalf("escaped %q is a path step: %q", s, e)
		}
		back, err := store.UnescapeSegment(e)
		if err != nil || back != s {
			t.Fatalf("round trip %q → %q → %q, %v", s, e, back, err)
		}
	})
}

func FuzzValidIssueKey(f *testing.F) {
	for _, s := range []string{"ITSM-34", "A-1", "AB-1", "A1_B-99", "ab-1", "AB-", "AB-1x", "../AB-1", "AB-1/../x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !store.ValidIssueIDOrKey(s) {
			return
		}
		if strings.ContainsAny(s, "/.%?#\\ \r\n") {
			t.Fatalf("%q accepted as an issue id or key", s)
		}
	})
}
