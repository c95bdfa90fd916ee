package opstest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	"github.com/jira-relay/jira-relay/store"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// runbookSection is one "## " section of docs/operations.md and its ```sh
// blocks, in order.
type runbookSection struct {
	Title  string
	Blocks []string
}

// parseRunbook splits a Markdown document into its "## " sections and their
// ```sh blocks. Blocks fenced with another language are not commands.
func parseRunbook(t testing.TB, doc []byte) []runbookSection {
	t.Helper()
	var out []runbookSection
	var cur *runbookSection
	var block *strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(doc))
	line := 0
	for sc.Scan() {
		line++
		l := sc.Text()
		switch {
		case block != nil:
			if strings.TrimSpace(l) == "```" {
				if cur == nil {
					t.Fatalf("operations.md:%d: a ```sh block before the first ## section", line)
				}
				cur.Blocks = append(cur.Blocks, block.String())
				block = nil
				continue
			}
			block.WriteString(l)
			block.WriteByte('\n')
		case strings.HasPrefix(l, "```sh"):
			if strings.TrimSpace(l) != "```sh" {
				t.Fatalf("operations.md:%d: fence %q: write ```sh", line, l)
			}
			block = new(strings.Builder)
		case strings.HasPrefix(l, "```") && strings.TrimSpace(l) != "```":
			t.Fatalf("operations.md:%d: fence %q: every command block of the runbook is ```sh (the test runs them)", line, l)
		case strings.HasPrefix(l, "## "):
			out = append(out, runbookSection{Title: strings.TrimSpace(l[3:])})
			cur = &out[len(out)-1]
		}
	}
	if block != nil {
		t.Fatal("operations.md: a ```sh block is not closed")
	}
	return out
}

var placeholderRe = regexp.MustCompile(`<[A-Za-z][A-Za-z0-9]*>`)

// runbookEnv is what TestRunbook made through the API, and the values of the
// runbook's placeholders.
type runbookEnv struct {
	t        *testing.T
	relayURL string
	cli      *clientv3.Client
	endpoint string
	acme     relaytest.Tenant // the tenant the runbook works on
	other    relaytest.Tenant // a second tenant nothing may touch
	userA    string           // the user erased
	userB    string           // a user of the same conversation, who must stay
	conv     string
	mailA1   string
	mailA2   string
	config   string
	dir      string
	values   map[string]string
}

// TestRunbook runs every ```sh block of docs/operations.md, in order, with
// bash and the real etcdctl/etcdutl, against a relay whose etcd it knows,
// after creating data through the API; each block must exit 0, and each
// section's effect is checked against etcd and the API.
func TestRunbook(t *testing.T) {
	t.Parallel()
	lookTool(t, "bash", "apt-get install -y bash")
	lookTool(t, "etcdctl", installEtcdctl)
	etcdutl := lookTool(t, "etcdutl", installEtcdutl)
	checkEtcdutlVersion(t, etcdutl)
	for _, tool := range []string{"awk", "sort", "cut", "curl"} {
		lookTool(t, tool, "apt-get install -y gawk coreutils curl")
	}

	sections := parseRunbook(t, readRepoFile(t, "docs/operations.md"))
	e, cli := etcdtest.Start(t)
	r := startRelay(t, cli, nil)
	env := newRunbookEnv(t, r.URL, cli, e.Endpoints()[0])

	checks := env.checks()
	var setup string
	seen := map[string]bool{}
	ran := 0
	for _, sec := range sections {
		if len(sec.Blocks) == 0 {
			continue
		}
		c, ok := checks[sec.Title]
		if !ok {
			t.Errorf("operations.md section %q has commands but TestRunbook has no check for it: add one to runbookEnv.checks", sec.Title)
			continue
		}
		seen[sec.Title] = true
		if sec.Title == setupSection {
			if len(sec.Blocks) != 1 {
				t.Fatalf("section %q must hold exactly one block, the one every other block starts with", setupSection)
			}
			setup = env.fill(sec.Blocks[0])
		} else if setup == "" {
			t.Fatalf("section %q comes before %q", sec.Title, setupSection)
		}
		if c.before != nil {
			c.before()
		}
		var outs []string
		for i, b := range sec.Blocks {
			script := env.fill(b)
			if sec.Title != setupSection {
				script = setup + "\n" + script
			}
			outs = append(outs, env.bash(fmt.Sprintf("%s, block %d", sec.Title, i+1), script))
			ran++
		}
		if c.after != nil {
			c.after(strings.Join(outs, "\n"))
		}
		if t.Failed() {
			t.Fatalf("stopping after section %q", sec.Title)
		}
	}
	for title := range checks {
		if !seen[title] {
			t.Errorf("TestRunbook checks section %q, which operations.md does not have (or has no ```sh block)", title)
		}
	}
	t.Logf("ran %d blocks of %d sections", ran, len(seen))
}

