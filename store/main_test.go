package store_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"go.uber.org/goleak"
)

// TestMain runs the tests on the shared etcd member (etcdtest.Shared), stops
// it, and fails the run if a goroutine is left behind: of a Store's cache, a
// client, or an etcd member.
func TestMain(m *testing.M) {
	code := etcdtest.Main(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "store tests left goroutines behind: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
