package opstest

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	"github.com/jira-relay/jira-relay/store"
)

// The section "A tenant with keyed tokens" of docs/operations.md runs
// against a tenant written by a relay with a key file: its keys hold
// HMAC tokens only the key file computes, and its values are sealed. The
// section's `relay encryption key-of` and `relay encryption decrypt` are the
// relay binary, built by buildRelay.

// keyedTenant is what the section works on.
type keyedTenant struct {
	relay  *relaytest.Relay
	tenant relaytest.Tenant
	secret []byte // of the key file's one key, keyedKey
	dataID string
	// values are the runbook's placeholders as they were before the
	// section, which names the keyed tenant by them.
	values map[string]string
}

// keyedKey is the name of the key file's key.
const keyedKey = "k1"

// buildRelay builds ./cmd/relay into dir (a t.TempDir made before), in the
// background; the channel gets the outcome. The test's end waits for the
// build, so that dir is removed after it.
func buildRelay(t *testing.T, dir string) <-chan error {
	root := repoRoot(t)
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "relay"), "./cmd/relay")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = &buildError{err: err, out: out}
		}
		done <- err
	}()
	t.Cleanup(func() { <-finished })
	return done
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string {
	return "go build ./cmd/relay: " + e.err.Error() + "\n" + string(e.out)
}