const setupSection = "Before you start"

// checkEtcdutlVersion insists on an etcdutl of the server's minor version:
// an older one writes data dirs etcd 3.6 cannot start on.
func checkEtcdutlVersion(t *testing.T, etcdutl string) {
	out, err := exec.Command(etcdutl, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("etcdutl version: %v: %s", err, out)
	}
	gomod := string(readRepoFile(t, "go.mod"))
	m := regexp.MustCompile(`go\.etcd\.io/etcd/server/v3 v(\d+\.\d+)\.`).FindStringSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod: no go.etcd.io/etcd/server/v3 requirement")
	}
	if !strings.Contains(string(out), "etcdutl version: "+m[1]+".") {
		msg := fmt.Sprintf("etcdutl is not of etcd %s (the relay's server): %s; build it with %s", m[1], strings.TrimSpace(string(out)), installEtcdutl)
		if inCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	tools := string(readRepoFile(t, "deploy/tools/etcd/go.mod"))
	sm := regexp.MustCompile(`go\.etcd\.io/etcd/server/v3 (v\S+)`).FindStringSubmatch(gomod)
	if !strings.Contains(tools, "go.etcd.io/etcd/etcdutl/v3 "+sm[1]) {
		t.Errorf("deploy/tools/etcd/go.mod must pin go.etcd.io/etcd/etcdutl/v3 %s, the etcd of go.mod", sm[1])
	}
}

func newRunbookEnv(t *testing.T, relayURL string, cli *clientv3.Client, endpoint string) *runbookEnv {
	env := &runbookEnv{
		t: t, relayURL: relayURL, cli: cli, endpoint: endpoint, dir: t.TempDir(),
		// Ids as Outlook and Jira make them: base64 with / + =, and an
		// internet message id in angle brackets.
		userA:  "user/A+1=@example.com",
		userB:  "1220",
		conv:   "AAQkADQ2/x+y=",
		mailA1: "<CAF=abc/1@mail.example.com>",
		mailA2: "<CAF=def/2@mail.example.com>",
		config: `{"fields":["summary","labels"],"template":"From {{from}}"}`,
	}
	// acme gives its cloud id, so the erase must find its cloudids/ entry too.
	acmeBody := relaytest.RegisterBody("https://Acme-Ops.atlassian.net/")
	acmeBody["cloudId"] = runbookCloudID
	res := (&relaytest.Client{T: t, Base: relayURL, HTTP: httpClient}).Do("POST", "/v1/instances", "", acmeBody)
	mustStatus(t, res, 201, "register acme")
	var reg struct {
		InstanceID, ClientKey, AdminKey string
		Instance                        struct{ URL string }
	}
	res.Decode(t, &reg)
	env.acme = relaytest.Tenant{ID: reg.InstanceID, Client: reg.ClientKey, Admin: reg.AdminKey, URL: reg.Instance.URL}
	env.other = register(t, relayURL, "https://other-ops.atlassian.net")
	if env.acme.URL != "https://acme-ops.atlassian.net" {
		t.Fatalf("normalised URL %q", env.acme.URL)
	}
	mustStatus(t, call(t, "PUT", env.api(env.acme, "/config"), env.config, "X-Relay-Key", env.acme.Admin), 200, "put config")
	env.createUser(env.acme, env.userA)
	env.createUser(env.acme, env.userB)
	env.createUser(env.other, env.userA) // the same user id in another tenant stays
	env.linkUserA()
	env.link(env.acme, env.conv, env.mailA1, env.userB, "10001", "OPS-1")
	env.link(env.other, env.conv, env.mailA1, env.userA, "10001", "OPS-1")

	env.values = map[string]string{
		"endpoint":       endpoint,
		"url":            env.acme.URL,
		"instanceId":     env.acme.ID,
		"conversationId": env.conv,
		"mailId":         env.mailA1,
		"issueKey":       "OPS-1",
		"issueId":        "10001",
		"userId":         env.userA,
		"adminKey":       env.acme.Admin,
		"relayUrl":       relayURL,
		"snapshotFile":   filepath.Join(env.dir, "relay.snapshot.db"),
		"dataDir":        filepath.Join(env.dir, "relay-data"),
		"peerUrl":        fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t)),
	}
	return env
}

