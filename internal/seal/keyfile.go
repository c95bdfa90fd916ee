package seal

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the length of every key's secret.
const KeySize = 32

// maxKeyFile bounds the key file read.
const maxKeyFile = 1 << 20

// Keyring is the keys of a key file: the first seals, every one opens. It
// is safe for concurrent use.
type Keyring struct {
	keys   []*key
	byName map[string]*key
}

// key is one named key: the AEAD of values and the secret tokens are
// derived from.
type key struct {
	name   string
	aead   cipher.AEAD
	secret []byte
}

// fileKeys is the key file's shape (YAML, or JSON, which YAML reads too):
//
//	keys:
//	  - name: k2
//	    secret: <32 bytes, base64>
type fileKeys struct {
	Keys []struct {
		Name   string `yaml:"name"`
		Secret string `yaml:"secret"`
	} `yaml:"keys"`
}

// Load reads the key file at path. It refuses a file that is missing,
// unreadable, readable by others than its owner and group, malformed,
// empty, with a key name given twice or not of 1 to 32 of A-Z a-z 0-9 _ -,
// or with a secret that is not base64 of 32 bytes. No error quotes a
// secret.
func Load(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("encryption key file %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("encryption key file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("encryption key file %s: not a regular file", path)
	}
	if st.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("encryption key file %s: readable by others (mode %04o); make it 0600 or 0640 (chmod, or a Secret volume's defaultMode 0400)", path, st.Mode().Perm())
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(io.LimitReader(f, maxKeyFile+1)); err != nil {
		return nil, fmt.Errorf("encryption key file %s: %w", path, err)
	}
	if b.Len() > maxKeyFile {
		return nil, fmt.Errorf("encryption key file %s: larger than 1 MiB", path)
	}
	r, err := Parse(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("encryption key file %s: %w", path, err)
	}
	return r, nil
}

// Parse reads a key file's content (see Load).
func Parse(data []byte) (*Keyring, error) {
	var fk fileKeys
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fk); err != nil {
		return nil, errors.New("not a key file (want YAML or JSON: keys: [{name, secret}]): " + cleanYAMLError(err))
	}
	if len(fk.Keys) == 0 {
		return nil, errors.New("lists no key")
	}
	r := &Keyring{byName: map[string]*key{}}
	for i, k := range fk.Keys {
		if !validName(k.Name) {
			return nil, fmt.Errorf("key %d: name %q must be 1 to 32 of A-Z a-z 0-9 _ -", i+1, clip(k.Name))
		}
		if r.byName[k.Name] != nil {
			return nil, fmt.Errorf("key %q is listed twice", k.Name)
		}
		secret, err := decodeSecret(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k.Name, err)
		}
		kk, err := newKey(k.Name, secret)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k.Name, err)
		}
		r.keys = append(r.keys, kk)
		r.byName[k.Name] = kk
	}
	return r, nil
}

// newKey derives a key's AEAD (its own HKDF output, never the secret as is).
func newKey(name string, secret []byte) (*key, error) {
	vk, err := hkdf.Key(sha256.New, secret, nil, "jira-relay/v1/values", chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(vk)
	if err != nil {
		return nil, err
	}
	return &key{name: name, aead: aead, secret: secret}, nil
}

// decodeSecret reads a secret in standard or URL base64, padded or not.
func decodeSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("the secret is %d bytes, want %d (base64 of 32 random bytes: relay keys generate)", len(b), KeySize)
			}
			return b, nil
		}
	}
	return nil, errors.New("the secret is not base64")
}

// validName reports whether n may name a key: it stands in every sealed
// value's prefix, between colons.
func validName(n string) bool {
	if len(n) == 0 || len(n) > 32 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// cleanYAMLError keeps the YAML parser's position and kind of problem but
// none of the file's content (a line of it may hold a secret).
func cleanYAMLError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "line "); i >= 0 {
		rest := msg[i:]
		if j := strings.IndexByte(rest, ':'); j >= 0 {
			return "error at " + rest[:j]
		}
	}
	return "malformed"
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Primary is the name of the key that seals new values.
func (r *Keyring) Primary() string { return r.keys[0].name }

// Names are the keys' names, the primary first.
func (r *Keyring) Names() []string {
	out := make([]string, len(r.keys))
	for i, k := range r.keys {
		out[i] = k.name
	}
	return out
}

// Has reports whether the key file lists a key of this name.
func (r *Keyring) Has(name string) bool { return r.byName[name] != nil }

// String names the keys, never their secrets.
func (r *Keyring) String() string { return "keyring[" + strings.Join(r.Names(), ",") + "]" }

// Generate returns a new key entry for a key file, named name, as YAML:
// a list item to put first under keys:.
func Generate(name string) (string, error) {
	if !validName(name) {
		return "", fmt.Errorf("name %q must be 1 to 32 of A-Z a-z 0-9 _ -", clip(name))
	}
	secret := make([]byte, KeySize)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	return "  - name: " + name + "\n    secret: " + base64.StdEncoding.EncodeToString(secret) + "\n", nil
}
