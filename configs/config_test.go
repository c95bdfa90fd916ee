package configs

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite relay.yaml from the option table and Defaults")

// yamlTags are the yaml tags of Config's fields, in struct order.
func yamlTags(t *testing.T) []string {
	t.Helper()
	rt := reflect.TypeFor[Config]()
	tags := make([]string, rt.NumField())
	for i := range rt.NumField() {
		tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("yaml"), ",")
		if tag == "" {
			t.Fatalf("field %s has no yaml tag", rt.Field(i).Name)
		}
		tags[i] = tag
	}
	return tags
}

// The option table has exactly one entry per field, in struct order, named by
// the field's yaml tag and pointing at that field.
func TestOptionTableMatchesStruct(t *testing.T) {
	var c Config
	opts := c.options()
	rv := reflect.ValueOf(&c).Elem()
	tags := yamlTags(t)
	if len(opts) != len(tags) {
		t.Fatalf("%d options for %d fields", len(opts), len(tags))
	}
	for i, o := range opts {
		f := rv.Field(i)
		name := rv.Type().Field(i).Name
		if o.name != tags[i] {
			t.Errorf("option %d is %q; field %s has yaml tag %q", i, o.name, name, tags[i])
		}
		if reflect.ValueOf(o.ptr).Pointer() != f.Addr().Pointer() || reflect.TypeOf(o.ptr).Elem() != f.Type() {
			t.Errorf("option %q does not point at field %s", o.name, name)
		}
		if o.usage == "" || strings.Contains(o.usage, "\n") {
			t.Errorf("option %q needs a one-line usage", o.name)
		}
		if err := o.set(o.String()); err != nil {
			t.Errorf("option %q: set(String()) = %v", o.name, err)
		}
	}
}

// Every field is a flag and an environment variable: Load accepts each one set
// to its default, and LoadEnviron does not call the variable unknown.
func TestEveryFieldIsAFlagAndAnEnvVar(t *testing.T) {
	def := Defaults()
	for _, o := range def.options() {
		t.Run(o.name, func(t *testing.T) {
			flagArg := "--" + o.name + "=" + o.String()
			if cfg, err := Load([]string{flagArg}, nil); err != nil || !reflect.DeepEqual(cfg, Defaults()) {
				t.Errorf("Load(%q) = %v", flagArg, err)
			}
			env := envName(o.name) + "=" + o.String()
			if cfg, err := LoadEnviron(nil, []string{env}); err != nil || !reflect.DeepEqual(cfg, Defaults()) {
				t.Errorf("LoadEnviron(%q) = %v", env, err)
			}
		})
	}
	if got := envName("max-attachment-bytes"); got != "RELAY_MAX_ATTACHMENT_BYTES" {
		t.Errorf("envName = %q", got)
	}
}

