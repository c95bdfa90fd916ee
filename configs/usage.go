package configs

import (
	_ "embed"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// exampleYAML is relay.yaml: every key with its default and a comment.
//
//go:embed relay.yaml
var exampleYAML string

// ExampleYAML returns relay.yaml, a YAML file that sets every key to its
// default with a one-line comment above it, for `relay --config` users to
// start from. Each call returns a new copy.
func ExampleYAML() []byte {
	return []byte(exampleYAML)
}

// Usage writes the help for `relay -h` to w: how settings are given, then
// every flag with its type, one-line help, default and environment variable.
// Write errors are ignored.
func Usage(w io.Writer) {
	var b strings.Builder
	b.WriteString(`Usage: relay [flags]

Every setting is a flag (--name=value), an environment variable RELAY_NAME
(upper case, "-" becomes "_"), and a key of the YAML file named by --config.
A flag beats a variable, which beats the file, which beats the default.
Lists are comma-separated; durations use Go syntax (30s, 1m30s, 500ms);
bools are true, false, 1 or 0.

Flags:
  --config file
        YAML file of settings; see relay.yaml (env RELAY_CONFIG)
`)
	def := Defaults()
	for _, o := range def.options() {
		fmt.Fprintf(&b, "  --%s %s\n        %s (default %s, env %s)\n",
			o.name, o.typeName(), o.usage, defaultText(o), envName(o.name))
	}
	io.WriteString(w, b.String())
}

// defaultText shows o's value as Usage prints a default.
func defaultText(o option) string {
	switch o.ptr.(type) {
	case *string, *[]string:
		return strconv.Quote(o.String())
	}
	return o.String()
}

// Redacted returns a copy of c that is safe to log: the secrets EtcdPassword
// and RegistrationToken, when set, read "REDACTED". The copy shares no slices
// with c.
func (c Config) Redacted() Config {
	r := c
	for _, o := range r.options() {
		if p, ok := o.ptr.(*[]string); ok {
			*p = slices.Clone(*p)
		}
	}
	for _, secret := range []*string{&r.EtcdPassword, &r.RegistrationToken} {
		if *secret != "" {
			*secret = "REDACTED"
		}
	}
	return r
}
