package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/seal"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestEncryptionDecrypt pipes the real etcdctl's JSON into relay encryption
// decrypt: plain JSON, text, bytes, empty values and sealed values come out
// as plain lines; a sealed value moved to another key, or sealed with a key
// the file no longer lists, is an error on its line, never a wrong value.
func TestEncryptionDecrypt(t *testing.T) {
	etcdctl, err := exec.LookPath("etcdctl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("etcdctl is missing, and CI=true requires it: apt-get install -y etcd-client")
		}
		t.Skip("etcdctl is missing (apt-get install -y etcd-client); skipped outside CI")
	}
	e, cli := etcdtest.Start(t)
	dir := t.TempDir()
	old := writeKeys(t, dir, "old.yaml", "k0")
	cur := writeKeys(t, dir, "keys.yaml", "k1")
	k0, _ := seal.Load(old)
	k1, _ := seal.Load(cur)
	sealed := k1.Seal(nil, []byte("/p/users/sealed"), []byte(`{"name":"Mia","email":"mia@example.com"}`))
	ctx := context.Background()
	for k, v := range map[string]string{
		"/p/users/plain":  `{"name":"Ann"}`,
		"/p/text":         "hello",
		"/p/empty":        "",
		"/p/bin":          "\xff\x00\x01",
		"/p/users/sealed": string(sealed),
		"/p/users/moved":  string(sealed),
		"/p/users/old":    string(k0.Seal(nil, []byte("/p/users/old"), []byte(`{"name":"Old"}`))),
	} {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(etcdctl, "--endpoints", strings.Join(e.Endpoints(), ","), "get", "--prefix", "/p/", "-w", "json")
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("etcdctl: %v", err)
	}
	decrypted := func(keyFile string) map[string]map[string]any {
		t.Helper()
		args := []string{"decrypt"}
		if keyFile != "" {
			args = append(args, "--encryption-key-file", keyFile)
		}
		var out, errb bytes.Buffer
		// Two answers in a row, as two etcdctl calls piped together print.
		if code := runEncryption(context.Background(), args, nil, bytes.NewReader(append(append([]byte{}, raw...), raw...)), &out, &errb); code != exitOK {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		lines := map[string]map[string]any{}
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("not a JSON line: %q", l)
			}
			lines[m["key"].(string)] = m
		}
		if len(lines) != 7 || strings.Count(out.String(), "\n") != 14 {
			t.Fatalf("%d keys in %d lines, want 7 keys twice:\n%s", len(lines), strings.Count(out.String(), "\n"), out.String())
		}
		return lines
	}
	got := decrypted(cur)
	want := map[string]string{
		"/p/users/plain":  `{"name":"Ann"}`,
		"/p/text":         `"hello"`,
		"/p/empty":        `""`,
		"/p/users/sealed": `{"email":"mia@example.com","name":"Mia"}`,
	}
	for k, v := range want {
		b, _ := json.Marshal(got[k]["value"])
		if string(b) != v {
			t.Errorf("%s: value %s, want %s", k, b, v)
		}
	}
	if got["/p/users/sealed"]["sealed_with"] != "k1" || got["/p/users/plain"]["sealed_with"] != nil {
		t.Errorf("sealed_with: %v / %v", got["/p/users/sealed"]["sealed_with"], got["/p/users/plain"]["sealed_with"])
	}
	if b64, _ := got["/p/bin"]["value_base64"].(string); b64 != base64.StdEncoding.EncodeToString([]byte("\xff\x00\x01")) {
		t.Errorf("bytes: %v", got["/p/bin"])
	}
	if e, _ := got["/p/users/moved"]["error"].(string); !strings.HasPrefix(e, "does not open") || got["/p/users/moved"]["value"] != nil {
		t.Errorf("a sealed value moved to another key: %v", got["/p/users/moved"])
	}
	if e, _ := got["/p/users/old"]["error"].(string); !strings.Contains(e, "encryption_key_missing") || !strings.Contains(e, "k0") {
		t.Errorf("a value of a retired key: %v", got["/p/users/old"])
	}
	if rev, _ := got["/p/text"]["mod_revision"].(float64); rev < 1 {
		t.Errorf("mod_revision missing: %v", got["/p/text"])
	}
	// Without the key file a sealed value stays sealed; plaintext still reads.
	without := decrypted("")
	if e, _ := without["/p/users/sealed"]["error"].(string); !strings.Contains(e, "--encryption-key-file") || without["/p/users/sealed"]["value"] != nil {
		t.Errorf("sealed without a key file: %v", without["/p/users/sealed"])
	}
	if strings.Contains(string(raw), "Mia") {
		t.Fatal("the sealed value was readable in etcdctl's own output")
	}
}

