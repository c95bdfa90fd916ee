package fleet

import (
	"strings"
	"testing"
	"time"
)

const inst = "abcdefghijklmnopqrstuvwxyz"

func TestScopeOf(t *testing.T) {
	tests := []struct {
		reason   string
		hasIssue bool
		want     Scope
	}{
		{ReasonPerIssue, true, ScopeIssue},
		{ReasonPerIssue, false, ScopeEndpoint}, // a download names no issue
		{ReasonBurst, true, ScopeEndpoint},
		{"", true, ScopeEndpoint},
		{"jira-something-new", true, ScopeEndpoint},
		{ReasonTenantQuota, false, ScopeTenant},
		{ReasonGlobalQuota, true, ScopeGlobal},
	}
	for _, tt := range tests {
		if got := ScopeOf(tt.reason, tt.hasIssue); got != tt.want {
			t.Errorf("ScopeOf(%q, %v) = %v, want %v", tt.reason, tt.hasIssue, got, tt.want)
		}
	}
}

func TestKeys(t *testing.T) {
	for _, tt := range []struct {
		s     Scope
		ep    Endpoint
		issue string
		want  string
	}{
		{ScopeGlobal, Upload, "", "global"},
		{ScopeTenant, Download, "", "tenant/" + inst},
		{ScopeEndpoint, Upload, "", "endpoint/" + inst + "/upload"},
		{ScopeEndpoint, Download, "", "endpoint/" + inst + "/download"},
		{ScopeIssue, Upload, "ABC-12", "issue/" + inst + "/ABC-12"},
		{ScopeIssue, Upload, "10001", "issue/" + inst + "/10001"},
	} {
		k := ScopeKey(tt.s, inst, tt.ep, tt.issue)
		if k != tt.want {
			t.Errorf("ScopeKey(%v) = %q, want %q", tt.s, k, tt.want)
		}
		if s, err := parseKey(k); err != nil || s != tt.s {
			t.Errorf("parseKey(%q) = %v, %v", k, s, err)
		}
	}
	for _, bad := range []string{"", "global/x", "tenant", "tenant/short", "tenant/" + inst + "/x",
		"endpoint/" + inst, "endpoint/" + inst + "/put", "issue/" + inst + "/", "issue/" + inst + "/abc-1",
		"issue/" + inst + "/ABC-1/x", "other/" + inst, "../tenant/" + inst} {
		if _, err := parseKey(bad); err == nil {
			t.Errorf("parseKey(%q) accepted", bad)
		}
	}
}

func TestParseRecord(t *testing.T) {
	r, err := parseRecord([]byte(`{"until":"2026-12-04T10:00:00Z","reason":"jira-burst-based","relay":"r1"}`))
	if err != nil || r.Reason != ReasonBurst || !r.Until.Equal(time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("parseRecord: %+v, %v", r, err)
	}
	r, err = parseRecord([]byte(`{"until":"2026-12-04T10:00:00Z","reason":"<script>\r\nX-Evil: 1"}`))
	if err != nil || r.Reason != "" {
		t.Errorf("a reason that is not a token must be dropped: %+v, %v", r, err)
	}
	for _, bad := range []string{``, `null`, `{}`, `{"until":"soon"}`, `[1]`, `{"until":5}`} {
		if _, err := parseRecord([]byte(bad)); err == nil {
			t.Errorf("parseRecord(%q) accepted", bad)
		}
	}
}

// FuzzParseKey: any key a hand could write is either refused or one the
// relay itself makes (so it names a scope of a real shape).
func FuzzParseKey(f *testing.F) {
	for _, k := range []string{"global", "tenant/" + inst, "endpoint/" + inst + "/upload", "issue/" + inst + "/ABC-1", "issue//", "\x00"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, k string) {
		s, err := parseKey(k)
		if err != nil {
			return
		}
		parts := strings.Split(k, "/")
		var ep Endpoint
		issue := ""
		if s == ScopeEndpoint && parts[2] == "download" {
			ep = Download
		}
		if s == ScopeIssue {
			issue = parts[2]
		}
		id := ""
		if len(parts) > 1 {
			id = parts[1]
		}
		if again := ScopeKey(s, id, ep, issue); again != k {
			t.Fatalf("parseKey(%q) accepted a key the relay would write as %q", k, again)
		}
	})
}

// FuzzParseRecord: no value crashes the reader, and a reason passed back
// to callers is always a plain token.
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"until":"2026-12-04T10:00:00Z","reason":"jira-burst-based"}`))
	f.Add([]byte(`{"until":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"until":"9999-12-31T23:59:59Z","reason":"\u0000"}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := parseRecord(v)
		if err != nil {
			return
		}
		if r.Reason != CleanReason(r.Reason) || r.Until.IsZero() {
			t.Fatalf("parseRecord(%q) = %+v", v, r)
		}
	})
}
