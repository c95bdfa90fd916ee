package opstest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// apiResp is one answer of the relay.
type apiResp struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test when it is not JSON.
func (r apiResp) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %s", r.Status, err, r.Body)
	}
}

// ErrorCode is the code of a {"error":{"code","message"}} body, or "".
func (r apiResp) ErrorCode() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

var httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}

// call makes one request. body may be nil, a string, []byte, or any value
// sent as JSON. headers are name, value pairs.
func call(t testing.TB, method, url string, body any, headers ...string) apiResp {
	t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
		ct = "application/json"
	case []byte:
		rd = bytes.NewReader(b)
		ct = "application/json"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
		ct = "application/json"
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	return apiResp{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// mustStatus fails unless r has the status.
func mustStatus(t testing.TB, r apiResp, status int, what string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.Status, status, r.Body)
	}
}

// tenant is an instance registered through the API.
type tenant struct {
	ID        string
	ClientKey string
	AdminKey  string
	URL       string // as the relay normalised it
}

// register registers an instance with the Jira URL jiraURL.
func register(t testing.TB, relayURL, jiraURL string, headers ...string) tenant {
	t.Helper()
	r := call(t, "POST", relayURL+"/v1/instances", map[string]any{
		"url": jiraURL, "jiraVersion": "1001.0.0-SNAPSHOT", "addinVersion": "1.4.0",
		"license": map[string]any{"key": "SEN-1234", "expiresAt": "2030-01-01T00:00:00Z", "seats": 25},
	}, headers...)
	mustStatus(t, r, 201, "register "+jiraURL)
	var a struct {
		InstanceID string `json:"instanceId"`
		ClientKey  string `json:"clientKey"`
		AdminKey   string `json:"adminKey"`
		Instance   struct {
			URL string `json:"url"`
		} `json:"instance"`
	}
	r.JSON(t, &a)
	return tenant{ID: a.InstanceID, ClientKey: a.ClientKey, AdminKey: a.AdminKey, URL: a.Instance.URL}
}

// waitFor polls cond every 20 ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startRelay is relaytest.Start (or StartWithEtcd, given a client), followed
// by one request: relaytest's cleanup waits forever when the test ends before
// the server's Serve goroutine has run (fasthttp's Shutdown then finds no
// listener to close), as a test that fails early would.
func startRelay(t testing.TB, cli *clientv3.Client, mutate func(*configs.Config)) *relaytest.Relay {
	t.Helper()
	var r *relaytest.Relay
	if cli == nil {
		r = relaytest.Start(t, mutate)
	} else {
		r = relaytest.StartWithEtcd(t, cli, mutate)
	}
	if !waitFor(5*time.Second, func() bool {
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
