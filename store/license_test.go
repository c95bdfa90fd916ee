package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// licenseCanary is a licence key no sealed record may show in etcd.
const licenseCanary = "LIC-CANARY-7f3a9c"

func canaryLicense() *store.License {
	return &store.License{Key: licenseCanary, ExpiresAt: time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC), Seats: 4321}
}

// registerLicensed registers the instance at url with the canary licence.
func registerLicensed(t *testing.T, s *store.Store, url string) *store.Registration {
	t.Helper()
	r, err := s.Register(context.Background(), store.NewInstance{
		URL: url, JiraVersion: "1001.0.0", AddinVersion: "4.2.0", License: canaryLicense(),
	})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	return r
}

// recordKey is the etcd key of instance id's record under prefix p.
func recordKey(p, id string) string { return p + "instances/" + id + "/instance" }

// recordFields is the stored instance record of id, member by member.
func recordFields(t *testing.T, cli *clientv3.Client, p, id string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(getKV(t, cli, recordKey(p, id)).Value, &m); err != nil {
		t.Fatalf("the instance record is no JSON object: %v", err)
	}
	return m
}

func sameLicense(l *store.License) bool {
	w := canaryLicense()
	return l != nil && l.Key == w.Key && l.ExpiresAt.Equal(w.ExpiresAt) && l.Seats == w.Seats
}

// With a key file the licence of the instance record is sealed (a JSON
// string), the rest of the record stays readable, and the store reads the
// licence back, on this relay and on another with the key.
func TestLicenseSealed(t *testing.T) {
	t.Parallel()
	cli, p := etcdtest.Shared(t)
	keys := keyFile(t, "k1")
	s := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keys, Lease: cli})
	r := registerLicensed(t, s, "https://licensed.atlassian.net")
	id := r.Instance.ID
	kv := getKV(t, cli, recordKey(p, id))
	raw := string(kv.Value)
	for _, c := range []string{licenseCanary, `"seats"`, "4321", "2031-03-04"} {
		if strings.Contains(raw, c) {
			t.Errorf("%q is readable in the instance record: %s", c, raw)
		}
	}
	for _, want := range []string{`"license":"enc:v1:k1:`, `"url":"https://licensed.atlassian.net"`, `"dataId":"`, `"adminKeySha256":"`} {
		if !strings.Contains(raw, want) {
			t.Errorf("the instance record lacks %s: %s", want, raw)
		}
	}
	if name, sealed := store.SealedWith(p, kv.Key, kv.Value); !sealed || name != "k1" {
		t.Errorf("SealedWith(the record) = %q, %v; want k1", name, sealed)
	}
	ctx := context.Background()
	other := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keys, Lease: cli})
	for name, st := range map[string]*store.Store{"the relay that wrote it": s, "another relay": other} {
		in, err := st.Instance(ctx, id)
		if err != nil || !sameLicense(in.License) {
			t.Fatalf("%s: Instance = %+v, %v; want the licence back", name, in, err)
		}
		if v, err := in.View(); err != nil || !sameLicense(v.License) {
			t.Errorf("%s: View = %+v, %v", name, v, err)
		}
	}
	// An update keeps the licence, sealed anew.
	v := "4.3.0"
	in, err := other.PatchInstance(ctx, id, store.InstancePatch{AddinVersion: &v})
	if err != nil || !sameLicense(in.License) {
		t.Fatalf("PatchInstance = %+v, %v", in, err)
	}
	if raw := string(getKV(t, cli, recordKey(p, id)).Value); strings.Contains(raw, licenseCanary) || !strings.Contains(raw, `"license":"enc:v1:k1:`) {
		t.Errorf("after an update the record is %s", raw)
	}
	// Without a key file the licence is the object it always was.
	plainP := p + "plain/"
	plain := runStoreWith(t, cli, cli, store.Options{Prefix: plainP, Lease: cli})
	b := registerLicensed(t, plain, "https://plain-licence.atlassian.net")
	if raw := string(getKV(t, cli, recordKey(plainP, b.Instance.ID)).Value); !strings.Contains(raw, `"license":{"key":"`+licenseCanary+`"`) {
		t.Errorf("without a key file the record is %s", raw)
	}
}

