package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Whatever the file holds, Load does not panic, and either returns a config
// that validates or a *UsageError.
func FuzzLoadYAML(f *testing.F) {
	for _, seed := range []string{
		string(ExampleYAML()),
		"",
		"# only a comment\n",
		"~\n",
		"listen: \"127.0.0.1:9000\"\nallow-http-upstream: 1\ntrusted-proxies: 10.0.0.0/8, ::1\n",
		"cors-origins: [https://a.example, \"HTTPS://B.EXAMPLE\"]\nallowed-upstreams: \"*.Example.com\"\n",
		"drain-timeout: 1h2m3.5s\nip-rps: 0.25\nbreaker-failures: 4294967295\n",
		"max-attachment-bytes: 9223372036854775807\n",
		"max-attachment-bytes: 9223372036854775808\n",
		"listen: [\n",
		"lisen: x\n",
		"listen: a\nlisten: b\n",
		"a: &x b\nc: *x\n",
		"anchor: &a [*a]\n",
		"etcd-username: &u relay\ndata-dir: *u\n",
		"<<: {listen: \":1\"}\n",
		"? [a]\n: b\n",
		"- listen\n",
		"--- \nlisten: \":1\"\n---\nlisten: \":2\"\n",
		"listen: !!binary aGVsbG8=\n",
		"etcd-prefix: \"/a\\0b/\"\n",
		"tls-cert: /dev/null\ntls-key: /dev/null\n",
		"cors-origins:\n  - {a: b}\n",
		strings.Repeat("[", 200) + strings.Repeat("]", 200),
		"\xff\xfe\x00l\x00i",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "relay.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load([]string{"--config", path}, nil)
		if err != nil {
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("Load = %T %v, want a *UsageError", err, err)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Load succeeded with a config that does not validate: %v", err)
		}
	})
}
