package seal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// secretOf is a fixed 32-byte secret, base64, for tests.
func secretOf(b byte) string {
	return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, KeySize))
}

func keyring(t testing.TB, names ...string) *Keyring {
	t.Helper()
	var b strings.Builder
	b.WriteString("keys:\n")
	for i, n := range names {
		b.WriteString("  - name: " + n + "\n    secret: " + secretOf(byte(i+1)) + "\n")
	}
	r, err := Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func writeKeyFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	good := "keys:\n  - name: k2\n    secret: " + secretOf(2) + "\n  - name: k1\n    secret: " + secretOf(1) + "\n"
	r, err := Load(writeKeyFile(t, good, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	if r.Primary() != "k2" || strings.Join(r.Names(), ",") != "k2,k1" || !r.Has("k1") || r.Has("k3") {
		t.Errorf("keyring %v: primary %s", r, r.Primary())
	}
	if s := r.String(); strings.Contains(s, secretOf(2)) {
		t.Errorf("String shows a secret: %s", s)
	}
	json := `{"keys":[{"name":"only","secret":"` + strings.TrimRight(base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)), "=") + `"}]}`
	if r, err := Load(writeKeyFile(t, json, 0o640)); err != nil || r.Primary() != "only" {
		t.Errorf("a JSON key file, URL base64 unpadded, group-readable: %v, %v", r, err)
	}
}