// A licence written in plaintext (before encryption was turned on) reads
// on a relay with a key file, and is sealed by its next update there.
func TestLicensePlaintextReadsWithKeys(t *testing.T) {
	t.Parallel()
	cli, p := etcdtest.Shared(t)
	ctx := context.Background()
	plain := runStoreWith(t, cli, cli, store.Options{Prefix: p, Lease: cli})
	id := registerLicensed(t, plain, "https://before.atlassian.net").Instance.ID
	kv := getKV(t, cli, recordKey(p, id))
	if name, sealed := store.SealedWith(p, kv.Key, kv.Value); sealed {
		t.Errorf("SealedWith(a plaintext licence) = %q, sealed", name)
	}
	keyed := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keyFile(t, "k1"), Lease: cli})
	in, err := keyed.Instance(ctx, id)
	if err != nil || !sameLicense(in.License) {
		t.Fatalf("Instance = %+v, %v", in, err)
	}
	if _, err := in.View(); err != nil {
		t.Errorf("View: %v", err)
	}
	on := true
	if _, err := keyed.PatchInstance(ctx, id, store.InstancePatch{ErrorReports: &on}); err != nil {
		t.Fatal(err)
	}
	if raw := string(getKV(t, cli, recordKey(p, id)).Value); strings.Contains(raw, licenseCanary) || !strings.Contains(raw, `"license":"enc:v1:k1:`) {
		t.Errorf("after an update with the key file the record is %s", raw)
	}
}

// A relay whose key file lacks the licence's key (or that has none) still
// routes the tenant, checks its keys and serves its configuration; the
// view of the instance fails with ErrEncryptionKeyMissing, and an update
// writes the sealed licence back as it was.
func TestLicenseSealedWithAKeyMissing(t *testing.T) {
	t.Parallel()
	cli, p := etcdtest.Shared(t)
	ctx := context.Background()
	k1 := keyFile(t, "k1")
	a := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: k1, Lease: cli})
	r := registerLicensed(t, a, "https://missing-key.atlassian.net")
	id := r.Instance.ID
	sealedLic := recordFields(t, cli, p, id)["license"]

	withK2 := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keyFile(t, "k2"), Lease: cli})
	without := runStoreWith(t, cli, cli, store.Options{Prefix: p, Lease: cli})
	for name, st := range map[string]*store.Store{"a relay with another key": withK2, "a relay without a key file": without} {
		for key, want := range map[string]store.Role{r.AdminKey: store.RoleAdmin, r.ClientKey: store.RoleClient} {
			in, role, err := st.Authenticate(ctx, []byte(id), []byte(key))
			if err != nil || in == nil || role != want {
				t.Fatalf("%s: Authenticate = %v, %v, %v; want %v", name, in, role, err, want)
			}
		}
		in, err := st.Instance(ctx, id)
		if err != nil || in.License != nil || in.URL != "https://missing-key.atlassian.net" {
			t.Fatalf("%s: Instance = %+v, %v; want the record without its licence", name, in, err)
		}
		_, err = in.View()
		if !errors.Is(err, store.ErrEncryptionKeyMissing) || !strings.Contains(err.Error(), `"k1"`) {
			t.Errorf("%s: View: %v, want ErrEncryptionKeyMissing naming k1", name, err)
		}
		if err != nil && strings.Contains(err.Error(), licenseCanary) {
			t.Errorf("%s: the error quotes the licence: %v", name, err)
		}
		if !errors.Is(in.LicenseError(), store.ErrEncryptionKeyMissing) {
			t.Errorf("%s: LicenseError: %v", name, in.LicenseError())
		}
		if _, err := st.PutConfig(ctx, id, []byte(`{"template":"t"}`), nil); err != nil {
			t.Errorf("%s: PutConfig: %v", name, err)
		}
		if d, err := st.Config(ctx, id); err != nil || !strings.Contains(string(d.Body), `"t"`) {
			t.Errorf("%s: Config: %v", name, err)
		}
	}

	// Updates on those relays (new versions, a rename) keep the licence
	// byte for byte.
	v := "4.9.0"
	if in, err := withK2.PatchInstance(ctx, id, store.InstancePatch{AddinVersion: &v}); err != nil || in.AddinVersion != v {
		t.Fatalf("PatchInstance on the relay with another key: %+v, %v", in, err)
	}
	if got := recordFields(t, cli, p, id)["license"]; !bytes.Equal(got, sealedLic) {
		t.Errorf("the update changed the sealed licence:\n%s\nwas\n%s", got, sealedLic)
	}
	u := "https://renamed-missing-key.atlassian.net"
	if _, err := without.PatchInstance(ctx, id, store.InstancePatch{URL: &u}); err != nil {
		t.Fatalf("rename on the relay without a key file: %v", err)
	}
	rec := recordFields(t, cli, p, id)
	if !bytes.Equal(rec["license"], sealedLic) || string(rec["addinVersion"]) != `"4.9.0"` || string(rec["url"]) != `"`+u+`"` {
		t.Errorf("after the rename the record is %v", rec)
	}
	if _, _, err := without.RotateClientKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	if got := recordFields(t, cli, p, id)["license"]; !bytes.Equal(got, sealedLic) {
		t.Error("a key rotation changed the sealed licence")
	}
	// The relay with the key reads the licence as it was, and the updates.
	eventually(t, func() bool {
		in, err := a.Instance(ctx, id)
		return err == nil && in.URL == u && in.AddinVersion == v && sameLicense(in.License)
	})

	// A new licence given on the relay with another key replaces the one
	// it could not read, sealed with its key.
	lic := &store.License{Key: "LIC-NEW", ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), Seats: 5}
	in, err := withK2.PatchInstance(ctx, id, store.InstancePatch{License: lic})
	if err != nil || in.License == nil || in.License.Key != "LIC-NEW" {
		t.Fatalf("a new licence: %+v, %v", in, err)
	}
	if _, err := in.View(); err != nil {
		t.Errorf("View after a new licence: %v", err)
	}
	if got := string(recordFields(t, cli, p, id)["license"]); !strings.HasPrefix(got, `"enc:v1:k2:`) {
		t.Errorf("the new licence is stored as %.20s…", got)
	}
}

