package proxy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	"github.com/jira-relay/jira-relay/internal/seal"
)

// writeKeyFile writes a key file of one new key named name (mode 0600).
func writeKeyFile(t *testing.T, name string) string {
	t.Helper()
	e, err := seal.Generate(name)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(p, []byte("keys:\n"+e), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEncryptionAtRestThroughTheAPI: a relay with --encryption-key-file
// serves what it sealed; a relay over the same store whose key file lacks
// that key answers that one request 500 encryption_key_missing (JSON error
// shape) and logs the key's name, never its secret, and keeps serving
// what needs no decryption; each relay says at start whether encryption is
// on.
func TestEncryptionAtRestThroughTheAPI(t *testing.T) {
	t.Parallel()
	k1 := writeKeyFile(t, "k1")
	logsA := &relaytest.LogBuffer{}
	a := relaytest.StartWith(t, relaytest.Options{Logger: logsA.Logger(), Mutate: func(c *configs.Config) { c.EncryptionKeyFile = k1 }})
	if !strings.Contains(logsA.String(), "encryption at rest is on") || !strings.Contains(logsA.String(), `"key":"k1"`) {
		t.Errorf("relay A did not say encryption is on with k1:\n%s", logsA.String())
	}
	api := relaytest.NewClient(t, a.URL)
	ten := api.MustRegister(t, "https://sealed-api.atlassian.net")
	p := "/v1/instances/" + ten.ID
	if res := api.Do("PUT", p+"/users/u-1", ten.Client, map[string]any{"name": "Mia", "email": "mia@example.com"}); res.Status != 201 {
		t.Fatalf("put user: %s", res)
	}
	if res := api.Do("GET", p+"/users/u-1", ten.Client, nil); res.Status != 200 || res.JSON(t)["email"] != "mia@example.com" {
		t.Fatalf("get user through the relay that sealed it: %s", res)
	}

	logsB := &relaytest.LogBuffer{}
	b := relaytest.StartWith(t, relaytest.Options{Etcd: a.Etcd, Logger: logsB.Logger(), Mutate: func(c *configs.Config) {
		c.EtcdPrefix = a.Config.EtcdPrefix
		c.EncryptionKeyFile = writeKeyFile(t, "k2")
	}})
	bapi := relaytest.NewClient(t, b.URL)
	res := bapi.Do("GET", p+"/users/u-1", ten.Client, nil)
	if res.Status != 500 || res.ErrCode(t) != "encryption_key_missing" {
		t.Errorf("a record sealed with a key relay B lacks: %s, want 500 encryption_key_missing", res)
	}
	if !strings.Contains(logsB.String(), `sealed with key \"k1\"`) {
		t.Errorf("relay B's log does not name the missing key:\n%s", logsB.String())
	}
	secret, _ := os.ReadFile(k1)
	for _, l := range strings.Split(string(secret), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "secret: "); ok && (strings.Contains(logsA.String(), v) || strings.Contains(logsB.String(), v)) {
			t.Error("a key's secret is in a log")
		}
	}
	// What needs no decryption still works on relay B.
	if res := bapi.Do("GET", p+"/mappings?conversationId=c1", ten.Client, nil); res.Status != 200 {
		t.Errorf("a lookup with no sealed record on relay B: %s", res)
	}

	// A relay without a key file (as before encryption was turned on)
	// writes plaintext; the relay with the key file reads it.
	logsC := &relaytest.LogBuffer{}
	c := relaytest.StartWith(t, relaytest.Options{Etcd: a.Etcd, Logger: logsC.Logger(), Mutate: func(c *configs.Config) { c.EtcdPrefix = a.Config.EtcdPrefix }})
	if !strings.Contains(logsC.String(), "encryption at rest is off") {
		t.Errorf("a relay without a key file did not say so:\n%s", logsC.String())
	}
	if res := relaytest.NewClient(t, c.URL).Do("PUT", p+"/users/u-plain", ten.Client, map[string]any{"name": "Ann", "email": "ann@example.com"}); res.Status != 201 {
		t.Fatalf("put user without encryption: %s", res)
	}
	if res := api.Do("GET", p+"/users/u-plain", ten.Client, nil); res.Status != 200 || res.JSON(t)["email"] != "ann@example.com" {
		t.Errorf("a plaintext user through the relay with a key file: %s", res)
	}
}
