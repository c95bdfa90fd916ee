package opstest

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// repoRoot is the module's root directory (the one holding go.mod).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if b, _ := os.ReadFile(filepath.Join(dir, "go.mod")); bytes.Contains(b, []byte("module github.com/jira-relay/jira-relay\n")) {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("opstest: the module root (go.mod of github.com/jira-relay/jira-relay) is not above the working directory")
		}
		dir = parent
	}
}

// readRepoFile reads a file of the repository by its slash path.
func readRepoFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// inCI reports whether the test runs in CI (.ci/run sets CI=true).
func inCI() bool { return os.Getenv("CI") == "true" }

// missing fails the test in CI and skips it elsewhere: a tool the test needs
// is not installed.
func missing(t testing.TB, what, install string) {
	t.Helper()
	if inCI() {
		t.Fatalf("%s is missing, and CI=true requires it. Install it: %s", what, install)
	}
	t.Skipf("%s is missing (install: %s); skipped outside CI", what, install)
}

// lookTool finds an executable on PATH, or calls missing.
func lookTool(t testing.TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, name, install)
	}
	return p
}

// Install hints, also the lines .ci/run carries.
const (
	installEtcdctl  = "apt-get install -y etcd-client"
	installEtcdutl  = "go build -C deploy/tools/etcd -o /usr/local/bin/ go.etcd.io/etcd/etcdutl/v3"
	installNode     = "Node.js 20 or later with npm (the machine's node; Debian 12's nodejs package is 18, too old for playwright-core)"
	installChromium = "apt-get install -y chromium"
	installNodeMods = "(cd clients/js && npm ci)"
)

var httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}

// call makes one request to url with httpClient, failing the test on a
// transport error. body may be nil, a string, []byte, or any value sent as
// JSON. headers are name, value pairs.
func call(t testing.TB, method, url string, body any, headers ...string) relaytest.Answer {
	t.Helper()
	c := &relaytest.Client{T: t, HTTP: httpClient}
	return c.Do(method, url, "", body, headers...)
}

// mustStatus fails unless r has the status.
func mustStatus(t testing.TB, r relaytest.Answer, status int, what string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.Status, status, r.Body)
	}
}

// register registers an instance with the Jira URL jiraURL at the relay
// at relayURL; headers are extra name, value pairs.
func register(t testing.TB, relayURL, jiraURL string, headers ...string) relaytest.Tenant {
	t.Helper()
	c := &relaytest.Client{T: t, Base: relayURL, HTTP: httpClient}
	return c.MustRegister(t, jiraURL, headers...)
}

// startRelay is relaytest.Start (or StartWithEtcd, given a client), then a
// check that the relay answers /healthz with 200.
func startRelay(t testing.TB, cli *clientv3.Client, mutate func(*configs.Config)) *relaytest.Relay {
	t.Helper()
	var r *relaytest.Relay
	if cli == nil {
		r = relaytest.Start(t, mutate)
	} else {
		r = relaytest.StartWithEtcd(t, cli, mutate)
	}
	if !relaytest.Eventually(5*time.Second, func() bool {
		resp, err := httpClient.Get(r.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}) {
		t.Fatal("the relay does not answer /healthz")
	}
	return r
}
