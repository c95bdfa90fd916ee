package proxy_test

import (
	"os"
	"testing"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
)

// TestMain stops the shared etcd member the relays of relaytest.Start run
// over (etcdtest.Shared) after the tests.
//
// Tests that measure the process (heap, goroutines, allocations) or hold
// tight timings do not call t.Parallel: a package's parallel top-level tests
// are held until every serial one has returned, so the serial ones run
// alone.
func TestMain(m *testing.M) { os.Exit(etcdtest.Main(m)) }