func TestEncryptionDecryptRefuses(t *testing.T) {
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose.yaml")
	entry, _ := seal.Generate("k1")
	if err := os.WriteFile(loose, []byte("keys:\n"+entry), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args  []string
		input string
		want  string
	}{
		{nil, "", "a subcommand is needed"},
		{[]string{"encrypt"}, "", `unknown subcommand "encrypt"`},
		{[]string{"decrypt", "file.json"}, "", "unexpected argument"},
		{[]string{"decrypt"}, "", "no input"},
		{[]string{"decrypt"}, "{not json", "answer 1 is not the JSON of etcdctl get -w json"},
		{[]string{"decrypt"}, `{"kvs":[{"key":"!!"}]}`, "answer 1 is not the JSON"},
		{[]string{"decrypt", "--encryption-key-file", loose}, `{"kvs":[]}`, "readable by others"},
	} {
		var out, errb bytes.Buffer
		if code := runEncryption(context.Background(), tc.args, nil, strings.NewReader(tc.input), &out, &errb); code != exitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v on %q: exit %d, %q; want 2 and %q", tc.args, tc.input, code, errb.String(), tc.want)
		}
	}
}

// writeKeys writes a key file of one new key named name, mode 0600.
func writeKeys(t *testing.T, dir, file, name string) string {
	t.Helper()
	entry, err := seal.Generate(name)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, file)
	if err := os.WriteFile(p, []byte("keys:\n"+entry), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEncryptionStatus counts a store's values by how they are stored.
func TestEncryptionStatus(t *testing.T) {
	e, cli := etcdtest.Start(t)
	dir := t.TempDir()
	keyFile := writeKeys(t, dir, "keys.yaml", "k1")
	k1, _ := seal.Load(keyFile)
	k0, _ := seal.Load(writeKeys(t, dir, "old.yaml", "k0"))
	ctx := context.Background()
	puts := map[string]string{"/jr/d/a/c/x/y": "", "/jr/d/a/c/x/z": "", "/jr/instances/i/config": `{"a":1}`}
	for i := range 1203 { // more than a page
		puts[fmt.Sprintf("/jr/d/a/users/u%04d", i)] = string(k1.Seal(nil, []byte("k"), []byte("v")))
	}
	puts["/jr/d/a/users/old"] = string(k0.Seal(nil, []byte("k"), []byte("v")))
	puts["/other/x"] = "outside the prefix"
	// Instance records count as their licence is stored: one sealed with
	// k1 (a JSON string), one in plaintext.
	lic := k1.Seal(nil, []byte("k\x00license"), []byte(`{"key":"L"}`))
	head := len(seal.Prefix + "k1:")
	puts["/jr/instances/abcdefghijklmnopqrstuvwxyz/instance"] = `{"id":"abcdefghijklmnopqrstuvwxyz","license":"` + string(lic[:head]) + base64.StdEncoding.EncodeToString(lic[head:]) + `"}`
	puts["/jr/instances/bcdefghijklmnopqrstuvwxyza/instance"] = `{"id":"bcdefghijklmnopqrstuvwxyza","tokens":"sha256","license":{"key":"L"}}`
	puts["/jr/instances/cdefghijklmnopqrstuvwxyzab/instance"] = `{"id":"cdefghijklmnopqrstuvwxyzab","tokens":"hmac:k1"}`
	puts["/jr/instances/defghijklmnopqrstuvwxyzabc/instance"] = `{"id":"defghijklmnopqrstuvwxyzabc","tokens":"hmac:k0"}`
	for k, v := range puts {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	var out, errb bytes.Buffer
	args := []string{"status", "--encryption-key-file", keyFile, "--etcd-endpoints", strings.Join(e.Endpoints(), ","), "--etcd-prefix", "/jr/"}
	if code := runEncryption(ctx, args, nil, nil, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{
		"directory  empty      2",
		"directory  k0         1      sealed with a key the file does not list: encryption_key_missing",
		"directory  k1         1204   the primary key",
		"directory  plaintext  4",
		"hmac:k0  1        keyed with a key the file does not list: encryption_key_missing",
		"hmac:k1  1        the primary key",
		"sha256   1        unkeyed: ids can be matched against a listing; relay encryption rewrite re-keys them",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
}

// TestEncryptionRewrite: relay encryption rewrite seals plaintext and
// old-key values with the first key, leaves what is not a sealable value
// alone, and a second run finds nothing to do.
func TestEncryptionRewrite(t *testing.T) {
	e, cli := etcdtest.Start(t)
	dir := t.TempDir()
	e0, _ := seal.Generate("k0")
	e1, _ := seal.Generate("k1")
	both := filepath.Join(dir, "both.yaml")
	if err := os.WriteFile(both, []byte("keys:\n"+e1+e0), 0o600); err != nil {
		t.Fatal(err)
	}
	k0, _ := seal.Parse([]byte("keys:\n" + e0))
	ctx := context.Background()
	const user, record = "/jr/d/abc234/users/u1", "/jr/d/abc234/m/aaaa/bbbb/10001"
	for k, v := range map[string]string{
		user:   `{"userId":"u1","name":"Mia"}`,
		record: string(k0.Seal(nil, []byte(record), []byte(`{"mailId":"<m@x>"}`))),
		"/jr/instances/abcdefghijklmnopqrstuvwxyz/config":   `{"template":"t"}`,
		"/jr/instances/abcdefghijklmnopqrstuvwxyz/instance": `{"id":"abcdefghijklmnopqrstuvwxyz"}`,
		"/jr/d/abc234/c/aaaa/bbbb/cccc/10001":               "",
		"/jr/urls/https:%2F%2Fa.atlassian.net":              `{"instanceId":"abcdefghijklmnopqrstuvwxyz"}`,
	} {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"rewrite", "--encryption-key-file", both, "--etcd-endpoints", strings.Join(e.Endpoints(), ","), "--etcd-prefix", "/jr/"}
	var out, errb bytes.Buffer
	if code := runEncryption(ctx, args, nil, nil, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "sealed with k1: 3 rewritten, 0 already") {
		t.Errorf("rewrite: %s", out.String())
	}
	resp, err := cli.Get(ctx, "/jr/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		k, sealedK1 := string(kv.Key), strings.HasPrefix(string(kv.Value), "enc:v1:k1:")
		want := k == user || k == record || strings.HasSuffix(k, "/config")
		if sealedK1 != want {
			t.Errorf("%s: sealed with k1 %v, want %v", k, sealedK1, want)
		}
	}
	out.Reset()
	if code := runEncryption(ctx, args, nil, nil, &out, &errb); code != exitOK || !strings.Contains(out.String(), "0 rewritten, 3 already") {
		t.Errorf("a second run: exit %d, %s", code, out.String())
	}
	// Without a key file: the re-key to unkeyed tokens only (the one
	// record here does not decode: left as it is), nothing sealed or
	// opened.
	out.Reset()
	if code := runEncryption(ctx, []string{"rewrite", "--etcd-endpoints", strings.Join(e.Endpoints(), ","), "--etcd-prefix", "/jr/"}, nil, nil, &out, &errb); code != exitOK ||
		!strings.Contains(out.String(), "tokens of sha256 (unkeyed: no --encryption-key-file): 0 tenants re-keyed, 1 left as they are") ||
		!strings.Contains(out.String(), "values: left as they are") {
		t.Errorf("rewrite without a key file: exit %d, %s", code, out.String())
	}
	after, err := cli.Get(ctx, "/jr/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for i, kv := range after.Kvs {
		if kv.ModRevision != resp.Kvs[i].ModRevision {
			t.Errorf("rewrite without a key file changed %s", kv.Key)
		}
	}
}

// TestEncryptionKeyOf: the keys key-of prints are where the relay keeps
// the ids.
func TestEncryptionKeyOf(t *testing.T) {
	e, cli := etcdtest.Start(t)
	ctx := context.Background()
	st, err := store.New(cli, cli, store.Options{Prefix: "/jr/", Lease: cli})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	reg, err := st.Register(ctx, store.NewInstance{URL: "https://key-of.atlassian.net", JiraVersion: "1001.0.0", AddinVersion: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	id := reg.Instance.ID
	if _, _, err := st.PutUser(ctx, id, store.User{UserID: "u/1 with spaces", Name: "Mia", Email: "mia@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.LinkMapping(ctx, id, store.Mapping{ConversationID: "AAQk+/=", MailID: "<m@x>", UserID: "u/1 with spaces", Jira: store.JiraRef{ID: "10001", Key: "AB-1"}}); err != nil {
		t.Fatal(err)
	}
	eps := strings.Join(e.Endpoints(), ",")
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runEncryption(ctx, append([]string{"key-of"}, append(args, "--etcd-endpoints", eps, "--etcd-prefix", "/jr/")...), nil, nil, &out, &errb)
		return code, out.String(), errb.String()
	}
	for _, tc := range []struct {
		flag, id string
		lines    int
	}{{"--user", "u/1 with spaces", 2}, {"--conversation", "AAQk+/=", 1}, {"--mail", "<m@x>", 1}} {
		code, out, errs := run("--instance", id, tc.flag, tc.id)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != exitOK || len(lines) != tc.lines {
			t.Fatalf("%s: exit %d, %q %s", tc.flag, code, out, errs)
		}
		for _, l := range lines {
			f := strings.Split(l, "\t")
			opts := []clientv3.OpOption{clientv3.WithCountOnly()}
			if f[1] == "prefix" {
				opts = append(opts, clientv3.WithPrefix())
			}
			resp, err := cli.Get(ctx, f[0], opts...)
			if err != nil || resp.Count != 1 || f[3] != "directory" {
				t.Errorf("%s: %q holds %v keys (%v), want 1, on the directory", tc.flag, l, resp.Count, err)
			}
		}
	}
	for _, args := range [][]string{
		{"--instance", id},
		{"--instance", id, "--user", "a", "--mail", "b"},
		{"--instance", "nope", "--user", "a"},
		{"--instance", "aaaaaaaaaaaaaaaaaaaaaaaaaa", "--user", "a"},
	} {
		if code, _, _ := run(args...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestEncryptionDecryptLicence: an instance record whose licence a relay
// sealed prints with the licence opened (and sealed_with) given the key
// file, and with an error, never the sealed string as a licence, without.
func TestEncryptionDecryptLicence(t *testing.T) {
	_, cli := etcdtest.Start(t)
	keyFile := writeKeys(t, t.TempDir(), "keys.yaml", "k1")
	k1, _ := seal.Load(keyFile)
	ctx := context.Background()
	st, err := store.New(cli, cli, store.Options{Prefix: "/q/", Lease: cli, Keys: k1})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := st.Register(ctx, store.NewInstance{URL: "https://licence.atlassian.net", JiraVersion: "1", AddinVersion: "1",
		License: &store.License{Key: "LIC-canary-0042", Seats: 25, ExpiresAt: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}})
	if err != nil {
		t.Fatal(err)
	}
	key := "/q/instances/" + reg.Instance.ID + "/instance"
	resp, err := cli.Get(ctx, key, clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 || strings.Contains(string(resp.Kvs[0].Value), "LIC-canary") {
		t.Fatalf("the stored record: %v, %v", resp, err)
	}
	answer, _ := json.Marshal(map[string]any{"kvs": []map[string]any{{"key": []byte(key), "value": resp.Kvs[0].Value, "mod_revision": resp.Kvs[0].ModRevision}}})
	for _, withKeys := range []bool{true, false} {
		args := []string{"decrypt"}
		if withKeys {
			args = append(args, "--encryption-key-file", keyFile)
		}
		var out, errb bytes.Buffer
		if code := runEncryption(ctx, args, nil, bytes.NewReader(answer), &out, &errb); code != exitOK {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		var line struct {
			Value struct {
				URL     string `json:"url"`
				License struct {
					Key   string `json:"key"`
					Seats int    `json:"seats"`
				} `json:"license"`
			} `json:"value"`
			SealedWith string `json:"sealed_with"`
			Error      string `json:"error"`
		}
		if err := json.Unmarshal(out.Bytes(), &line); err != nil {
			t.Fatalf("%s: %v", out.String(), err)
		}
		switch {
		case withKeys && (line.Value.License.Key != "LIC-canary-0042" || line.Value.License.Seats != 25 || line.Value.URL != "https://licence.atlassian.net" || line.SealedWith != "k1"):
			t.Errorf("with the key file: %s", out.String())
		case !withKeys && (line.Error == "" || line.SealedWith != "k1" || strings.Contains(out.String(), "LIC-canary")):
			t.Errorf("without the key file: %s", out.String())
		}
	}
}