func (env *runbookEnv) api(tn relaytest.Tenant, path string) string {
	return env.relayURL + "/v1/instances/" + tn.ID + path
}

func (env *runbookEnv) createUser(tn relaytest.Tenant, user string) {
	r := call(env.t, "PUT", env.api(tn, "/users/"+url.PathEscape(user)),
		map[string]string{"name": "Ada " + user, "email": "ada@example.com"}, "X-Relay-Key", tn.Client)
	if r.Status != 201 && r.Status != 200 {
		env.t.Fatalf("put user %q: %d %s", user, r.Status, r.Body)
	}
}

func (env *runbookEnv) link(tn relaytest.Tenant, conv, mail, user, issueID, key string) {
	m := map[string]any{"mailId": mail, "userId": user, "app": "outlook", "jira": map[string]string{"id": issueID, "key": key, "projectId": "10000"}}
	if conv != "" {
		m["conversationId"] = conv
	}
	r := call(env.t, "POST", env.api(tn, "/mappings"), m, "X-Relay-Key", tn.Client)
	if r.Status != 201 && r.Status != 200 {
		env.t.Fatalf("link %s/%s/%s: %d %s", mail, user, issueID, r.Status, r.Body)
	}
}

// linkUserA gives user A three mappings: two in the shared conversation, one
// without a conversation.
func (env *runbookEnv) linkUserA() {
	env.link(env.acme, env.conv, env.mailA1, env.userA, "10001", "OPS-1")
	env.link(env.acme, env.conv, env.mailA1, env.userA, "10002", "OPS-2")
	env.link(env.acme, "", env.mailA2, env.userA, "10003", "OPS-3")
}

// userAKeys are the keys that hold user A's data in the acme tenant, from
// the documented layout (docs/key-layout.md), computed independently of the
// runbook's shell functions.
func (env *runbookEnv) userAKeys() []string {
	p := "/jira-relay/instances/" + env.acme.ID + "/"
	u, c := store.EscapeSegment(env.userA), store.EscapeSegment(env.conv)
	m1, m2 := store.EscapeSegment(env.mailA1), store.EscapeSegment(env.mailA2)
	keys := []string{p + "users/" + u}
	for _, mp := range []struct{ conv, mail, id, key string }{{c, m1, "10001", "OPS-1"}, {c, m1, "10002", "OPS-2"}, {"", m2, "10003", "OPS-3"}} {
		keys = append(keys,
			p+"mappings/"+mp.mail+"/"+u+"/"+mp.id,
			p+"index/issue/"+mp.id+"/"+u+"/"+mp.mail,
			p+"index/issuekey/"+mp.key+"/"+u+"/"+mp.mail+"/"+mp.id,
			p+"index/user/"+u+"/"+mp.mail+"/"+mp.id)
		if mp.conv != "" {
			keys = append(keys, p+"index/conversation/"+mp.conv+"/"+u+"/"+mp.mail+"/"+mp.id)
		}
	}
	sort.Strings(keys)
	return keys
}

