package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestRelinkRacingUnlinkKeepsIndexWhole races LinkMapping updating a mapping
// in place (new conversation id and issue key, so its index entries move)
// against UnlinkMappings of the same mapping and DeleteUser of its user,
// round after round, and after each round checks the tenant's keys as an
// operator would list them: every index entry has its primary record, and
// every primary record has exactly its index entries, each a copy of it.
func TestRelinkRacingUnlinkKeepsIndexWhole(t *testing.T) {
	t.Parallel()
	s, cli, prefix := newStore(t)
	ctx := context.Background()
	id := register(t, s, "https://acme.atlassian.net").Instance.ID
	tenant := prefix + "instances/" + id + "/"
	for round := range 15 {
		mail := fmt.Sprintf("<round-%d@x>", round)
		base := mapping("conv-start", mail, "u1", "10710", "AB-1")
		if _, _, err := s.LinkMapping(ctx, id, base); err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 3 {
			wg.Go(func() {
				<-start
				for i := range 4 {
					m := base
					m.ConversationID = fmt.Sprintf("conv-%d-%d", g, i)
					m.Jira.Key = fmt.Sprintf("AB-%d", 100+10*g+i)
					if _, _, err := s.LinkMapping(ctx, id, m); err != nil {
						t.Errorf("relink: %v", err)
					}
				}
			})
		}
		for range 2 {
			wg.Go(func() {
				<-start
				for range 3 {
					if _, err := s.UnlinkMappings(ctx, id, mail, "10710", ""); err != nil && !errors.Is(err, store.ErrNotFound) {
						t.Errorf("unlink: %v", err)
					}
				}
			})
		}
		wg.Go(func() {
			<-start
			if err := s.DeleteUser(ctx, id, "u1"); err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("delete user: %v", err)
			}
		})
		close(start)
		wg.Wait()
		checkMappingIndex(t, cli, tenant)
		if t.Failed() {
			t.Fatalf("round %d left the index inconsistent", round)
		}
	}
}

// mappingKeysOf is every key that must hold mapping m under tenant, from the
// documented layout (docs/key-layout.md), computed independently of the store.
func mappingKeysOf(tenant string, m store.Mapping) []string {
	e := store.EscapeSegment
	u, mail, issue := e(m.UserID), e(m.MailID), e(m.Jira.ID)
	out := []string{
		tenant + "mappings/" + mail + "/" + u + "/" + issue,
		tenant + "index/issue/" + issue + "/" + u + "/" + mail,
		tenant + "index/issuekey/" + e(m.Jira.Key) + "/" + u + "/" + mail + "/" + issue,
		tenant + "index/user/" + u + "/" + mail + "/" + issue,
	}
	if m.ConversationID != "" {
		out = append(out, tenant+"index/conversation/"+e(m.ConversationID)+"/"+u+"/"+mail+"/"+issue)
	}
	return out
}

// checkMappingIndex fails the test unless the mappings under tenant are
// whole: each primary record's index entries exist and copy it, and no index
// entry is without its primary record.
func checkMappingIndex(t *testing.T, cli *clientv3.Client, tenant string) {
	t.Helper()
	resp, err := cli.Get(context.Background(), tenant, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{}
	for _, kv := range resp.Kvs {
		vals[string(kv.Key)] = string(kv.Value)
	}
	owned := map[string]bool{}
	for k, v := range vals {
		if !strings.HasPrefix(k, tenant+"mappings/") {
			continue
		}
		var m store.Mapping
		if err := json.Unmarshal([]byte(v), &m); err != nil {
			t.Errorf("primary %s does not decode: %v", k, err)
			continue
		}
		keys := mappingKeysOf(tenant, m)
		if keys[0] != k {
			t.Errorf("primary %s holds the mapping of %s", k, keys[0])
		}
		for _, ik := range keys {
			owned[ik] = true
			if got, ok := vals[ik]; !ok {
				t.Errorf("primary %s lacks its index entry %s", k, ik)
			} else if got != v {
				t.Errorf("index entry %s = %s, its primary %s = %s", ik, got, k, v)
			}
		}
	}
	var stray []string
	for k := range vals {
		if strings.HasPrefix(k, tenant+"index/") && !owned[k] {
			stray = append(stray, k)
		}
	}
	sort.Strings(stray)
	for _, k := range stray {
		t.Errorf("index entry without its primary record: %s", k)
	}
}
