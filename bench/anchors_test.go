package bench

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/store"
)

// TestFloorRecord: the etcd floor writes the bytes the store writes for a
// mapping (json.Marshal of a store.Mapping), without encoding/json.
func TestFloorRecord(t *testing.T) {
	at := time.Date(2026, 12, 4, 11, 22, 33, 456_000_000, time.UTC)
	for _, tc := range []struct {
		name string
		m    floorMapping
	}{
		{"bench ids", floorMapping{conv: "AAQkADQ2+bench/run-1=", mail: "<f12.run@bench.example.com>", user: "bench-run-user-3",
			app: "outlook", issue: "20012", key: "BENCH-13", project: "10000", created: at}},
		{"whole second", floorMapping{conv: "c", mail: "m", user: "u", app: "a", issue: "1", key: "A-1", project: "2", created: at.Truncate(time.Second)}},
		{"escapes", floorMapping{conv: "a\"b\\c\nd\te\rf\x01g", mail: "<x&y>", user: "\x7f\x1f", app: "o", issue: "3", key: "K-3", project: "4", created: at}},
		{"non-ASCII", floorMapping{conv: "é\u2028", mail: "m", user: "u", app: "o", issue: "5", key: "K-5", project: "6", created: at}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal(store.Mapping{ConversationID: tc.m.conv, MailID: tc.m.mail, UserID: tc.m.user, App: tc.m.app,
				Jira: store.JiraRef{ID: tc.m.issue, Key: tc.m.key, ProjectID: tc.m.project}, CreatedAt: tc.m.created})
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.m.record([]byte("junk")[:0]); string(got) != string(want) {
				t.Errorf("floor record\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestParseAnchors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		conc int
		want []Anchor
	}{
		{DefaultAnchors, 0, []Anchor{{OpConfig, 32}, {OpMapWrite, 64}, {OpMapRead, 32}}},
		{"config", 0, []Anchor{{OpConfig, 32}}},
		{"config=16, config=32,map-read", 8, []Anchor{{OpConfig, 16}, {OpConfig, 32}, {OpMapRead, 8}}},
		{"map-write=1", 0, []Anchor{{OpMapWrite, 1}}},
	} {
		got, err := ParseAnchors(tc.in, tc.conc)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseAnchors(%q, %d) = %v, %v; want %v", tc.in, tc.conc, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", ",", "upload", "config=0", "config=10001", "config=x", "nope", "config,config", "map-read=4,map-read=4"} {
		if got, err := ParseAnchors(bad, 0); err == nil {
			t.Errorf("ParseAnchors(%q) = %v, want an error", bad, got)
		}
	}
}
