package opstest

import (
	"os"
	"testing"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
)

// TestMain stops the shared etcd member the relays of relaytest.Start run
// over (etcdtest.Shared) after the tests.
func TestMain(m *testing.M) { os.Exit(etcdtest.Main(m)) }
