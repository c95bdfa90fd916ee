package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A catch-up whose watch starts far behind (more revisions than etcd sends
// in one batch, each batch stamped with the store's current revision)
// replays every change up to the revision asked, not only the first batch:
// a move or re-key that stopped early would leave writes behind.
func TestCatchUpFarBehind(t *testing.T) {
	cli, p := etcdtest.Shared(t)
	ctx := context.Background()
	from, err := cli.Get(ctx, p+"nothing")
	if err != nil {
		t.Fatal(err)
	}
	const writes = 2500 // etcd's unsynced watchers get 1,000 revisions a batch
	for i := range writes {
		if _, err := cli.Put(ctx, fmt.Sprintf("%sk/%05d", p, i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	now, err := cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	seen := map[string]bool{}
	applied, err := store.CatchUpUntil(wctx, cli, cli.Watch(wctx, p, clientv3.WithPrefix(), clientv3.WithRev(from.Header.Revision+1)),
		from.Header.Revision, now.Header.Revision, func(_ context.Context, evs []*clientv3.Event) (int, error) {
			for _, ev := range evs {
				seen[string(ev.Kv.Key)] = true
			}
			return len(evs), nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != writes || applied != writes {
		t.Fatalf("caught up %d keys (%d events) of %d written before revision %d", len(seen), applied, writes, now.Header.Revision)
	}
}
