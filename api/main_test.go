package api_test

import (
	"os"
	"testing"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
)

// TestMain runs the package's tests over one shared embedded etcd (a key
// prefix per test).
func TestMain(m *testing.M) { os.Exit(etcdtest.Main(m)) }