// relay.yaml loads to exactly Defaults().
func TestExampleYAMLLoadsToDefaults(t *testing.T) {
	path := writeFile(t, "relay.yaml", string(ExampleYAML()))
	cfg, err := Load([]string{"--config", path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, Defaults()) {
		t.Errorf("relay.yaml loads to\n%+v\nwant Defaults()\n%+v", cfg, Defaults())
	}
	def := Defaults()
	if err := def.Validate(); err != nil {
		t.Errorf("Defaults() does not validate: %v", err)
	}
}

// relay.yaml has every field's key, once, in struct order, each with a comment
// above it, and no other key.
func TestExampleYAMLHasEveryKey(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal(ExampleYAML(), &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	var keys []string
	for i := 0; i < len(root.Content); i += 2 {
		k := root.Content[i]
		keys = append(keys, k.Value)
		if k.HeadComment == "" {
			t.Errorf("key %q has no comment above it", k.Value)
		}
	}
	if want := yamlTags(t); !slices.Equal(keys, want) {
		t.Errorf("relay.yaml keys:\n%v\nwant the fields' yaml tags in struct order:\n%v", keys, want)
	}
}

// relay.yaml is what the option table renders; `go test ./configs -run
// TestExampleYAMLIsGenerated -update` rewrites it after a change to the table
// or to Defaults.
func TestExampleYAMLIsGenerated(t *testing.T) {
	want := renderExampleYAML()
	if *update {
		if err := os.WriteFile("relay.yaml", want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("relay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("relay.yaml is stale; run: go test ./configs -run TestExampleYAMLIsGenerated -update\ngot:\n%s\nwant:\n%s", got, want)
	}
	if !bytes.Equal(ExampleYAML(), got) {
		t.Errorf("ExampleYAML() differs from relay.yaml")
	}
	a := ExampleYAML()
	a[0] = 'X'
	if ExampleYAML()[0] == 'X' {
		t.Errorf("ExampleYAML returns shared bytes")
	}
}

// renderExampleYAML renders relay.yaml from the option table and Defaults.
func renderExampleYAML() []byte {
	var b bytes.Buffer
	b.WriteString(`# relay.yaml: every setting of the relay, set to its default.
#
# Name this file with --config FILE or RELAY_CONFIG=FILE. A flag --NAME or an
# environment variable RELAY_NAME (upper case, "-" becomes "_") overrides the
# key NAME here. Lists are YAML lists or comma-separated strings; durations use
# Go syntax (30s, 1m30s, 500ms); bools are true, false, 1 or 0. A key that is
# not a setting is an error. Regenerate with:
#   go test ./configs -run TestExampleYAMLIsGenerated -update
`)
	def := Defaults()
	for _, o := range def.options() {
		fmt.Fprintf(&b, "\n# %s\n", o.usage)
		switch p := o.ptr.(type) {
		case *string:
			fmt.Fprintf(&b, "%s: %s\n", o.name, strconv.Quote(*p))
		case *[]string:
			if len(*p) == 0 {
				fmt.Fprintf(&b, "%s: []\n", o.name)
				break
			}
			fmt.Fprintf(&b, "%s:\n", o.name)
			for _, it := range *p {
				fmt.Fprintf(&b, "  - %s\n", strconv.Quote(it))
			}
		default:
			fmt.Fprintf(&b, "%s: %s\n", o.name, o.String())
		}
	}
	return b.Bytes()
}

// Usage names every flag with its type, default and variable.
func TestUsage(t *testing.T) {
	var b strings.Builder
	Usage(&b)
	out := b.String()
	for _, want := range []string{
		"--config file",
		"--listen string\n        address of the front door (host:port) (default \":8080\", env RELAY_LISTEN)\n",
		"--cors-origins list",
		`(default "*.atlassian.net,api.atlassian.com", env RELAY_ALLOWED_UPSTREAMS)`,
		"--idle-timeout duration",
		"(default 1m, env RELAY_IDLE_TIMEOUT)",
		"--allow-http-upstream bool",
		"(default false, env RELAY_ALLOW_HTTP_UPSTREAM)",
		"(default 1073741824, env RELAY_MAX_ATTACHMENT_BYTES)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Usage lacks %q", want)
		}
	}
	def := Defaults()
	for _, o := range def.options() {
		if !strings.Contains(out, "  --"+o.name+" ") || !strings.Contains(out, "env "+envName(o.name)+")") {
			t.Errorf("Usage lacks --%s or its variable", o.name)
		}
	}
}

// Redacted hides the secrets that are set, and leaves the original alone.
func TestRedacted(t *testing.T) {
	c := Defaults()
	c.EtcdUsername = "relay"
	c.EtcdPassword = "hunter2"
	c.RegistrationToken = "s3cret"
	r := c.Redacted()
	if r.EtcdPassword != "REDACTED" || r.RegistrationToken != "REDACTED" {
		t.Errorf("Redacted() secrets = %q, %q", r.EtcdPassword, r.RegistrationToken)
	}
	if s := fmt.Sprintf("%+v", r); strings.Contains(s, "hunter2") || strings.Contains(s, "s3cret") {
		t.Errorf("Redacted() leaks a secret: %s", s)
	}
	if r.EtcdUsername != "relay" || r.Listen != c.Listen || !slices.Equal(r.CORSOrigins, c.CORSOrigins) {
		t.Errorf("Redacted() changed more than the secrets")
	}
	if c.EtcdPassword != "hunter2" || c.RegistrationToken != "s3cret" {
		t.Errorf("Redacted() changed the original")
	}
	r.CORSOrigins[0] = "https://changed.example"
	if c.CORSOrigins[0] == "https://changed.example" {
		t.Errorf("Redacted() shares slices with the original")
	}
	if e := Defaults().Redacted(); e.EtcdPassword != "" || e.RegistrationToken != "" {
		t.Errorf("Redacted() of unset secrets = %q, %q; want empty", e.EtcdPassword, e.RegistrationToken)
	}
}

// writeFile writes content to name in a new temporary directory and returns
// its path.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := t.TempDir() + string(os.PathSeparator) + name
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