// Every way a key file can be wrong is refused with a sentence that names
// the problem and never the secret.
func TestLoadRefuses(t *testing.T) {
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	dir := t.TempDir()
	tests := []struct {
		name, content string
		mode          os.FileMode
		path          string
		want          string
	}{
		{"missing", "", 0, filepath.Join(dir, "nope.yaml"), "no such file"},
		{"a directory", "", 0, dir, "not a regular file"},
		{"world-readable", "keys: []", 0o644, "", "readable by others (mode 0644)"},
		{"malformed", "keys: [ {name: a, secret: " + secretOf(1), 0o600, "", "not a key file"},
		{"unknown field", "keys:\n  - name: a\n    secret: " + secretOf(1) + "\n    algo: aes\n", 0o600, "", "not a key file"},
		{"no keys", "keys: []\n", 0o600, "", "lists no key"},
		{"empty file", "", 0o600, "", "not a key file"},
		{"short secret", "keys:\n  - name: a\n    secret: " + short + "\n", 0o600, "", `key "a": the secret is 16 bytes, want 32`},
		{"not base64", "keys:\n  - name: a\n    secret: '%%%not-base64%%%'\n", 0o600, "", `key "a": the secret is not base64`},
		{"a name with a colon", "keys:\n  - name: 'a:b'\n    secret: " + secretOf(1) + "\n", 0o600, "", "must be 1 to 32 of"},
		{"no name", "keys:\n  - secret: " + secretOf(1) + "\n", 0o600, "", "must be 1 to 32 of"},
		{"twice", "keys:\n  - name: a\n    secret: " + secretOf(1) + "\n  - name: a\n    secret: " + secretOf(2) + "\n", 0o600, "", `key "a" is listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.path
			if p == "" {
				p = writeKeyFile(t, tt.content, tt.mode)
			}
			_, err := Load(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load: %v, want an error with %q", err, tt.want)
			}
			for _, b := range []byte{1, 2} {
				if strings.Contains(err.Error(), secretOf(b)) || strings.Contains(err.Error(), short) {
					t.Errorf("the error quotes a secret: %v", err)
				}
			}
		})
	}
}

func TestGenerate(t *testing.T) {
	entry, err := Generate("k2027")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse([]byte("keys:\n" + entry))
	if err != nil || r.Primary() != "k2027" {
		t.Fatalf("a generated entry does not load: %v (%q)", err, entry)
	}
	again, _ := Generate("k2027")
	if again == entry {
		t.Error("two generated keys are equal")
	}
	if _, err := Generate("a b"); err == nil {
		t.Error("Generate took a name with a space")
	}
}

func TestSealOpen(t *testing.T) {
	r := keyring(t, "k1")
	key := []byte("/jira-relay/d/abc/users/u1")
	plain := []byte(`{"name":"Mia","email":"mia@example.com"}`)
	v := r.Seal(nil, key, plain)
	if !bytes.HasPrefix(v, []byte("enc:v1:k1:")) || bytes.Contains(v, []byte("Mia")) {
		t.Fatalf("sealed value %q", v)
	}
	if n, sealed := KeyOf(v); !sealed || n != "k1" {
		t.Errorf("KeyOf = %q %v", n, sealed)
	}
	got, name, err := r.Open(key, v)
	if err != nil || name != "k1" || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q %q %v", got, name, err)
	}
	if w := r.Seal(nil, key, plain); bytes.Equal(w, v) {
		t.Error("two seals of one value are equal (nonce reused)")
	}

	// Moved under another key (another user, another tenant): refused.
	if _, _, err := r.Open([]byte("/jira-relay/d/abc/users/u2"), v); !errors.Is(err, ErrTampered) {
		t.Errorf("a value under another etcd key: %v, want ErrTampered", err)
	}
	// Altered or cut short: refused.
	for i := len("enc:v1:k1:"); i < len(v); i += 7 {
		bad := bytes.Clone(v)
		bad[i] ^= 1
		if _, _, err := r.Open(key, bad); !errors.Is(err, ErrTampered) {
			t.Fatalf("a flipped bit at %d: %v", i, err)
		}
	}
	for _, n := range []int{len("enc:v1:k1:"), len(v) - 1, len("enc:v1:k1:") + 10} {
		if _, _, err := r.Open(key, v[:n]); !errors.Is(err, ErrTampered) {
			t.Errorf("cut to %d bytes: %v", n, err)
		}
	}
	if _, _, err := r.Open(key, plain); !errors.Is(err, ErrNotSealed) {
		t.Errorf("plaintext: %v, want ErrNotSealed", err)
	}
	if _, sealed := KeyOf(plain); sealed {
		t.Error("KeyOf calls plaintext sealed")
	}
}

// Rotation: a value sealed with the old key opens once a new key is put
// first; new values use the new key; a value whose key left the file is a
// KeyMissingError naming it.
func TestRotation(t *testing.T) {
	old := keyring(t, "a")
	key := []byte("k")
	v := old.Seal(nil, key, []byte("x"))
	both := keyring(t, "b", "a")
	both.keys[1] = old.keys[0] // the same secret for "a"
	both.byName["a"] = old.keys[0]
	if got, name, err := both.Open(key, v); err != nil || name != "a" || string(got) != "x" {
		t.Errorf("the old value after rotation: %q %q %v", got, name, err)
	}
	if n, _ := KeyOf(both.Seal(nil, key, []byte("y"))); n != "b" {
		t.Errorf("new values sealed with %q, want the first key b", n)
	}
	onlyB := keyring(t, "b")
	var km *KeyMissingError
	if _, name, err := onlyB.Open(key, v); !errors.As(err, &km) || km.Name != "a" || name != "a" {
		t.Errorf("a value of a retired key: %v, want KeyMissingError{a}", err)
	}
}

func TestTokens(t *testing.T) {
	r := keyring(t, "k2", "k1")
	t1, err := r.Tokens("k1", "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	tok := t1.Token("<CAFE@outlook.com>")
	if len(tok) != 22 || strings.ContainsAny(tok, "+/=") || t1.Key() != "k1" {
		t.Errorf("token %q (key %s), want 22 characters of base64url", tok, t1.Key())
	}
	if t1.Token("<CAFE@outlook.com>") != tok {
		t.Error("one id, two tokens")
	}
	other, _ := r.Tokens("k1", "tenant-b")
	newer, _ := r.Tokens("k2", "tenant-a")
	if other.Token("<CAFE@outlook.com>") == tok || newer.Token("<CAFE@outlook.com>") == tok || t1.Token("<CAFE@outlook.con>") == tok {
		t.Error("a token repeats across tenants, keys or ids")
	}
	var km *KeyMissingError
	if _, err := r.Tokens("k9", "tenant-a"); !errors.As(err, &km) {
		t.Errorf("tokens of an unknown key: %v", err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				if t1.Token("<CAFE@outlook.com>") != tok {
					t.Error("a token changed under concurrency")
					return
				}
			}
		}()
	}
	wg.Wait()
}

// FuzzOpen: no value read from etcd crashes the decoder or opens to
// anything but what was sealed under that key.
func FuzzOpen(f *testing.F) {
	r := keyring(f, "k1")
	key := []byte("/p/d/x/users/u")
	f.Add(r.Seal(nil, key, []byte("hello")))
	f.Add([]byte("enc:v1:k1:"))
	f.Add([]byte("enc:v1::"))
	f.Add([]byte("enc:v1:k9:0123456789012345678901234567890123456789"))
	f.Add([]byte(`{"plain":true}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		got, _, err := r.Open(key, v)
		var km *KeyMissingError
		switch {
		case err == nil:
			if string(got) != "hello" {
				t.Fatalf("%q opened to %q", v, got)
			}
		case errors.Is(err, ErrNotSealed), errors.Is(err, ErrTampered), errors.As(err, &km):
		default:
			t.Fatalf("Open(%q): unexpected error %v", v, err)
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	r := keyring(b, "k1")
	key := []byte("/jira-relay/d/abcdef/m/xxxxxxxxxxxx/yyyyyyyyyyyy/10001")
	plain := bytes.Repeat([]byte("x"), 200)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.Seal(buf[:0], key, plain)
	}
}

func BenchmarkOpen(b *testing.B) {
	r := keyring(b, "k1")
	key := []byte("/jira-relay/d/abcdef/m/xxxxxxxxxxxx/yyyyyyyyyyyy/10001")
	v := r.Seal(nil, key, bytes.Repeat([]byte("x"), 200))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := r.Open(key, v); err != nil {
			b.Fatal(err)
		}
	}
}
