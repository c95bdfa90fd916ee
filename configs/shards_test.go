package configs

import (
	"reflect"
	"strings"
	"testing"
)

func noEnv(string) (string, bool) { return "", false }

// TestShardForms: --etcd-shards in each form a user writes it.
func TestShardForms(t *testing.T) {
	ca := writeFile(t, "ca.pem", "x")
	cert, key := writeFile(t, "c.pem", "x"), writeFile(t, "k.pem", "x")
	want := []Shard{
		{Name: "eu1", Endpoints: []string{"https://a:2379", "https://b:2379"}, CA: ca, Cert: cert, Key: key},
		{Name: "us-2", Endpoints: []string{"http://127.0.0.1:2479"}},
	}
	flag := "eu1=https://a:2379|https://b:2379;ca=" + ca + ";cert=" + cert + ";key=" + key + ",us-2=http://127.0.0.1:2479"
	yamlText := "etcd-shards:\n  - name: eu1\n    endpoints: [https://a:2379, https://b:2379]\n    ca: " + ca + "\n    cert: " + cert + "\n    key: " + key + "\n  - us-2=http://127.0.0.1:2479\n"
	for name, load := range map[string]func() (Config, error){
		"flag": func() (Config, error) { return Load([]string{"--etcd-shards", flag}, noEnv) },
		"env": func() (Config, error) {
			return Load(nil, func(k string) (string, bool) { return flag, k == "RELAY_ETCD_SHARDS" })
		},
		"yaml": func() (Config, error) { return Load([]string{"--config", writeFile(t, "r.yaml", yamlText)}, noEnv) },
	} {
		cfg, err := load()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := cfg.Shards()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, %v\nwant %+v", name, got, err, want)
		}
	}
}

// TestShardRefusals: every malformed shard is refused with what is wrong.
func TestShardRefusals(t *testing.T) {
	for _, tc := range []struct{ flag, want string }{
		{"eu1", "is not NAME=URL"},
		{"=http://a:1", "is not NAME=URL"},
		{"EU=http://a:1", "the name must be"},
		{"directory=http://a:1", "the name must be"},
		{"eu1=ftp://a:1", "is not an http:// or https:// URL"},
		{"eu1=http://a:1;pem=x", `unknown setting "pem"`},
		{"eu1=http://a:1;ca=/no/such/file", "/no/such/file"},
		{"eu1=http://a:1,eu1=http://b:1", `shard "eu1" is given twice`},
		{"eu1=http://a:1;cert=" + writeFile(t, "c.pem", "x"), "etcd-shards"},
	} {
		_, err := Load([]string{"--etcd-shards", tc.flag}, noEnv)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "etcd-shards") {
			t.Errorf("%q: %v, want an error naming --etcd-shards with %q", tc.flag, err, tc.want)
		}
	}
	_, err := Load([]string{"--config", writeFile(t, "r.yaml", "etcd-shards:\n  - name: eu1\n    endpoint: http://a:1\n")}, noEnv)
	if err == nil || !strings.Contains(err.Error(), `unknown shard setting "endpoint"`) {
		t.Errorf("a misspelt YAML key: %v", err)
	}
}

func FuzzParseShard(f *testing.F) {
	for _, s := range []string{"eu1=https://a:2379|https://b:2379;ca=/x;cert=/y;key=/z", "a=", "=", ";;", "a=b;c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sh, err := ParseShard(s)
		if err != nil {
			return
		}
		if !validShardName(sh.Name) || len(sh.Endpoints) == 0 {
			t.Fatalf("%q parsed to %+v", s, sh)
		}
	})
}
