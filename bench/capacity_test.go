package bench

import (
	"context"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"

	"github.com/jira-relay/jira-relay/store"
)

// TestCapacityData: the generated mappings have the shapes of real ids, are
// valid, distinct, and each conversation holds PerConv of them on one issue.
func TestCapacityData(t *testing.T) {
	d := capacityData(1000, 50, 500, 3, 1)
	if len(d.ms) != 1000 || len(d.convs) != 334 {
		t.Fatalf("%d mappings, %d conversations", len(d.ms), len(d.convs))
	}
	mailRe := regexp.MustCompile(`^<(AM6PR04MB[0-9]{4})[0-9A-F]{30}@(AM6PR04MB[0-9]{4})\.eurprd04\.prod\.outlook\.com>$`)
	userRe := regexp.MustCompile(`^557058:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	ids := map[[3]string]bool{}
	users, issues := map[string]bool{}, map[string]bool{}
	convIssue := map[string]string{}
	slashes := 0
	for i := range d.ms {
		m := &d.ms[i]
		if err := store.ValidateMapping(m); err != nil {
			t.Fatalf("mapping %d: %v", i, err)
		}
		if len(m.ConversationID) != 150 || !strings.HasPrefix(m.ConversationID, "AAQkAD") || !strings.HasSuffix(m.ConversationID, "=") {
			t.Fatalf("conversation id %q", m.ConversationID)
		}
		if _, err := base64.StdEncoding.DecodeString(m.ConversationID[6:]); err != nil {
			t.Fatalf("conversation id %q: %v", m.ConversationID, err)
		}
		slashes += strings.Count(m.ConversationID, "/")
		sm := mailRe.FindStringSubmatch(m.MailID)
		if len(m.MailID) != 85 || sm == nil || sm[1] != sm[2] {
			t.Fatalf("mail id %q (%d bytes)", m.MailID, len(m.MailID))
		}
		if !userRe.MatchString(m.UserID) {
			t.Fatalf("user id %q", m.UserID)
		}
		if len(m.Jira.ID) != 5 || !strings.HasPrefix(m.Jira.Key, "PROJ-") || m.Jira.ProjectID != "10000" || m.App != "outlook" {
			t.Fatalf("jira %+v, app %q", m.Jira, m.App)
		}
		id := [3]string{m.MailID, m.UserID, m.Jira.ID}
		if ids[id] {
			t.Fatalf("mapping %d repeats an identity", i)
		}
		ids[id] = true
		users[m.UserID], issues[m.Jira.ID] = true, true
		if is, ok := convIssue[m.ConversationID]; ok && is != m.Jira.ID {
			t.Fatalf("conversation %d spans two issues", i/3)
		}
		convIssue[m.ConversationID] = m.Jira.ID
	}
	if len(users) < 45 || len(issues) < 200 || slashes == 0 {
		t.Errorf("%d users, %d issues, %d slashes in conversation ids", len(users), len(issues), slashes)
	}
	total := 0
	for c, n := range d.perConv {
		if n < 1 || n > 3 {
			t.Errorf("conversation %d has %d mappings", c, n)
		}
		total += n
	}
	if total != 1000 {
		t.Errorf("conversations hold %d mappings", total)
	}
	if again := capacityData(1000, 50, 500, 3, 1); again.ms[999] != d.ms[999] {
		t.Error("the same seed gave other ids")
	}
}

func TestCapacityConfigRefused(t *testing.T) {
	for _, c := range []CapacityConfig{{N: -1}, {Concurrency: -2}, {Readers: 20000}, {Issues: 90_000}} {
		if _, err := RunCapacity(context.Background(), c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4043: "-4,043"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