// keys lists every key under prefix.
func (env *runbookEnv) keys(prefix string) []string {
	return etcdKeys(env.t, env.cli, prefix)
}

func etcdKeys(t testing.TB, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatalf("etcd get %s: %v", prefix, err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

// fill replaces every placeholder of a block; an unknown one fails the test.
func (env *runbookEnv) fill(block string) string {
	return placeholderRe.ReplaceAllStringFunc(block, func(p string) string {
		v, ok := env.values[p[1:len(p)-1]]
		if !ok {
			env.t.Fatalf("operations.md uses the placeholder %s, which TestRunbook does not fill: add it to runbookEnv.values", p)
		}
		return v
	})
}

// bash runs a script with bash -euo pipefail in the test's directory; it
// must exit 0. It returns standard output and standard error, combined.
func (env *runbookEnv) bash(what, script string) string {
	env.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-euo", "pipefail", "-c", script)
	cmd.Dir = env.dir
	cmd.Env = append(cleanEnv("ETCDCTL_"), "LC_ALL=C.UTF-8")
	out, err := cmd.CombinedOutput()
	if err != nil {
		env.t.Errorf("%s: %v\n--- script ---\n%s\n--- output ---\n%s", what, err, script, out)
	}
	return string(out)
}

// cleanEnv is the test's environment without the variables that start with
// any of prefixes.
func cleanEnv(prefixes ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(kv, p) }) {
			out = append(out, kv)
		}
	}
	return out
}

// mustContain fails unless out contains every one of wants.
func (env *runbookEnv) mustContain(section, out string, wants ...string) {
	env.t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			env.t.Errorf("%s: the output lacks %q:\n%s", section, w, out)
		}
	}
}

// jsonLines decodes the lines of out that are JSON objects.
func jsonLines(out string) []map[string]any {
	var res []map[string]any
	for _, l := range strings.Split(out, "\n") {
		var m map[string]any
		if strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &m) == nil {
			res = append(res, m)
		}
	}
	return res
}

type sectionCheck struct {
	before func()
	after  func(out string)
}

