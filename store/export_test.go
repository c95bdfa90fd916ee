package store

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SetMigrateHook makes the store's migration call f after each stage of a
// tenant ("copied", "switched"); an error from f stops it there.
func (s *Store) SetMigrateHook(f func(stage, id string) error) { s.hook = f }

// CatchUpUntil replays the changes the watch ch delivers (from after
// revision from) with apply until every one up to rev is replayed, as a
// move or re-key does, and returns how many it replayed.
func CatchUpUntil(ctx context.Context, w clientv3.Watcher, ch clientv3.WatchChan, from, rev int64,
	apply func(context.Context, []*clientv3.Event) (int, error)) (int, error) {
	c := &catchUp{apply: apply, ch: ch, watcher: w, ctx: ctx, seen: from}
	err := c.until(rev)
	return c.applied, err
}
