package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// atRestCanaries are written through the API; with encryption on none may
// be found in etcd: not in a key, not in a value, not in a snapshot.
var atRestCanaries = []string{
	"Canary Quokka",                    // a user's name
	"quokka.canary@example.com",        // a user's e-mail
	"AAQkAGCanaryConversation0001=",    // an Outlook conversation id
	"canary-message-0001@mail.example", // an internet message id (written in <>; JSON escapes those)
	"canary-template-text",             // the admin's configuration
	"canary error report text",         // an error report
	"canary-licence-key-0001",          // the licence key in the instance record
	"canary-user-7f3a",                 // a user id (in the path of its user record)
}

// dumpEtcd is every key and value of the member, as the client reads them
// and as etcdctl get --prefix "" -w json prints them (decoded), then a
// snapshot of it.
func dumpEtcd(t *testing.T, cli *clientv3.Client, endpoints []string) (kvs, snapshot []byte) {
	t.Helper()
	ctx := context.Background()
	resp, err := cli.Get(ctx, "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, kv := range resp.Kvs {
		b.Write(kv.Key)
		b.WriteByte('=')
		b.Write(kv.Value)
		b.WriteByte('\n')
	}
	if etcdctl, err := exec.LookPath("etcdctl"); err == nil {
		cmd := exec.Command(etcdctl, "--endpoints", strings.Join(endpoints, ","), "get", "--prefix", "", "-w", "json")
		cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("etcdctl get: %v", err)
		}
		var a struct {
			Kvs []struct {
				Key, Value []byte // base64 in etcdctl's JSON
			} `json:"kvs"`
		}
		if err := json.Unmarshal(out, &a); err != nil || len(a.Kvs) != len(resp.Kvs) {
			t.Fatalf("etcdctl's answer: %d keys, %v; the client read %d", len(a.Kvs), err, len(resp.Kvs))
		}
		for _, kv := range a.Kvs {
			b.Write(kv.Key)
			b.WriteByte('=')
			b.Write(kv.Value)
			b.WriteByte('\n')
		}
	} else if os.Getenv("CI") == "true" {
		t.Fatal("etcdctl is missing, and CI=true requires it: apt-get install -y etcd-client")
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	snap, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), snap
}

// writeThroughAPI writes every canary through relay r.
func writeThroughAPI(t *testing.T, r *relaytest.Relay) {
	t.Helper()
	api := relaytest.NewClient(t, r.URL)
	ten := api.MustRegister(t, "https://privacy.atlassian.net")
	p := "/v1/instances/" + ten.ID
	lic := map[string]any{"key": "canary-licence-key-0001", "expiresAt": "2030-01-01T00:00:00Z", "seats": 31}
	if res := api.Do("PATCH", p, ten.Admin, map[string]any{"errorReports": true, "license": lic}); res.Status != 200 {
		t.Fatalf("opt in to error reports, with a licence: %s", res)
	}
	for _, c := range []struct {
		method, path, key string
		body              any
	}{
		{"PUT", p + "/users/canary-user-7f3a", ten.Client, map[string]any{"name": "Canary Quokka", "email": "quokka.canary@example.com"}},
		{"POST", p + "/mappings", ten.Client, relaytest.MappingBody("AAQkAGCanaryConversation0001=", "<canary-message-0001@mail.example>", "canary-user-7f3a", "10001", "AB-1")},
		{"PUT", p + "/config", ten.Admin, map[string]any{"template": "canary-template-text"}},
		{"POST", p + "/error-reports", ten.Client, map[string]any{"message": "canary error report text"}},
	} {
		if res := api.Do(c.method, c.path, c.key, c.body); res.Status >= 300 {
			t.Fatalf("%s %s: %s", c.method, c.path, res)
		}
	}
}

// TestNothingPersonalAtRest: with --encryption-key-file, names, e-mails,
// conversation and message ids, configuration strings, error reports and
// licence keys (in the instance record) written through the API are found
// nowhere in etcd (keys, values, a
// snapshot file with every revision); with encryption off they are found
// (the test can see). User ids, conversation ids and message ids stand
// in keys only as keyed tokens.
func TestNothingPersonalAtRest(t *testing.T) {
	t.Parallel()
	for _, encrypted := range []bool{true, false} {
		e, cli := etcdtest.Start(t)
		k := writeKeyFile(t, "k1")
		r := relaytest.StartWithEtcd(t, cli, func(c *configs.Config) {
			if encrypted {
				c.EncryptionKeyFile = k
			}
		})
		writeThroughAPI(t, r)
		kvs, snap := dumpEtcd(t, cli, e.Endpoints())
		for _, c := range atRestCanaries {
			inKVs, inSnap := bytes.Contains(kvs, []byte(c)), bytes.Contains(snap, []byte(c))
			switch {
			case encrypted && (inKVs || inSnap):
				t.Errorf("encryption on: %q is in etcd (keys and values %v, snapshot %v)", c, inKVs, inSnap)
			case !encrypted && !(inKVs && inSnap):
				t.Errorf("encryption off: %q is not found (keys and values %v, snapshot %v): the test cannot see", c, inKVs, inSnap)
			}
		}
		if encrypted && !bytes.Contains(kvs, []byte("enc:v1:k1:")) {
			t.Error("encryption on, but no sealed value in etcd")
		}
	}
}
