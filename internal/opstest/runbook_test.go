package opstest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	"github.com/jira-relay/jira-relay/store"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
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
// ```sh blocks. A ```console block is a transcript (commands with what they
// print) of what the test cannot run, such as `relay shards` over several
// etcd clusters: it is skipped. Any other fence is refused.
func parseRunbook(t testing.TB, doc []byte) []runbookSection {
	t.Helper()
	var out []runbookSection
	var cur *runbookSection
	var block *strings.Builder
	transcript := false
	sc := bufio.NewScanner(bytes.NewReader(doc))
	line := 0
	for sc.Scan() {
		line++
		l := sc.Text()
		switch {
		case transcript:
			transcript = strings.TrimSpace(l) != "```"
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
		case strings.TrimSpace(l) == "```console":
			transcript = true
		case strings.HasPrefix(l, "```sh"):
			if strings.TrimSpace(l) != "```sh" {
				t.Fatalf("operations.md:%d: fence %q: write ```sh", line, l)
			}
			block = new(strings.Builder)
		case strings.TrimSpace(l) == "```":
			t.Fatalf("operations.md:%d: a block without a language: write ```sh (the test runs it) or ```console (a transcript the test cannot run)", line)
		case strings.HasPrefix(l, "```"):
			t.Fatalf("operations.md:%d: fence %q: every command block of the runbook is ```sh (the test runs them), or ```console for a transcript the test cannot run", line, l)
		case strings.HasPrefix(l, "## "):
			out = append(out, runbookSection{Title: strings.TrimSpace(l[3:])})
			cur = &out[len(out)-1]
		}
	}
	if block != nil || transcript {
		t.Fatal("operations.md: a ```sh or ```console block is not closed")
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
	// acmeData and otherData are the tenants' data prefixes
	// (/jira-relay/d/<dataId>/), acmeDataID and otherDataID their data ids.
	acmeData, otherData     string
	acmeDataID, otherDataID string
	userA                   string // the user erased
	userB                   string // a user of the same conversation, who must stay
	conv                    string
	mailA1                  string
	mailA2                  string
	config                  string
	dir                     string
	values                  map[string]string

	// capped is a second relay over the same etcd, started once the
	// Capacity section's data exists (it counts the largest tenants as it
	// starts), whose quotas the acme tenant has reached; its admin handler
	// serves <metricsUrl>.
	capped *relaytest.Relay
	// relay is the relay the runbook works against (relay-1 of the fleet;
	// capped is relay-2).
	relay *relaytest.Relay
	// retained are the mappings linked under a retention (Capacity), and
	// retainedLease the lease their keys went on.
	retained      []map[string]any
	retainedLease clientv3.LeaseID

	// binDir holds the relay binary (built by buildRelay while the test
	// sets up, relayBuilt says when), first on the runbook's PATH: the
	// runbook's `relay encryption` commands run it.
	binDir     string
	relayBuilt <-chan error
	// keyed is the section "A tenant with keyed tokens": a relay run with a
	// key file and its tenant (erased again after the section).
	keyed keyedTenant
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
	for _, tool := range []string{"awk", "sed", "sort", "cut", "date", "curl"} {
		lookTool(t, tool, "apt-get install -y gawk sed coreutils curl")
	}
	// The tokens that stand for ids in keys (docs/key-layout.md).
	for _, tool := range []string{"sha256sum", "head", "basenc"} {
		lookTool(t, tool, "apt-get install -y coreutils (8.31 or later, for basenc)")
	}
	lookTool(t, "xxd", "apt-get install -y xxd")

	sections := parseRunbook(t, readRepoFile(t, "docs/operations.md"))
	// The relay binary, for the runbook's `relay encryption` commands, built
	// while the relay and the data are set up.
	binDir := t.TempDir()
	relayBuilt := buildRelay(t, binDir)
	e, cli := etcdtest.Start(t)
	// Named as an operator names the relays of a fleet (--relay-id): the
	// "Running a fleet" section shows their member keys.
	r := startRelay(t, cli, func(c *configs.Config) { c.RelayID = "relay-1" })
	env := newRunbookEnv(t, r.URL, cli, e.Endpoints()[0])
	env.relay = r
	env.binDir, env.relayBuilt = binDir, relayBuilt

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
	env.acmeDataID, env.otherDataID = env.dataIDOf(env.acme.ID), env.dataIDOf(env.other.ID)
	env.acmeData, env.otherData = "/jira-relay/d/"+env.acmeDataID+"/", "/jira-relay/d/"+env.otherDataID+"/"

	env.values = map[string]string{
		"endpoint":       endpoint,
		"url":            env.acme.URL,
		"instanceId":     env.acme.ID,
		"dataId":         env.acmeDataID,
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
		"keyFile":        filepath.Join(env.dir, "keys.yaml"),
	}
	return env
}

// dataIDOf reads the tenant's data id from its instance record.
func (env *runbookEnv) dataIDOf(id string) string {
	var rec struct {
		DataID string `json:"dataId"`
	}
	if err := json.Unmarshal([]byte(env.value("/jira-relay/instances/"+id+"/instance")), &rec); err != nil || !regexp.MustCompile(`^[a-z2-7]{6}$`).MatchString(rec.DataID) {
		env.t.Fatalf("instance %s: no data id in its record (%v)", id, err)
	}
	return rec.DataID
}

// value reads one key's value ("" when it does not exist).
func (env *runbookEnv) value(key string) string {
	kv := env.kv(key)
	if kv == nil {
		return ""
	}
	return string(kv.Value)
}

// kv reads one key, or nil.
func (env *runbookEnv) kv(key string) *mvccpb.KeyValue {
	env.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := env.cli.Get(ctx, key)
	if err != nil {
		env.t.Fatalf("etcd get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0]
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
	return userKeys(env.acmeData, store.Token(env.userA), store.Token(env.conv), store.Token(env.mailA1), store.Token(env.mailA2))
}

// userKeys are the keys of user A's record and three mappings (OPS-1 and
// OPS-2 of conversation c and message m1, OPS-3 of message m2 alone) under
// the data prefix d, given the ids' tokens, sorted.
func userKeys(d, u, c, m1, m2 string) []string {
	keys := []string{d + "users/" + u}
	for _, mp := range []struct{ conv, mail, id, key string }{{c, m1, "10001", "OPS-1"}, {c, m1, "10002", "OPS-2"}, {"", m2, "10003", "OPS-3"}} {
		keys = append(keys,
			d+"m/"+mp.mail+"/"+u+"/"+mp.id,
			d+"i/"+mp.id+"/"+u+"/"+mp.mail,
			d+"k/"+mp.key+"/"+u+"/"+mp.mail+"/"+mp.id,
			d+"u/"+u+"/"+mp.mail+"/"+mp.id)
		if mp.conv != "" {
			keys = append(keys, d+"c/"+mp.conv+"/"+u+"/"+mp.mail+"/"+mp.id)
		}
	}
	sort.Strings(keys)
	return keys
}

// tenantKeys are every key of a tenant: its directory keys (record,
// configuration, and the urls/, cloudids/ and dataids/ entries that name
// it) and its data.
func (env *runbookEnv) tenantKeys(id, data string) []string {
	out := env.keys("/jira-relay/instances/" + id + "/")
	out = append(out, env.entriesNaming(id)...)
	out = append(out, env.keys(data)...)
	sort.Strings(out)
	return out
}

// entriesNaming are the directory entries whose value names instance id.
func (env *runbookEnv) entriesNaming(id string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []string
	for _, index := range []string{"urls/", "cloudids/", "dataids/"} {
		resp, err := env.cli.Get(ctx, "/jira-relay/"+index, clientv3.WithPrefix())
		if err != nil {
			env.t.Fatalf("etcd get %s: %v", index, err)
		}
		for _, kv := range resp.Kvs {
			if strings.Contains(string(kv.Value), `"`+id+`"`) {
				out = append(out, string(kv.Key))
			}
		}
	}
	return out
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
	// No etcdctl or relay settings of the test's environment; the relay
	// binary first on the PATH.
	cmd.Env = append(cleanEnv("ETCDCTL_", "RELAY_", "PATH="), "LC_ALL=C.UTF-8", "PATH="+env.binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
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
	acmeDir := "/jira-relay/instances/" + env.acme.ID + "/"
	var userBKeys, otherKeys []string
	var revBeforeCompact int64
	var corruptRecord string
	return map[string]sectionCheck{
		setupSection: {
			after: func(out string) {
				setup := env.fill(parseRunbookSetup(t))
				// The escape function agrees with the store's, byte for byte.
				for _, id := range []string{env.userA, env.conv, env.mailA1, "é ü\t", ".", "..", "...", "a.b", "it's", `a"b\c`, "ok-_.~@+="} {
					got := env.bash("relay_escape", setup+"\nrelay_escape "+shellQuote(id))
					if got != store.EscapeSegment(id) {
						t.Errorf("relay_escape %q = %q, store.EscapeSegment = %q", id, got, store.EscapeSegment(id))
					}
					back := env.bash("relay_unescape", setup+"\nrelay_unescape "+shellQuote(store.EscapeSegment(id)))
					if back != id {
						t.Errorf("relay_unescape(relay_escape(%q)) = %q", id, back)
					}
				}
				// The token function, and the one-liner of key-layout.md, agree
				// with the store's tokens.
				oneLiner := tokenOneLiner(t)
				for _, id := range []string{env.userA, env.userB, env.conv, env.mailA1, "é ü\t", "%s%d", "-n", `a"b\c`, "it's", strings.Repeat("AAQkADQ2/x+y=", 80)} {
					if got := strings.TrimSuffix(env.bash("relay_token", setup+"\nrelay_token "+shellQuote(id)), "\n"); got != store.Token(id) {
						t.Errorf("relay_token %q = %q, store.Token = %q", id, got, store.Token(id))
					}
					if got := strings.TrimSuffix(env.bash("key-layout.md token one-liner", "ID="+shellQuote(id)+"\n"+oneLiner), "\n"); got != store.Token(id) {
						t.Errorf("key-layout.md's one-liner for %q = %q, store.Token = %q", id, got, store.Token(id))
					}
				}
				if got := env.bash("relay_count", setup+"\nrelay_count /jira-relay/nothing-here/"); got != "0\n" {
					t.Errorf("relay_count of an empty prefix = %q, want 0", got)
				}
				// relay_data runs a command on the cluster data_endpoints names, the
				// directory's when it is empty.
				for de, want := range map[string]string{"": env.endpoint, "https://etcd-eu1-0:2379,https://etcd-eu1-1:2379": "https://etcd-eu1-0:2379,https://etcd-eu1-1:2379"} {
					if got := env.bash("relay_data", setup+"\ndata_endpoints="+shellQuote(de)+"\nrelay_data printenv ETCDCTL_ENDPOINTS"); got != want+"\n" {
						t.Errorf("relay_data with data_endpoints=%q runs on %q, want %q", de, got, want)
					}
				}
				// relay_shard reads the shard and a move from records as the store
				// writes them (the relay under test has no shards).
				for _, c := range []struct {
					in   store.Instance
					want string
				}{
					{store.Instance{ID: env.acme.ID, URL: `https://x/"shard":"evil"`, DataID: "abcdef"}, "directory"},
					{store.Instance{ID: env.acme.ID, DataID: "abcdef", Shard: "eu-1"}, "eu-1"},
					{store.Instance{ID: env.acme.ID, DataID: "abcdef", Shard: "eu-1", Move: &store.Move{To: "directory", Since: time.Now().UTC()}}, "eu-1, moving to directory"},
					{store.Instance{ID: env.acme.ID, DataID: "abcdef", Move: &store.Move{To: "eu2", Since: time.Now().UTC()}}, "directory, moving to eu2"},
					// A re-key to other tokens, under a new data id on the same cluster.
					{store.Instance{ID: env.acme.ID, DataID: "abcdef", Tokens: store.TokensUnkeyed, Move: &store.Move{To: store.DirectoryShard, Since: time.Now().UTC(), DataID: "ghijkm", Tokens: "hmac:k1"}}, "directory, re-keying to ghijkm"},
					{store.Instance{ID: env.acme.ID, DataID: "abcdef", Shard: "eu-1", Tokens: "hmac:k1", Move: &store.Move{To: "eu-1", Since: time.Now().UTC(), DataID: "ghijkm", Tokens: "hmac:k2"}}, "eu-1, re-keying to ghijkm"},
				} {
					rec, err := json.Marshal(c.in)
					if err != nil {
						t.Fatal(err)
					}
					fake := "etcdctl() { printf '%s\\n' " + shellQuote(string(rec)) + "; }"
					if got := env.bash("relay_shard", setup+"\n"+fake+"\nrelay_shard "+env.acme.ID); got != c.want+"\n" {
						t.Errorf("relay_shard of %s = %q, want %q", rec, got, c.want)
					}
				}
				env.checkRelayDataID(setup)
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
		"The key layout version": {
			after: func(out string) {
				if !strings.HasPrefix(out, fmt.Sprintf(`{"version":%d,"migratedAt":"`, store.LayoutVersion)) {
					t.Errorf("layout: the output does not start with the layout record:\n%s", out)
				}
				if strings.Contains(out, "/jira-relay/layout-lock") || strings.Contains(out, "/jira-relay/migrations/") || strings.Contains(out, "/jira-relay/moves/") {
					t.Errorf("layout: a migration is shown under way on a migrated store:\n%s", out)
				}
				env.mustContain("layout", out, "no re-key noted\n")
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
					`"url":"`+env.acme.URL+`"`, `"clientKeySha256":"`, `"dataId":"`+env.acmeDataID+`"`,
					env.config,
					"\n"+env.acmeDataID+"\ndirectory\n"+`"tokens":"`+store.TokensUnkeyed+`"`+"\n",
					env.acmeData+"users/"+store.Token(env.userA)+"\n",
					env.acmeData+"users/"+store.Token(env.userB)+"\n",
					"\n4 mappings\n",
					fmt.Sprintf("\n%d data keys\n", len(env.keys(env.acmeData))))
				if strings.Contains(out, env.acme.Admin) || strings.Contains(out, env.acme.Client) {
					t.Error("inspect: a key of the tenant appears in clear")
				}
				if strings.Contains(out, env.otherDataID) {
					t.Errorf("inspect: the other tenant's data id %s is shown", env.otherDataID)
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
				// The user's three mappings, each once.
				var mappings int
				for _, m := range jsonLines(out) {
					if _, ok := m["jira"]; ok {
						mappings++
						if m["userId"] != env.userA {
							t.Errorf("user: a mapping of another user is shown: %v", m)
						}
					}
				}
				if mappings != 3 {
					t.Errorf("user: %d mappings shown, want 3:\n%s", mappings, out)
				}
				want := env.userAKeys()
				var listed []string
				for _, l := range strings.Split(out, "\n") {
					if strings.HasPrefix(l, env.acmeData) {
						listed = append(listed, l)
					}
				}
				if len(listed) == 0 || listed[len(listed)-1] != env.acmeData+"users/"+store.Token(env.userA) {
					t.Errorf("relay_user_keys must list the user record last:\n%s", strings.Join(listed, "\n"))
				}
				// The user's own index entries (u/) come after every record and
				// entry they lead to.
				lastOther, firstU := -1, len(listed)
				for i, k := range listed {
					switch {
					case strings.HasPrefix(k, env.acmeData+"u/"):
						firstU = min(firstU, i)
					case !strings.HasPrefix(k, env.acmeData+"users/"):
						lastOther = i
					}
				}
				if lastOther > firstU {
					t.Errorf("relay_user_keys must list the u/ entries after the records and the other entries:\n%s", strings.Join(listed, "\n"))
				}
				sorted := slices.Clone(listed)
				sort.Strings(sorted)
				if !slices.Equal(sorted, want) {
					t.Errorf("relay_user_keys lists\n%s\nwant\n%s", strings.Join(sorted, "\n"), strings.Join(want, "\n"))
				}
				// What must survive the erasures below.
				userBKeys = env.keysOfUserB()
				otherKeys = env.tenantKeys(env.other.ID, env.otherData)
			},
		},
		"A tenant with keyed tokens": {
			before: env.keyedBefore,
			after:  env.keyedAfter,
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
					"remaining(", env.acmeData+"reports/")
				if strings.Contains(out, "ada@example.com") {
					t.Errorf("error reports: an e-mail address was stored:\n%s", out)
				}
				r := call(t, "GET", env.api(env.acme, "/error-reports"), nil, "X-Relay-Key", env.acme.Admin)
				mustStatus(t, r, 200, "list error reports")
				if !strings.Contains(string(r.Body), `"reports":[]`) {
					t.Errorf("error reports left after the runbook dropped them: %s", r.Body)
				}
				if k := env.keys(env.acmeData + "reports/"); len(k) != 0 {
					t.Errorf("error report keys left: %q", k)
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
				_, err := env.cli.Get(context.Background(), acmeDir, clientv3.WithRev(revBeforeCompact-1))
				if !errors.Is(err, rpctypes.ErrCompacted) {
					t.Errorf("revision %d is still there after the compaction: %v", revBeforeCompact-1, err)
				}
				env.checkRelayFollows("after compaction")
			},
		},
		"Capacity": {
			before: env.capacityBefore,
			after:  env.capacityAfter,
		},
		"Running a fleet": {
			before: env.fleetBefore,
			after:  env.fleetAfter,
		},
		"Clear a NOSPACE alarm": {
			before: func() {
				env.createUser(env.acme, "doomed")
				env.raiseNoSpace()
				r := call(t, "PUT", env.api(env.acme, "/users/nospace"), map[string]string{"name": "N", "email": "n@example.com"}, "X-Relay-Key", env.acme.Client)
				if r.Status != 507 || r.Code() != "store_full" {
					t.Errorf("a user written under NOSPACE: %d %s (want 507 store_full, as the runbook says)", r.Status, r.Body)
				}
				env.documented("PUT /v1/instances/{id}/users/{userId}", r)
				r = call(t, "POST", env.api(env.acme, "/mappings"), map[string]any{"mailId": "<nospace@x>", "userId": env.userB, "jira": map[string]string{"id": "10099", "key": "OPS-99"}}, "X-Relay-Key", env.acme.Client)
				if r.Status != 507 || r.Code() != "store_full" {
					t.Errorf("a link under NOSPACE: %d %s (want 507 store_full)", r.Status, r.Body)
				}
				env.documented("POST /v1/instances/{id}/mappings", r)
				// Erasures go on: etcd takes deletions under NOSPACE.
				mustStatus(t, call(t, "DELETE", env.api(env.acme, "/users/doomed"), nil, "X-Relay-Key", env.acme.Admin), 204, "an erasure under NOSPACE")
				mustStatus(t, call(t, "GET", env.relayURL+"/readyz", nil), 200, "readyz under NOSPACE")
				mustStatus(t, call(t, "GET", env.api(env.acme, "/config"), nil, "X-Relay-Key", env.acme.Client), 200, "a read under NOSPACE")
			},
			after: func(out string) {
				env.mustContain("nospace", out, "alarm:NOSPACE")
				// The largest tenants, by the metric and by the count.
				env.mustContain("nospace: largest tenants", out,
					`relay_tenant_mappings{instance="`+env.acme.ID+`"} 4`+"\n",
					`relay_tenant_mappings{instance="`+env.other.ID+`"} 1`+"\n")
				var counted []string
				for _, l := range strings.Split(out, "\n") {
					if regexp.MustCompile(`^[0-9]+\t`).MatchString(l) {
						counted = append(counted, l)
					}
				}
				want := []string{
					"4\t" + env.acmeDataID + "\t" + `{"instanceId":"` + env.acme.ID + `"}`,
					"1\t" + env.otherDataID + "\t" + `{"instanceId":"` + env.other.ID + `"}`,
				}
				if !slices.Equal(counted, want) {
					t.Errorf("nospace: the tenants counted now:\n%s\nwant\n%s", strings.Join(counted, "\n"), strings.Join(want, "\n"))
				}
				al, err := env.cli.AlarmList(context.Background())
				if err != nil || len(al.Alarms) != 0 {
					t.Fatalf("alarms after the runbook: %v %v", al, err)
				}
				mustStatus(t, call(t, "PUT", env.api(env.acme, "/users/nospace"), map[string]string{"name": "N", "email": "n@example.com"}, "X-Relay-Key", env.acme.Client), 201, "a write after clearing NOSPACE")
			},
		},
		"Erase a tenant with etcdctl": {
			before: func() {
				// A garbled record holding no key hash: the API cannot erase
				// the tenant, only the runbook can.
				corruptRecord = "\x01{\"id\":\"" + env.acme.ID + "\",garbled"
				if _, err := env.cli.Put(context.Background(), acmeDir+"instance", corruptRecord); err != nil {
					t.Fatal(err)
				}
				// Once the relay has seen the record (a read: an erase tried
				// before would still match the cached key and go through)…
				var last relaytest.Answer
				if !relaytest.Eventually(3*time.Second, func() bool {
					last = call(t, "GET", env.api(env.acme, "/config"), nil, "X-Relay-Key", env.acme.Client)
					return last.Status == 401
				}) {
					t.Fatalf("a tenant whose record holds no key hash: %d %s, want 401", last.Status, last.Body)
				}
				// … the API cannot erase it.
				last = call(t, "DELETE", env.api(env.acme, ""), nil, "X-Relay-Key", env.acme.Admin)
				if last.Status != 401 {
					t.Fatalf("the erase of a tenant whose record holds no key hash: %d %s, want 401", last.Status, last.Body)
				}
			},
			after: func(out string) {
				kept, err := os.ReadFile(filepath.Join(env.dir, "instance-"+env.acme.ID+".json"))
				if err != nil || string(kept) != corruptRecord+"\n" {
					t.Errorf("the record kept aside: %q, %v; want %q", kept, err, corruptRecord+"\n")
				}
				env.mustContain("erase tenant", out,
					"/jira-relay/dataids/"+env.acmeDataID+"\n",
					"3 directory entries to delete", "\n0 keys left", "\n0 data keys left", "\n0 directory entries left")
				if k := env.keys(acmeDir); len(k) != 0 {
					t.Errorf("tenant keys left: %q", k)
				}
				if k := env.keys(env.acmeData); len(k) != 0 {
					t.Errorf("tenant data left: %q", k)
				}
				for _, k := range []string{"/jira-relay/urls/" + store.EscapeSegment(env.acme.URL), "/jira-relay/cloudids/" + runbookCloudID, "/jira-relay/dataids/" + env.acmeDataID} {
					if env.kv(k) != nil {
						t.Errorf("the tenant's %s is left", k)
					}
				}
				// Nothing of the tenant is left anywhere: what remains is the
				// other tenant's, the layout record, the retention leases'
				// keys (shared by every tenant, each on its own lease) and the
				// relays' member keys.
				for _, k := range env.keys("/jira-relay/") {
					if !slices.Contains(otherKeys, k) && k != "/jira-relay/layout" && !strings.HasPrefix(k, "/jira-relay/leases/") && !strings.HasPrefix(k, "/jira-relay/fleet/members/") {
						t.Errorf("a key is left that is not the other tenant's: %s", k)
					}
				}
				var last relaytest.Answer
				if !relaytest.Eventually(3*time.Second, func() bool {
					last = call(t, "GET", env.api(env.acme, ""), nil, "X-Relay-Key", env.acme.Admin)
					return last.Status == 404
				}) {
					t.Errorf("the relay still serves the erased tenant: %d %s", last.Status, last.Body)
				}
				if got := env.tenantKeys(env.other.ID, env.otherData); !slices.Equal(got, otherKeys) {
					t.Errorf("the other tenant changed:\n%q\nwant\n%q", got, otherKeys)
				}
				mustStatus(t, call(t, "GET", env.api(env.other, ""), nil, "X-Relay-Key", env.other.Admin), 200, "the other tenant")
				// The URL can be registered again.
				again := register(t, env.relayURL, env.acme.URL)
				mustStatus(t, call(t, "DELETE", env.relayURL+"/v1/instances/"+again.ID, nil, "X-Relay-Key", again.Admin), 204, "erase the tenant registered again")
			},
		},
	}
}

// retentionDays is the acme tenant's retention before the Capacity section
// sets its own (90 days).
const retentionDays = 30

// capacityBefore links mappings under a retention, then starts the capped
// relay, whose metrics the section reads.
func (env *runbookEnv) capacityBefore() {
	t := env.t
	mustStatus(t, call(t, "PATCH", env.api(env.acme, ""), fmt.Sprintf(`{"mappingRetentionDays":%d}`, retentionDays), "X-Relay-Key", env.acme.Admin), 200, "set a retention")
	start := time.Now().UTC()
	for i := 1; i <= 3; i++ {
		m := map[string]any{"conversationId": "AAQkRetained/=", "mailId": fmt.Sprintf("<ret-%d@mail.example.com>", i), "userId": "carol",
			"app": "outlook", "jira": map[string]string{"id": fmt.Sprint(10010 + i), "key": fmt.Sprintf("OPS-%d", 10+i), "projectId": "10000"}}
		mustStatus(t, call(t, "POST", env.api(env.acme, "/mappings"), m, "X-Relay-Key", env.acme.Client), 201, "link under a retention")
		env.retained = append(env.retained, m)
	}
	if start.Day() != time.Now().UTC().Day() {
		// The links straddled a UTC midnight: link them again, onto the
		// new day's lease.
		for _, m := range env.retained {
			mustStatus(t, call(t, "POST", env.api(env.acme, "/mappings"), m, "X-Relay-Key", env.acme.Client), 200, "link again under a retention")
		}
	}
	// Every key of the three mappings is on one lease (that of their expiry
	// day), which its leases/ key names.
	for i, m := range env.retained {
		keys := env.mappingKeys(m)
		if len(keys) != 5 {
			t.Fatalf("retained mapping %d has %d keys, want 5", i, len(keys))
		}
		for _, k := range keys {
			kv := env.kv(k)
			if kv == nil || kv.Lease == 0 {
				t.Fatalf("%s: missing or on no lease", k)
			}
			if env.retainedLease == 0 {
				env.retainedLease = clientv3.LeaseID(kv.Lease)
			}
			if clientv3.LeaseID(kv.Lease) != env.retainedLease {
				t.Errorf("%s is on lease %x, the mapping's others on %x: one lease per expiry day", k, kv.Lease, env.retainedLease)
			}
		}
	}
	if env.retainedLeaseKey() == "" {
		t.Fatalf("leases/: %q, none names lease %x", env.keys("/jira-relay/leases/"), env.retainedLease)
	}

	// acme now holds 4 mappings (user B's and the three) and 1 user (B).
	env.capped = startRelay(t, env.cli, func(c *configs.Config) {
		c.TenantMaxMappings, c.TenantMaxUsers = 4, 1
		c.RelayID = "relay-2"
	})
	want := `relay_tenant_mappings{instance="` + env.acme.ID + `"} 4`
	var metrics string
	if !relaytest.Eventually(10*time.Second, func() bool {
		var b bytes.Buffer
		env.capped.Metrics.WritePrometheus(&b)
		metrics = b.String()
		return strings.Contains(metrics, want+"\n") && strings.Contains(metrics, "relay_etcd_db_size_bytes{")
	}) {
		t.Fatalf("the relay started for the Capacity section does not show %s:\n%s", want, metrics)
	}
	srv := httptest.NewServer(env.capped.Server.AdminHandler())
	t.Cleanup(srv.Close)
	env.values["metricsUrl"] = srv.URL
}

// retainedLeaseKey is the leases/ key that names the retained mappings'
// lease, or "".
func (env *runbookEnv) retainedLeaseKey() string {
	for _, k := range env.keys("/jira-relay/leases/") {
		if env.value(k) == strconv.FormatInt(int64(env.retainedLease), 16) {
			return k
		}
	}
	return ""
}

// mappingKeys are the keys of a mapping of the acme tenant (as linked
// through the API), from the documented layout.
func (env *runbookEnv) mappingKeys(m map[string]any) []string {
	d := env.acmeData
	j := m["jira"].(map[string]string)
	mail, user := store.Token(m["mailId"].(string)), store.Token(m["userId"].(string))
	keys := []string{
		d + "m/" + mail + "/" + user + "/" + j["id"],
		d + "i/" + j["id"] + "/" + user + "/" + mail,
		d + "k/" + j["key"] + "/" + user + "/" + mail + "/" + j["id"],
		d + "u/" + user + "/" + mail + "/" + j["id"],
	}
	if c, _ := m["conversationId"].(string); c != "" {
		keys = append(keys, d+"c/"+store.Token(c)+"/"+user+"/"+mail+"/"+j["id"])
	}
	return keys
}

var remainingRe = regexp.MustCompile(`lease ([0-9a-f]+) granted with TTL\([0-9]+s\), remaining\(([0-9]+)s\)`)

func (env *runbookEnv) capacityAfter(out string) {
	t := env.t
	// The room metrics, with the labels operations.md gives them.
	doc := string(readRepoFile(t, "docs/operations.md"))
	room := map[string]float64{}
	for _, name := range []string{"relay_etcd_db_size_bytes", "relay_etcd_db_size_in_use_bytes", "relay_etcd_db_quota_bytes"} {
		label := regexp.MustCompile(regexp.QuoteMeta(name) + `(\{cluster="[^"]+"\})`).FindStringSubmatch(doc)
		if label == nil {
			t.Errorf("operations.md does not name the metric %s{cluster=…}", name)
			continue
		}
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name+label[1]) + ` ([0-9.e+]+)$`).FindStringSubmatch(out)
		if m == nil {
			t.Errorf("capacity: the relay does not serve %s%s, as operations.md says; it serves:\n%s", name, label[1], out)
			continue
		}
		room[name], _ = strconv.ParseFloat(m[1], 64)
	}
	if room["relay_etcd_db_size_bytes"] <= 0 || room["relay_etcd_db_quota_bytes"] < room["relay_etcd_db_size_bytes"] {
		t.Errorf("capacity: room metrics %v", room)
	}

	// The tenant's own retention, shown by the API as documented.
	env.mustContain("capacity: retention", out, `"mappingRetentionDays":90`)
	r := call(t, "GET", env.api(env.acme, ""), nil, "X-Relay-Key", env.acme.Admin)
	mustStatus(t, r, 200, "get the instance")
	if !strings.Contains(string(r.Body), `"mappingRetentionDays":90`) {
		t.Errorf("capacity: the instance does not show its retention: %s", r.Body)
	}
	env.documented("GET /v1/instances/{id}", r)

	// The lease listing: the day, the seconds left (the end of the UTC day
	// 30 days on), and every key of the retained mappings.
	hexLease := strconv.FormatInt(int64(env.retainedLease), 16)
	end, _ := strconv.ParseInt(strings.TrimPrefix(env.retainedLeaseKey(), "/jira-relay/leases/"), 10, 64)
	env.mustContain("capacity: leases", out,
		"lease "+hexLease+": mappings expire at "+time.Unix(end, 0).UTC().Format("2006-01-02 15:04:05")+" UTC\n")
	left := -1
	for _, m := range remainingRe.FindAllStringSubmatch(out, -1) {
		// etcdctl prints lease ids with 16 digits, the relay writes them
		// without leading zeros.
		if id, err := strconv.ParseInt(m[1], 16, 64); err == nil && clientv3.LeaseID(id) == env.retainedLease {
			left, _ = strconv.Atoi(m[2])
		}
	}
	if left < 0 {
		t.Errorf("capacity: no timetolive of lease %s:\n%s", hexLease, out)
	} else if left <= retentionDays*86400-60 || left > (retentionDays+1)*86400+5 {
		t.Errorf("capacity: lease %s has %d s left, want the end of the UTC day %d days on", hexLease, left, retentionDays)
	}
	for _, mp := range env.retained {
		env.mustContain("capacity: leases", out, env.mappingKeys(mp)...)
	}

	// Quotas, on the relay whose quotas acme has reached: a new mapping or
	// user is refused (507 tenant_quota_exceeded, nothing written); a
	// mapping held linked again and a user changed are not.
	c := env.capped
	newLink := map[string]any{"mailId": "<over-quota@mail.example.com>", "userId": "carol", "jira": map[string]string{"id": "10020", "key": "OPS-20"}}
	r = call(t, "POST", c.URL+"/v1/instances/"+env.acme.ID+"/mappings", newLink, "X-Relay-Key", env.acme.Client)
	if r.Status != 507 || r.Code() != "tenant_quota_exceeded" {
		t.Errorf("a link past the quota: %d %s, want 507 tenant_quota_exceeded", r.Status, r.Body)
	}
	env.documented("POST /v1/instances/{id}/mappings", r)
	if k := env.keys(env.acmeData + "m/" + store.Token("<over-quota@mail.example.com>") + "/"); len(k) != 0 {
		t.Errorf("a link refused at the quota was written: %q", k)
	}
	r = call(t, "PUT", c.URL+"/v1/instances/"+env.acme.ID+"/users/dave", map[string]string{"name": "Dave", "email": "dave@example.com"}, "X-Relay-Key", env.acme.Client)
	if r.Status != 507 || r.Code() != "tenant_quota_exceeded" {
		t.Errorf("a user past the quota: %d %s, want 507 tenant_quota_exceeded", r.Status, r.Body)
	}
	env.documented("PUT /v1/instances/{id}/users/{userId}", r)
	if env.kv(env.acmeData+"users/dave") != nil {
		t.Error("a user refused at the quota was written")
	}
	mustStatus(t, call(t, "PUT", c.URL+"/v1/instances/"+env.acme.ID+"/users/"+url.PathEscape(env.userB),
		map[string]string{"name": "Ada " + env.userB, "email": "ada@example.com"}, "X-Relay-Key", env.acme.Client), 200, "change a user at the quota")
	// Linked again, a mapping moves onto the lease of its new expiry day
	// (the tenant's 90 days, once the capped relay has seen them).
	record := env.mappingKeys(env.retained[0])[0]
	if !relaytest.Eventually(3*time.Second, func() bool {
		mustStatus(t, call(t, "POST", c.URL+"/v1/instances/"+env.acme.ID+"/mappings", env.retained[0], "X-Relay-Key", env.acme.Client), 200, "link again at the quota")
		kv := env.kv(record)
		if kv == nil || kv.Lease == 0 || clientv3.LeaseID(kv.Lease) == env.retainedLease {
			return false
		}
		ttl, err := env.cli.TimeToLive(context.Background(), clientv3.LeaseID(kv.Lease))
		return err == nil && ttl.TTL > 89*86400
	}) {
		t.Errorf("a mapping linked again is not on a lease of the tenant's new retention")
	}
	if n := len(env.keys(env.acmeData + "m/")); n != 4 {
		t.Errorf("acme holds %d mappings after the quota checks, want 4", n)
	}
}

// documented checks an answer of the relay against docs/openapi.yaml: its
// status is listed for the operation, and its body fits the schema.
func (env *runbookEnv) documented(op string, r relaytest.Answer) {
	t := env.t
	t.Helper()
	d := loadOpenAPI(t)
	for _, o := range d.ops(t) {
		if o.key() != op {
			continue
		}
		doc := d.response(t, o, r.Status)
		if doc == nil {
			t.Errorf("openapi.yaml: %s does not document status %d (%s)", op, r.Status, r.Body)
			return
		}
		content, _ := doc["content"].(map[string]any)
		mt, _ := content["application/json"].(map[string]any)
		v, err := decodeJSONNumbers(r.Body)
		if mt == nil || err != nil {
			t.Errorf("openapi.yaml: %s %d: no JSON body documented, or the answer is not JSON (%v): %s", op, r.Status, err, r.Body)
			return
		}
		if err := d.validateSchema(mt["schema"], v, "body"); err != nil {
			t.Errorf("openapi.yaml: %s %d: the answer does not fit: %v: %s", op, r.Status, err, r.Body)
		}
		return
	}
	t.Errorf("openapi.yaml has no operation %s", op)
}

// tokenOneLiner is the shell one-liner of docs/key-layout.md that computes
// the token of "$ID".
func tokenOneLiner(t testing.TB) string {
	for _, l := range strings.Split(string(readRepoFile(t, "docs/key-layout.md")), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, `printf 'jira-relay\0%s' "$ID" |`) {
			return l
		}
	}
	t.Fatalf("docs/key-layout.md has no line starting with %s (the token one-liner)", `printf 'jira-relay\0%s' "$ID" |`)
	return ""
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
	var out []string
	for _, k := range env.keys(env.acmeData) {
		if slices.Contains(strings.Split(k, "/"), store.Token(env.userB)) {
			out = append(out, k)
		}
	}
	if len(out) != 6 {
		env.t.Fatalf("user B has %d keys, want 6 (user, mapping record, 4 index entries): %q", len(out), out)
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
	// No key names the user: by its token (the user record, mapping
	// records and index entries), nor by its id, escaped (as layout 2 named
	// user records).
	tok, esc := store.Token(env.userA), store.EscapeSegment(env.userA)
	for _, k := range env.keys(env.acmeData) {
		if slices.Contains(strings.Split(k, "/"), tok) || strings.Contains(k, esc) {
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