// A sealed licence copied into another tenant's record, or altered, does
// not open: that record is corrupt (its admin may still erase it), never
// read with another tenant's licence.
func TestLicenseSealedMovedIsCorrupt(t *testing.T) {
	t.Parallel()
	cli, p := etcdtest.Shared(t)
	ctx := context.Background()
	keys := keyFile(t, "k1")
	s := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keys, Lease: cli})
	a := registerLicensed(t, s, "https://a-licence.atlassian.net").Instance.ID
	rb := registerLicensed(t, s, "https://b-licence.atlassian.net")
	b := rb.Instance.ID
	rc := registerLicensed(t, s, "https://c-licence.atlassian.net")
	c := rc.Instance.ID

	put := func(id string, rec map[string]json.RawMessage) {
		t.Helper()
		v, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, recordKey(p, id), string(v)); err != nil {
			t.Fatal(err)
		}
	}
	moved := recordFields(t, cli, p, b)
	moved["license"] = recordFields(t, cli, p, a)["license"]
	put(b, moved)
	altered := recordFields(t, cli, p, c)
	var sealed string
	if err := json.Unmarshal(altered["license"], &sealed); err != nil {
		t.Fatal(err)
	}
	mid := len(sealed) / 2 // inside the base64, whose every bit counts there
	flip := byte('A')
	if sealed[mid] == 'A' {
		flip = 'B'
	}
	altered["license"], _ = json.Marshal(sealed[:mid] + string(flip) + sealed[mid+1:])
	put(c, altered)

	eventually(t, func() bool {
		_, eb := s.Instance(ctx, b)
		_, ec := s.Instance(ctx, c)
		return errors.Is(eb, store.ErrCorrupt) && errors.Is(ec, store.ErrCorrupt)
	})
	fresh := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keys, Lease: cli})
	for name, st := range map[string]*store.Store{"watching relay": s, "new relay": fresh} {
		for _, r := range []*store.Registration{rb, rc} {
			id := r.Instance.ID
			if _, err := st.Instance(ctx, id); !errors.Is(err, store.ErrCorrupt) {
				t.Errorf("%s: Instance: %v, want ErrCorrupt", name, err)
			}
			in, role, err := st.Authenticate(ctx, []byte(id), []byte(r.AdminKey))
			if !errors.Is(err, store.ErrCorrupt) || in != nil || role != store.RoleAdmin {
				t.Errorf("%s: Authenticate = %v, %v, %v; want nil, admin, ErrCorrupt", name, in, role, err)
			}
			if _, err := st.PatchInstance(ctx, id, store.InstancePatch{ErrorReports: new(bool)}); !errors.Is(err, store.ErrCorrupt) {
				t.Errorf("%s: PatchInstance: %v, want ErrCorrupt", name, err)
			}
		}
		if in, err := st.Instance(ctx, a); err != nil || !sameLicense(in.License) {
			t.Errorf("%s: the tenant whose licence was copied: %+v, %v", name, in, err)
		}
	}
	// The copied licence under a relay without the key is no corrupt
	// record there (it cannot tell): the view fails, nothing is shown.
	without := runStoreWith(t, cli, cli, store.Options{Prefix: p, Lease: cli})
	if in, err := without.Instance(ctx, b); err == nil {
		if _, err := in.View(); !errors.Is(err, store.ErrEncryptionKeyMissing) {
			t.Errorf("without a key file: View: %v", err)
		}
	}
	for _, id := range []string{b, c} {
		if err := s.DeleteInstance(ctx, id); err != nil {
			t.Errorf("DeleteInstance of the corrupt tenant: %v", err)
		}
	}
	if keys := keysUnder(t, cli, p+"instances/"+b+"/"); len(keys) != 0 {
		t.Errorf("left after the erase: %v", keys)
	}
}