// hmacToken is an id's token under a keyed scheme, as docs/key-layout.md
// ("Tokens") describes it, computed here apart from the relay's code:
// HMAC-SHA-256 under HKDF-SHA-256(secret, salt = data id, info
// "jira-relay/v1/tokens"), its first 16 bytes in unpadded base64url.
func hmacToken(t testing.TB, secret []byte, dataID, id string) string {
	k, err := hkdf.Key(sha256.New, secret, []byte(dataID), "jira-relay/v1/tokens", sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// keyedBefore writes a key file, starts a relay with it over the runbook's
// etcd, registers a tenant through it with the acme tenant's users and
// mappings, and points the placeholders at that tenant.
func (env *runbookEnv) keyedBefore() {
	t := env.t
	if err := <-env.relayBuilt; err != nil {
		t.Fatal(err)
	}
	k := &env.keyed
	k.secret = make([]byte, 32)
	if _, err := rand.Read(k.secret); err != nil {
		t.Fatal(err)
	}
	keyFile := env.values["keyFile"]
	if err := os.WriteFile(keyFile, []byte("keys:\n  - name: "+keyedKey+"\n    secret: "+base64.StdEncoding.EncodeToString(k.secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k.relay = startRelay(t, env.cli, func(c *configs.Config) {
		c.RelayID = "relay-keyed"
		c.EncryptionKeyFile = keyFile
	})
	k.tenant = register(t, k.relay.URL, "https://keyed-ops.atlassian.net")
	api := func(path string) string { return k.relay.URL + "/v1/instances/" + k.tenant.ID + path }
	for _, u := range []string{env.userA, env.userB} {
		r := call(t, "PUT", api("/users/"+url.PathEscape(u)), map[string]string{"name": "Ada " + u, "email": "ada@example.com"}, "X-Relay-Key", k.tenant.Client)
		mustStatus(t, r, 201, "keyed tenant: put user "+u)
	}
	for _, m := range []struct{ conv, mail, user, id, key string }{
		{env.conv, env.mailA1, env.userA, "10001", "OPS-1"},
		{env.conv, env.mailA1, env.userA, "10002", "OPS-2"},
		{"", env.mailA2, env.userA, "10003", "OPS-3"},
		{env.conv, env.mailA1, env.userB, "10001", "OPS-1"},
	} {
		body := map[string]any{"mailId": m.mail, "userId": m.user, "app": "outlook", "jira": map[string]string{"id": m.id, "key": m.key, "projectId": "10000"}}
		if m.conv != "" {
			body["conversationId"] = m.conv
		}
		mustStatus(t, call(t, "POST", api("/mappings"), body, "X-Relay-Key", k.tenant.Client), 201, "keyed tenant: link")
	}
	rec := env.value("/jira-relay/instances/" + k.tenant.ID + "/instance")
	if !strings.Contains(rec, `"tokens":"hmac:`+keyedKey+`"`) {
		t.Fatalf("a tenant registered by a relay with a key file: its record does not say \"tokens\":\"hmac:%s\": %s", keyedKey, rec)
	}
	k.dataID = env.dataIDOf(k.tenant.ID)
	// Its keys are keyed tokens (not the unkeyed ones relay_token computes),
	// its values sealed.
	d := "/jira-relay/d/" + k.dataID + "/"
	user := d + "users/" + hmacToken(t, k.secret, k.dataID, env.userA)
	kv := env.kv(user)
	if kv == nil || !bytes.HasPrefix(kv.Value, []byte("enc:v1:"+keyedKey+":")) {
		t.Fatalf("the keyed tenant's user record is not %s, sealed with %s: %q", user, keyedKey, env.keys(d+"users/"))
	}
	if env.kv(d+"users/"+store.Token(env.userA)) != nil {
		t.Fatal("the keyed tenant's user record is under the unkeyed token")
	}

	k.values = maps.Clone(env.values)
	env.values["instanceId"] = k.tenant.ID
	env.values["dataId"] = k.dataID
}

// keyedAfter checks what the section found against the keys computed
// here and the relay's API, then erases the keyed tenant, stops its relay
// and puts the placeholders back.
func (env *runbookEnv) keyedAfter(out string) {
	t := env.t
	k := &env.keyed
	defer func() {
		env.values = k.values
		r := call(t, "DELETE", k.relay.URL+"/v1/instances/"+k.tenant.ID, nil, "X-Relay-Key", k.tenant.Admin)
		mustStatus(t, r, 204, "erase the keyed tenant")
		k.relay.Stop()
		if !relaytest.Eventually(5*time.Second, func() bool {
			return env.kv("/jira-relay/fleet/members/relay-keyed") == nil
		}) {
			t.Error("the keyed relay's member key outlives it")
		}
		for _, p := range []string{"/jira-relay/instances/" + k.tenant.ID + "/", "/jira-relay/d/" + k.dataID + "/", "/jira-relay/dataids/" + k.dataID} {
			if left := env.keys(p); len(left) > 0 {
				t.Errorf("the keyed tenant's %s is left: %q", p, left)
			}
		}
	}()
	d := "/jira-relay/d/" + k.dataID + "/"
	tok := func(id string) string { return hmacToken(t, k.secret, k.dataID, id) }
	uA, uB, c, m1, m2 := tok(env.userA), tok(env.userB), tok(env.conv), tok(env.mailA1), tok(env.mailA2)
	if len(uA) != 22 || uA == store.Token(env.userA) {
		t.Fatalf("keyed token %q", uA)
	}
	env.mustContain("keyed tokens", out,
		`"tokens":"hmac:`+keyedKey+`"`+"\n",
		// key-of: the user's record and the index of its mappings, on the
		// directory's cluster.
		d+"users/"+uA+"\tkey\t",
		d+"u/"+uA+"/\tprefix\t",
		"\t"+store.DirectoryShard+"\n",
		// the conversation's index entries
		d+"c/"+c+"/"+uA+"/"+m1+"/10001\n",
		d+"c/"+c+"/"+uA+"/"+m1+"/10002\n",
		d+"c/"+c+"/"+uB+"/"+m1+"/10001\n")

	// What decrypt printed: the user record opened, the user's index
	// entries, the conversation's records and the message's, opened.
	type line struct {
		Key        string          `json:"key"`
		Value      json.RawMessage `json:"value"`
		SealedWith string          `json:"sealed_with"`
		Error      string          `json:"error"`
	}
	var user *line
	var records []string
	entries := 0
	for _, l := range strings.Split(out, "\n") {
		var p line
		if !strings.HasPrefix(l, `{"key":`) || json.Unmarshal([]byte(l), &p) != nil {
			continue
		}
		if p.Error != "" {
			t.Errorf("keyed tokens: decrypt could not open %s: %s", p.Key, p.Error)
		}
		switch {
		case p.Key == d+"users/"+uA:
			user = &p
		case strings.HasPrefix(p.Key, d+"u/"+uA+"/"):
			entries++
		case strings.HasPrefix(p.Key, d+"m/"):
			if p.SealedWith != keyedKey {
				t.Errorf("keyed tokens: the record %s is shown as sealed with %q, want %s", p.Key, p.SealedWith, keyedKey)
			}
			records = append(records, string(p.Value))
		default:
			t.Errorf("keyed tokens: decrypt printed a key the section does not ask for: %s", l)
		}
	}
	var u struct{ UserID, Name string }
	if user == nil || user.SealedWith != keyedKey || json.Unmarshal(user.Value, &u) != nil || u.UserID != env.userA || u.Name != "Ada "+env.userA {
		t.Errorf("keyed tokens: the user record is not shown opened (sealed with %s):\n%s", keyedKey, out)
	}
	if entries != 3 {
		t.Errorf("keyed tokens: %d of the user's index entries shown, want 3:\n%s", entries, out)
	}
	// The records, opened, are what the API answers for the conversation,
	// then for the message.
	var want []string
	for _, q := range []string{"conversationId=" + url.QueryEscape(env.conv), "mailId=" + url.QueryEscape(env.mailA1)} {
		r := call(t, "GET", k.relay.URL+"/v1/instances/"+k.tenant.ID+"/mappings?"+q, nil, "X-Relay-Key", k.tenant.Client)
		mustStatus(t, r, 200, "keyed tenant: find mappings "+q)
		var page struct {
			Mappings []json.RawMessage `json:"mappings"`
		}
		r.Decode(t, &page)
		for _, m := range page.Mappings {
			want = append(want, compactJSON(t, m))
		}
	}
	for i := range records {
		records[i] = compactJSON(t, []byte(records[i]))
	}
	sort.Strings(records)
	sort.Strings(want)
	if len(want) != 6 || !slices.Equal(records, want) {
		t.Errorf("keyed tokens: the records opened:\n%s\nthe API's (conversation, then message):\n%s", strings.Join(records, "\n"), strings.Join(want, "\n"))
	}

	// The last block: every key of user A, in the order to delete them,
	// the user record last.
	wantKeys := userKeys(d, uA, c, m1, m2)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < len(wantKeys) {
		t.Fatalf("keyed tokens: the output is too short:\n%s", out)
	}
	listed := lines[len(lines)-len(wantKeys):]
	sorted := slices.Clone(listed)
	sort.Strings(sorted)
	if !slices.Equal(sorted, wantKeys) || listed[len(listed)-1] != d+"users/"+uA {
		t.Errorf("keyed tokens: relay_user_keys with the user's token lists\n%s\nwant (the user record last)\n%s", strings.Join(listed, "\n"), strings.Join(wantKeys, "\n"))
	}
}

// compactJSON is the JSON value b, its members sorted, without spaces.
func compactJSON(t testing.TB, b []byte) string {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %q: %v", b, err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// checkRelayDataID: relay_data_id reads the data id from the record (not
// the one a re-key notes in "move", not one a URL holds), and from the
// dataids/ entries when the record does not decode or is gone.
func (env *runbookEnv) checkRelayDataID(setup string) {
	t := env.t
	id := env.acme.ID
	entries := "/jira-relay/dataids/abcdef\n{\"instanceId\":\"" + id + "\"}\n/jira-relay/dataids/ghijkm\n{\"instanceId\":\"" + id + "\"}\n"
	rec := func(in store.Instance) string {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	since := time.Now().UTC()
	for _, c := range []struct{ record, want string }{
		{rec(store.Instance{ID: id, DataID: "abcdef", Tokens: store.TokensUnkeyed}), "abcdef"},
		{rec(store.Instance{ID: id, DataID: "abcdef", Tokens: store.TokensUnkeyed, Move: &store.Move{To: store.DirectoryShard, Since: since, DataID: "ghijkm", Tokens: "hmac:k1"}}), "abcdef"},
		{rec(store.Instance{ID: id, URL: `https://x/"dataId":"zzzzzz"`, DataID: "ghijkm", Shard: "eu-1", Tokens: "hmac:k1"}), "ghijkm"},
		{"\x01{\"id\":\"" + id + "\",\"dataId\":\"zzzzzz\",garbled", "abcdef\nghijkm"},
		{"", "abcdef\nghijkm"},
	} {
		fake := "etcdctl() { case \"$*\" in *instances/*) [ -z " + shellQuote(c.record) + " ] || printf '%s\\n' " + shellQuote(c.record) + " ;; *dataids/*) printf '%s' " + shellQuote(entries) + " ;; esac; }"
		if got := env.bash("relay_data_id", setup+"\n"+fake+"\nrelay_data_id "+id); got != c.want+"\n" {
			t.Errorf("relay_data_id of the record %q = %q, want %q", c.record, got, c.want)
		}
	}
}
