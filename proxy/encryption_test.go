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
	if !strings.Contains(logsB.String(), `key \"k1\"`) {
		t.Errorf("relay B's log does not name the missing key:\n%s", logsB.String())
	}
	secret, _ := os.ReadFile(k1)
	for _, l := range strings.Split(string(secret), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "secret: "); ok && (strings.Contains(logsA.String(), v) || strings.Contains(logsB.String(), v)) {
			t.Error("a key's secret is in a log")
		}
	}
	// The tenant's keys are tokens of k1: relay B cannot even find a
	// record that was never sealed, and says so rather than answer empty.
	if res := bapi.Do("GET", p+"/mappings?conversationId=c1", ten.Client, nil); res.Status != 500 || res.ErrCode(t) != "encryption_key_missing" {
		t.Errorf("a lookup through a relay without the tenant's token key: %s, want 500 encryption_key_missing", res)
	}
	// What needs no key still works on relay B: the key check, and the
	// configuration read (none was set).
	if res := bapi.Do("GET", p+"/config", "jrc_wrong", nil); res.Status != 401 {
		t.Errorf("a wrong key through relay B: %s, want 401", res)
	}
	if res := bapi.Do("GET", p+"/config", ten.Client, nil); res.Status != 200 {
		t.Errorf("the (unset) configuration through relay B: %s, want 200", res)
	}

	// The licence in the instance record is sealed with k1 too: relay B
	// routes the tenant (above), but shows no instance without its licence,
	// and a PATCH it could not answer with the instance changes nothing.
	if res := bapi.Do("GET", p, ten.Admin, nil); res.Status != 500 || res.ErrCode(t) != "encryption_key_missing" {
		t.Errorf("the instance, its licence sealed with a key relay B lacks: %s, want 500 encryption_key_missing", res)
	}
	if res := bapi.Do("PATCH", p, ten.Admin, map[string]any{"addinVersion": "9.9.9"}); res.Status != 500 || res.ErrCode(t) != "encryption_key_missing" {
		t.Errorf("a PATCH of the instance through relay B: %s, want 500 encryption_key_missing", res)
	}
	if res := api.Do("GET", p, ten.Admin, nil); res.Status != 200 || res.JSON(t)["addinVersion"] != "4.2.0" {
		t.Errorf("the instance through the relay that sealed it: %s", res)
	} else if lic, _ := res.JSON(t)["license"].(map[string]any); lic["key"] != "LIC-1" {
		t.Errorf("the licence through the relay that sealed it: %s", res)
	}

	// A relay without a key file (as before encryption was turned on)
	// writes plaintext; the relay with the key file reads it.
	logsC := &relaytest.LogBuffer{}
	c := relaytest.StartWith(t, relaytest.Options{Etcd: a.Etcd, Logger: logsC.Logger(), Mutate: func(c *configs.Config) { c.EtcdPrefix = a.Config.EtcdPrefix }})
	if !strings.Contains(logsC.String(), "encryption at rest is off") {
		t.Errorf("a relay without a key file did not say so:\n%s", logsC.String())
	}
	capi := relaytest.NewClient(t, c.URL)
	if res := capi.Do("PUT", p+"/users/u-plain", ten.Client, map[string]any{"name": "Ann", "email": "ann@example.com"}); res.Status != 500 || res.ErrCode(t) != "encryption_key_missing" {
		t.Errorf("a write to a tenant of keyed tokens through a relay without the key: %s, want 500 encryption_key_missing", res)
	}
	plain := capi.MustRegister(t, "https://plain-api.atlassian.net")
	pp := "/v1/instances/" + plain.ID
	if res := capi.Do("PUT", pp+"/users/u-plain", plain.Client, map[string]any{"name": "Ann", "email": "ann@example.com"}); res.Status != 201 {
		t.Fatalf("put user without encryption: %s", res)
	}
	if res := api.Do("GET", pp+"/users/u-plain", plain.Client, nil); res.Status != 200 || res.JSON(t)["email"] != "ann@example.com" {
		t.Errorf("a plaintext user through the relay with a key file: %s", res)
	}
}