// checks are what each section of the runbook must do. Every section with
// commands needs one, so a new section cannot go untested.
func (env *runbookEnv) checks() map[string]sectionCheck {
	t := env.t
	acmePrefix := "/jira-relay/instances/" + env.acme.ID + "/"
	var userBKeys, otherKeys []string
	var revBeforeCompact int64
	return map[string]sectionCheck{
		setupSection: {
			after: func(out string) {
				// The escape function agrees with the store's, byte for byte.
				for _, id := range []string{env.userA, env.conv, env.mailA1, "é ü\t", ".", "..", "...", "a.b", "it's", `a"b\c`, "ok-_.~@+="} {
					got := env.bash("relay_escape", env.fill(parseRunbookSetup(t))+"\nrelay_escape "+shellQuote(id))
					if got != store.EscapeSegment(id) {
						t.Errorf("relay_escape %q = %q, store.EscapeSegment = %q", id, got, store.EscapeSegment(id))
					}
					back := env.bash("relay_unescape", env.fill(parseRunbookSetup(t))+"\nrelay_unescape "+shellQuote(store.EscapeSegment(id)))
					if back != id {
						t.Errorf("relay_unescape(relay_escape(%q)) = %q", id, back)
					}
				}
			},
		},
		"Health of the cluster": {
			after: func(out string) {
				env.mustContain("health", out, env.endpoint+" is healthy", "relay", "ENDPOINT")
				if strings.Contains(out, "NOSPACE") {
					t.Errorf("health: an alarm is listed:\n%s", out)
				}
			},
		},
		"List the tenants": {
			after: func(out string) {
				env.mustContain("list tenants", out,
					"/jira-relay/urls/"+store.EscapeSegment(env.acme.URL)+"\n",
					env.acme.URL+"\t"+`{"instanceId":"`+env.acme.ID+`"}`,
					env.other.URL+"\t"+`{"instanceId":"`+env.other.ID+`"}`,
					"2 tenants")
			},
		},
		"Inspect one tenant": {
			after: func(out string) {
				env.mustContain("inspect", out,
					`{"instanceId":"`+env.acme.ID+`"}`,
					`"url":"`+env.acme.URL+`"`, `"clientKeySha256":"`,
					env.config,
					acmePrefix+"users/"+store.EscapeSegment(env.userA)+"\n",
					acmePrefix+"users/"+store.EscapeSegment(env.userB)+"\n",
					"4 mappings",
					fmt.Sprintf("%d keys", len(env.keys(acmePrefix))))
				if strings.Contains(out, env.acme.Admin) || strings.Contains(out, env.acme.Client) {
					t.Error("inspect: a key of the tenant appears in clear")
				}
			},
		},
		"Find the mappings of a conversation": {
			after: func(out string) {
				// What etcdctl shows is what the API answers.
				var want []map[string]any
				for _, q := range []string{"conversationId=" + url.QueryEscape(env.conv), "mailId=" + url.QueryEscape(env.mailA1), "issueKey=OPS-1", "issueId=10001"} {
					r := call(t, "GET", env.api(env.acme, "/mappings?"+q), nil, "X-Relay-Key", env.acme.Client)
					mustStatus(t, r, 200, "find mappings "+q)
					var page struct {
						Mappings []map[string]any `json:"mappings"`
					}
					r.Decode(t, &page)
					want = append(want, page.Mappings...)
				}
				got := jsonLines(out)
				if len(got) != len(want) || len(want) != 3+3+2+2 {
					t.Fatalf("conversation lookups: %d mappings shown, the API has %d (want 10):\n%s", len(got), len(want), out)
				}
				for i := range want {
					gj, _ := json.Marshal(got[i])
					wj, _ := json.Marshal(want[i])
					if !bytes.Equal(gj, wj) {
						t.Errorf("mapping %d: etcdctl shows %s, the API %s", i, gj, wj)
					}
				}
			},
		},
		"Everything held about a user": {
			after: func(out string) {
				env.mustContain("user", out, `"userId":"`+env.userA+`"`, `"key":"OPS-3"`)
				want := env.userAKeys()
				var listed []string
				for _, l := range strings.Split(out, "\n") {
					if strings.HasPrefix(l, acmePrefix) {
						listed = append(listed, l)
					}
				}
				if len(listed) == 0 || listed[len(listed)-1] != acmePrefix+"users/"+store.EscapeSegment(env.userA) {
					t.Errorf("relay_user_keys must list the user record last:\n%s", strings.Join(listed, "\n"))
				}
				sorted := slices.Clone(listed)
				sort.Strings(sorted)
				if !slices.Equal(sorted, want) {
					t.Errorf("relay_user_keys lists\n%s\nwant\n%s", strings.Join(sorted, "\n"), strings.Join(want, "\n"))
				}
				// What must survive the erasures below.
				userBKeys = env.keysOfUserB()
				otherKeys = env.keys("/jira-relay/instances/" + env.other.ID + "/")
			},
		},
		"Error reports of a tenant": {
			before: func() {
				mustStatus(t, call(t, "PATCH", env.api(env.acme, ""), `{"errorReports":true}`, "X-Relay-Key", env.acme.Admin), 200, "turn error reports on")
				for _, msg := range []string{"compose failed for ada@example.com", "second report"} {
					mustStatus(t, call(t, "POST", env.api(env.acme, "/error-reports"), map[string]string{"message": msg}, "X-Relay-Key", env.acme.Client), 201, "error report")
				}
			},
			after: func(out string) {
				env.mustContain("error reports", out, `"message":"compose failed for `, `"message":"second report"`,
					"remaining(", acmePrefix+"error-reports/")
				if strings.Contains(out, "ada@example.com") {
					t.Errorf("error reports: an e-mail address was stored:\n%s", out)
				}
				r := call(t, "GET", env.api(env.acme, "/error-reports"), nil, "X-Relay-Key", env.acme.Admin)
				mustStatus(t, r, 200, "list error reports")
				if !strings.Contains(string(r.Body), `"reports":[]`) {
					t.Errorf("error reports left after the runbook dropped them: %s", r.Body)
				}
			},
		},
		"Erase a user through the API": {
			after: func(string) {
				env.checkUserAErased("API erase")
				// Again, for the etcdctl erase.
				env.createUser(env.acme, env.userA)
				env.linkUserA()
				if got := env.presentUserAKeys(); len(got) != len(env.userAKeys()) {
					t.Fatalf("re-created user A has %d keys, want %d", len(got), len(env.userAKeys()))
				}
			},
		},
		"Erase a user with etcdctl": {
			after: func(out string) {
				env.mustContain("etcdctl erase", out, fmt.Sprintf("%d keys to delete", len(env.userAKeys())), "\n0 keys left")
				env.checkUserAErased("etcdctl erase")
			},
		},
		"Take a snapshot": {
			after: func(out string) {
				fi, err := os.Stat(env.values["snapshotFile"])
				if err != nil || fi.Size() == 0 {
					t.Fatalf("snapshot: no file: %v", err)
				}
				env.mustContain("snapshot", out, "Snapshot saved at", "HASH", "TOTAL KEYS")
			},
		},
		"Restore a snapshot": {
			before: func() {
				// The stopped relay's data dir, to be moved aside.
				old := filepath.Join(env.values["dataDir"], "etcd")
				if err := os.MkdirAll(old, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(old, "old-marker"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			after: func(string) { env.checkRestored(userBKeys) },
		},
		"Compact and defragment": {
			before: func() {
				r, err := env.cli.Get(context.Background(), "x")
				if err != nil {
					t.Fatal(err)
				}
				revBeforeCompact = r.Header.Revision
			},
			after: func(out string) {
				env.mustContain("compact", out, "compacted revision", "Finished defragmenting etcd member")
				_, err := env.cli.Get(context.Background(), acmePrefix, clientv3.WithRev(revBeforeCompact-1))
				if !errors.Is(err, rpctypes.ErrCompacted) {
					t.Errorf("revision %d is still there after the compaction: %v", revBeforeCompact-1, err)
				}
				env.checkRelayFollows("after compaction")
			},
		},
		"Clear a NOSPACE alarm": {
			before: func() {
				env.raiseNoSpace()
				r := call(t, "PUT", env.api(env.acme, "/users/nospace"), map[string]string{"name": "N", "email": "n@example.com"}, "X-Relay-Key", env.acme.Client)
				if r.Status != 503 || r.Code() != "store_unavailable" || r.Header.Get("Retry-After") == "" {
					t.Errorf("a write under NOSPACE: %d %s (want 503 store_unavailable with Retry-After, as the runbook says)", r.Status, r.Body)
				}
				mustStatus(t, call(t, "GET", env.relayURL+"/readyz", nil), 200, "readyz under NOSPACE")
				mustStatus(t, call(t, "GET", env.api(env.acme, "/config"), nil, "X-Relay-Key", env.acme.Client), 200, "a read under NOSPACE")
			},
			after: func(out string) {
				env.mustContain("nospace", out, "alarm:NOSPACE")
				al, err := env.cli.AlarmList(context.Background())
				if err != nil || len(al.Alarms) != 0 {
					t.Fatalf("alarms after the runbook: %v %v", al, err)
				}
				mustStatus(t, call(t, "PUT", env.api(env.acme, "/users/nospace"), map[string]string{"name": "N", "email": "n@example.com"}, "X-Relay-Key", env.acme.Client), 201, "a write after clearing NOSPACE")
			},
		},
		"Erase a tenant with etcdctl": {
			after: func(out string) {
				env.mustContain("erase tenant", out, "\n0 keys left")
				if k := env.keys(acmePrefix); len(k) != 0 {
					t.Errorf("tenant keys left: %q", k)
				}
				if k := env.keys("/jira-relay/urls/" + store.EscapeSegment(env.acme.URL)); len(k) != 0 {
					t.Errorf("the tenant's urls/ key is left")
				}
				env.mustContain("erase tenant", out, "2 index entries to delete", "\n0 index entries left")
				if k := env.keys("/jira-relay/cloudids/" + runbookCloudID); len(k) != 0 {
					t.Errorf("the tenant's cloudids/ key is left")
				}
				var last relaytest.Answer
				if !relaytest.Eventually(3*time.Second, func() bool {
					last = call(t, "GET", env.api(env.acme, ""), nil, "X-Relay-Key", env.acme.Admin)
					return last.Status == 404
				}) {
					t.Errorf("the relay still serves the erased tenant: %d %s", last.Status, last.Body)
				}
				if got := env.keys("/jira-relay/instances/" + env.other.ID + "/"); !slices.Equal(got, otherKeys) {
					t.Errorf("the other tenant changed:\n%q\nwant\n%q", got, otherKeys)
				}
				mustStatus(t, call(t, "GET", env.api(env.other, ""), nil, "X-Relay-Key", env.other.Admin), 200, "the other tenant")
			},
		},
	}
}

// parseRunbookSetup is the setup block, unfilled.
func parseRunbookSetup(t testing.TB) string {
	for _, s := range parseRunbook(t, readRepoFile(t, "docs/operations.md")) {
		if s.Title == setupSection && len(s.Blocks) == 1 {
			return s.Blocks[0]
		}
	}
	t.Fatalf("operations.md has no %q section with one block", setupSection)
	return ""
}

// shellQuote quotes s for bash.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// keysOfUserB are the acme keys that hold user B's data.
func (env *runbookEnv) keysOfUserB() []string {
	u := "/" + store.EscapeSegment(env.userB) + "/"
	var out []string
	for _, k := range env.keys("/jira-relay/instances/" + env.acme.ID + "/") {
		if strings.Contains(k, u) || strings.HasSuffix(k, "/users/"+env.userB) {
			out = append(out, k)
		}
	}
	if len(out) != 6 {
		env.t.Fatalf("user B has %d keys, want 6 (user, mapping, 4 index entries): %q", len(out), out)
	}
	return out
}

// presentUserAKeys are the keys of userAKeys that exist.
func (env *runbookEnv) presentUserAKeys() []string {
	var out []string
	for _, k := range env.userAKeys() {
		if slices.Contains(env.keys(k), k) {
			out = append(out, k)
		}
	}
	return out
}

// checkUserAErased: nothing of user A is left in acme (by the layout, and by
// any key naming the user), the API knows nothing of A, and user B and the
// other tenant are untouched.
func (env *runbookEnv) checkUserAErased(what string) {
	t := env.t
	if left := env.presentUserAKeys(); len(left) > 0 {
		t.Errorf("%s: keys of the user are left: %q", what, left)
	}
	u := store.EscapeSegment(env.userA)
	for _, k := range env.keys("/jira-relay/instances/" + env.acme.ID + "/") {
		if strings.Contains(k, "/"+u+"/") || strings.HasSuffix(k, "/"+u) {
			t.Errorf("%s: a key naming the user is left: %s", what, k)
		}
	}
	r := call(t, "GET", env.api(env.acme, "/users/"+url.PathEscape(env.userA)+"/export"), nil, "X-Relay-Key", env.acme.Admin)
	if r.Status != 404 {
		t.Errorf("%s: export of the erased user: %d %s", what, r.Status, r.Body)
	}
	r = call(t, "GET", env.api(env.acme, "/mappings?conversationId="+url.QueryEscape(env.conv)), nil, "X-Relay-Key", env.acme.Client)
	var page struct {
		Mappings []struct {
			UserID string `json:"userId"`
		} `json:"mappings"`
	}
	r.Decode(t, &page)
	if len(page.Mappings) != 1 || page.Mappings[0].UserID != env.userB {
		t.Errorf("%s: the conversation should keep only user B's mapping: %s", what, r.Body)
	}
	if b := env.keysOfUserB(); len(b) != 6 {
		t.Errorf("%s: user B lost keys", what)
	}
	if r := call(t, "GET", env.api(env.other, "/users/"+url.PathEscape(env.userA)+"/export"), nil, "X-Relay-Key", env.other.Admin); r.Status != 200 {
		t.Errorf("%s: the same user id in the other tenant: %d %s", what, r.Status, r.Body)
	}
}

// checkRestored starts an etcd member on the restored data dir and checks it
// holds the data as it was when the snapshot was taken.
func (env *runbookEnv) checkRestored(userBKeys []string) {
	t := env.t
	data := env.values["dataDir"]
	if _, err := os.Stat(filepath.Join(data, "etcd", "member", "snap", "db")); err != nil {
		t.Fatalf("restore: no member/snap/db in the restored data dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "etcd.before-restore", "old-marker")); err != nil {
		t.Fatalf("restore: the old data dir was not kept aside: %v", err)
	}
	m, err := store.StartEmbedded(store.EmbedConfig{
		Dir: filepath.Join(data, "etcd"), LogLevel: "fatal",
		ClientURL: fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t)), PeerURL: env.values["peerUrl"],
		StartTimeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatalf("restore: the embedded etcd does not start on the restored data dir: %v", err)
	}
	defer m.Close()
	rc := etcdtest.Client(t, m.Endpoints()...)
	got := etcdKeys(t, rc, "/jira-relay/")
	want := etcdKeys(t, env.cli, "/jira-relay/")
	if !slices.Equal(got, want) {
		t.Errorf("restored keys differ from the live ones:\n%q\nwant\n%q", got, want)
	}
	for _, k := range userBKeys {
		if !slices.Contains(got, k) {
			t.Errorf("restore: %s missing", k)
		}
	}
	for _, k := range env.userAKeys() {
		if slices.Contains(got, k) {
			t.Errorf("restore: %s of the erased user is back", k)
		}
	}
}

// checkRelayFollows changes the acme config through the API and expects the
// relay's watch-fed cache to serve the new one.
func (env *runbookEnv) checkRelayFollows(what string) {
	t := env.t
	body := `{"after":"` + strings.ReplaceAll(what, " ", "-") + `"}`
	r := call(t, "PUT", env.api(env.acme, "/config"), body, "X-Relay-Key", env.acme.Admin)
	mustStatus(t, r, 200, what+": put config")
	tag := r.Header.Get("ETag")
	var got relaytest.Answer
	if !relaytest.Eventually(3*time.Second, func() bool {
		got = call(t, "GET", env.api(env.acme, "/config"), nil, "X-Relay-Key", env.acme.Client)
		return got.Header.Get("ETag") == tag && string(got.Body) == body
	}) {
		t.Errorf("%s: the relay serves config %s %s, want %s %s", what, got.Header.Get("ETag"), got.Body, tag, body)
	}
	env.config = body
}

// raiseNoSpace raises the NOSPACE alarm on the member, as a full database
// would.
func (env *runbookEnv) raiseNoSpace() {
	t := env.t
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := env.cli.Status(ctx, env.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pb.NewMaintenanceClient(env.cli.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{
		Action: pb.AlarmRequest_ACTIVATE, MemberID: st.Header.MemberId, Alarm: pb.AlarmType_NOSPACE,
	})
	if err != nil {
		t.Fatalf("raising NOSPACE: %v", err)
	}
	al, err := env.cli.AlarmList(ctx)
	if err != nil || len(al.Alarms) != 1 {
		t.Fatalf("NOSPACE not raised: %v %v", al, err)
	}
}

// runbookCloudID is the acme tenant's cloud id.
const runbookCloudID = "5c0e8f2a-1b3d-4e6f-8a9b-0c1d2e3f4a5b"
