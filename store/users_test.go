package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jira-relay/jira-relay/store"
)

// Two user ids of one token (one chance in 2^72 for a pair, made here by
// hand: another user's record put under the token of "u-1") never mix: a
// read of u-1 finds no user, a put of u-1 is refused with ErrExists and
// leaves the other user's record whole, an erase of u-1 leaves it too.
func TestUsersOfOneTokenDoNotMix(t *testing.T) {
	t.Parallel()
	s, cli, p := newStore(t)
	ctx := context.Background()
	reg := register(t, s, "https://token-pair.atlassian.net")
	id := reg.Instance.ID
	if _, _, err := s.PutUser(ctx, id, store.User{UserID: "other", Name: "Other", Email: "other@example.com"}); err != nil {
		t.Fatal(err)
	}
	d := p + "d/" + reg.Instance.DataID + "/users/"
	otherVal := valueOf(t, cli, d+store.Token("other"))
	if _, err := cli.Put(ctx, d+store.Token("u-1"), otherVal); err != nil {
		t.Fatal(err)
	}
	if u, err := s.User(ctx, id, "u-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("User(u-1) = %+v, %v; want ErrNotFound (the record is another user's)", u, err)
	}
	if _, _, err := s.PutUser(ctx, id, store.User{UserID: "u-1", Name: "One", Email: "one@example.com"}); !errors.Is(err, store.ErrExists) {
		t.Errorf("PutUser(u-1) over another user's record: %v; want ErrExists", err)
	}
	if got := valueOf(t, cli, d+store.Token("u-1")); got != otherVal {
		t.Errorf("the other user's record changed: %q", got)
	}
	if err := s.DeleteUser(ctx, id, "u-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteUser(u-1): %v; want ErrNotFound", err)
	}
	if got := valueOf(t, cli, d+store.Token("u-1")); got != otherVal {
		t.Errorf("the erase of u-1 touched the other user's record: %q", got)
	}
	// The user's own record still goes.
	if err := s.DeleteUser(ctx, id, "other"); err != nil {
		t.Fatal(err)
	}
	if left := keysUnder(t, cli, d+store.Token("other")); len(left) != 0 {
		t.Errorf("DeleteUser(other) left %q", left)
	}
}