// RewriteValues seals with the primary key a licence in plaintext and one
// sealed with an older key, changing nothing else of their records, and
// leaves alone one sealed with a key the file does not list.
func TestLicenseRewrite(t *testing.T) {
	t.Parallel()
	cli, p := etcdtest.Shared(t)
	ctx := context.Background()
	ea, eb, ex := entry(t, "ka"), entry(t, "kb"), entry(t, "kx")
	plain := runStoreWith(t, cli, cli, store.Options{Prefix: p, Lease: cli})
	withA := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keysOf(t, ea), Lease: cli})
	withX := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keysOf(t, ex), Lease: cli})
	pl := registerLicensed(t, plain, "https://plain-rw.atlassian.net").Instance.ID
	old := registerLicensed(t, withA, "https://old-rw.atlassian.net").Instance.ID
	unl := registerLicensed(t, withX, "https://unlisted-rw.atlassian.net").Instance.ID
	none, err := plain.Register(ctx, store.NewInstance{URL: "https://no-licence-rw.atlassian.net", JiraVersion: "1", AddinVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]map[string]json.RawMessage{}
	for _, id := range []string{pl, old, unl, none.Instance.ID} {
		before[id] = recordFields(t, cli, p, id)
	}
	noneRev := getKV(t, cli, recordKey(p, none.Instance.ID)).ModRevision

	withBA := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keysOf(t, eb, ea), Lease: cli})
	rep, err := withBA.RewriteValues(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The re-key of each tenant rewrites its record, which seals the
	// licence it can open with kb; the value pass finds them current.
	if rep.Rekeyed != 4 || rep.Rewritten+rep.Current != 2 || rep.Unreadable["kx"] != 1 || len(rep.Unreadable) != 1 {
		t.Errorf("rewrite report %+v; want four tenants re-keyed, the two licences sealed with kb and kx's left", rep)
	}
	for _, id := range []string{pl, old} {
		after := recordFields(t, cli, p, id)
		if !strings.HasPrefix(string(after["license"]), `"enc:v1:kb:`) {
			t.Errorf("licence of %s after the rewrite: %.20s…", id, after["license"])
		}
		for k, v := range before[id] {
			// The re-key that comes first moves the tenant to tokens of kb
			// under a new data id.
			rekeyed := k == "tokens" || k == "dataId" || k == "updatedAt"
			if k != "license" && !rekeyed && !bytes.Equal(after[k], v) {
				t.Errorf("the rewrite changed %s of %s: %s → %s", k, id, v, after[k])
			}
		}
		if len(after) != len(before[id]) {
			t.Errorf("the rewrite changed the members of %s: %v → %v", id, before[id], after)
		}
		kv := getKV(t, cli, recordKey(p, id))
		if strings.Contains(string(kv.Value), licenseCanary) {
			t.Errorf("the licence of %s is in plaintext after the rewrite", id)
		}
		if name, sealed := store.SealedWith(p, kv.Key, kv.Value); !sealed || name != "kb" {
			t.Errorf("SealedWith(%s) = %q, %v", id, name, sealed)
		}
	}
	if got := recordFields(t, cli, p, unl)["license"]; !bytes.Equal(got, before[unl]["license"]) {
		t.Error("the rewrite changed a licence sealed with a key it does not have")
	}
	if _, ok := recordFields(t, cli, p, none.Instance.ID)["license"]; ok {
		t.Error("the rewrite gave a licence to a record without one")
	}
	// Run again: the tenants are re-keyed and sealed with kb; nothing is
	// written.
	if again, err := withBA.RewriteValues(ctx, nil); err != nil || again.Rekeyed != 0 || again.Rewritten != 0 {
		t.Errorf("a second rewrite: %+v, %v", again, err)
	}
	if rev := getKV(t, cli, recordKey(p, none.Instance.ID)).ModRevision; rev == noneRev {
		t.Error("the record without a licence was not re-keyed")
	}
	onlyB := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keysOf(t, eb), Lease: cli})
	for _, id := range []string{pl, old} {
		if in, err := onlyB.Instance(ctx, id); err != nil || !sameLicense(in.License) {
			t.Errorf("after the rotation, %s: %+v, %v", id, in, err)
		}
	}
	again, err := withBA.RewriteValues(ctx, nil)
	if err != nil || again.Rewritten != 0 || again.Current != 2 {
		t.Errorf("a second rewrite: %+v, %v; want nothing left to do", again, err)
	}
}
