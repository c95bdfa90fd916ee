package configs

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxConfigFileBytes bounds the YAML file Load reads.
const maxConfigFileBytes = 1 << 20

// UsageError is a configuration the relay cannot start with: a bad flag,
// environment variable, YAML file or value. The relay prints it and exits 2.
// Problems holds every problem found, each naming the flag (--name),
// environment variable or file line at fault.
type UsageError struct {
	Problems []error
}

// Error lists the problems, one a line.
func (e *UsageError) Error() string {
	switch len(e.Problems) {
	case 0:
		return "invalid configuration"
	case 1:
		return e.Problems[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d configuration problems:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns the problems, for errors.Is and errors.As.
func (e *UsageError) Unwrap() []error { return e.Problems }

// Load builds the relay's configuration from its command-line arguments
// (without the program name), the environment variables getenv reports
// (os.LookupEnv in main; nil means none), and the YAML file named by --config
// or RELAY_CONFIG, over Defaults: flag > env > file > default. It then calls
// Normalize and Validate.
//
// Every field is a flag --<key>, a variable RELAY_<KEY_IN_UPPER_SNAKE> and a
// YAML key. Lists are comma-separated in flags and variables (a repeated list
// flag adds to the list) and a sequence or a comma-separated string in YAML.
// Durations use Go syntax (30s) everywhere; bools are true, false, 1 or 0.
//
// -h or --help returns an error matching flag.ErrHelp (print Usage and exit 0);
// every other error is a *UsageError listing every problem found. Load prints
// nothing.
//
// getenv cannot list the variables that are set, so Load cannot catch a
// misspelt RELAY_ variable; LoadEnviron can, and is what main should call.
func Load(args []string, getenv func(string) (string, bool)) (Config, error) {
	return load(args, getenv, nil)
}

// LoadEnviron is Load with the environment given as "KEY=value" strings, as
// os.Environ returns them. Besides what Load checks, it rejects a RELAY_
// variable that is not a setting, so a typo cannot go unnoticed; variables
// Kubernetes sets for a Service whose name starts with "relay"
// (RELAY_SERVICE_HOST, RELAY_PORT_8080_TCP_ADDR, ...) are let through.
func LoadEnviron(args, environ []string) (Config, error) {
	env := make(map[string]string, len(environ))
	var names []string
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if _, dup := env[k]; !dup { // the first one wins, as in os.Getenv
			env[k] = v
			names = append(names, k)
		}
	}
	getenv := func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
	return load(args, getenv, names)
}

// flagValue records the values given to one flag; load applies them after the
// file and the environment, so that flags win.
type flagValue struct {
	values []string
	isBool bool
}

func (v *flagValue) String() string     { return "" }
func (v *flagValue) IsBoolFlag() bool   { return v.isBool }
func (v *flagValue) Set(s string) error { v.values = append(v.values, s); return nil }

// load is Load and LoadEnviron; environ names the variables that are set,
// when known, for the unknown-variable check.
func load(args []string, getenv func(string) (string, bool), environ []string) (Config, error) {
	if getenv == nil {
		getenv = func(string) (string, bool) { return "", false }
	}
	cfg := Defaults()
	opts := cfg.options()
	var problems []error

	// Flags are parsed first, to find --config, and applied last.
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	configFile := fs.String("config", "", "")
	flagValues := make([]*flagValue, len(opts))
	for i, o := range opts {
		flagValues[i] = &flagValue{isBool: o.isBool()}
		fs.Var(flagValues[i], o.name, o.usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, flag.ErrHelp
		}
		return Config{}, &UsageError{Problems: []error{err}}
	}
	for _, a := range fs.Args() {
		problems = append(problems, fmt.Errorf("unexpected argument %s: settings are given as --name=value", quote(a)))
	}
	configSet := false
	fs.Visit(func(f *flag.Flag) { configSet = configSet || f.Name == "config" })

	if environ != nil {
		problems = append(problems, unknownEnv(environ, opts)...)
	}

	// The file.
	path, source := "", ""
	if configSet {
		path, source = *configFile, "--config"
	} else if v, ok := getenv(envConfig); ok {
		path, source = v, envConfig
	}
	if path != "" {
		problems = append(problems, loadFile(source, path, opts)...)
	}

	// The environment.
	for _, o := range opts {
		name := envName(o.name)
		if v, ok := getenv(name); ok {
			if err := o.set(v); err != nil {
				problems = append(problems, fmt.Errorf("%s: %w", name, err))
			}
		}
	}

	// The flags.
	for i, o := range opts {
		vs := flagValues[i].values
		if len(vs) == 0 {
			continue
		}
		v := vs[len(vs)-1] // the last one wins
		if o.isList() {
			v = strings.Join(vs, ",") // a repeated list flag adds
		}
		if err := o.set(v); err != nil {
			problems = append(problems, fmt.Errorf("--%s: %w", o.name, err))
		}
	}

	if len(problems) > 0 {
		return Config{}, &UsageError{Problems: problems}
	}
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// unknownEnv reports each RELAY_ variable in environ that is not a setting.
func unknownEnv(environ []string, opts []option) []error {
	known := map[string]bool{envConfig: true}
	names := []string{envConfig}
	for _, o := range opts {
		known[envName(o.name)] = true
		names = append(names, envName(o.name))
	}
	var problems []error
	for _, k := range environ {
		if !strings.HasPrefix(k, envPrefix) || known[k] || isKubernetesServiceVar(k) {
			continue
		}
		problems = append(problems, fmt.Errorf("environment variable %s is not a setting%s", k, suggest(k, names)))
	}
	return problems
}

// isKubernetesServiceVar reports whether name is one of the variables
// Kubernetes puts in every pod for a Service named relay or relay-*, such as
// RELAY_SERVICE_HOST, RELAY_SERVICE_PORT_HTTP, RELAY_PORT or
// RELAY_ETCD_PORT_2379_TCP_ADDR. No setting has such a name.
func isKubernetesServiceVar(name string) bool {
	if strings.HasSuffix(name, "_SERVICE_HOST") || strings.HasSuffix(name, "_SERVICE_PORT") ||
		strings.Contains(name, "_SERVICE_PORT_") || strings.HasSuffix(name, "_PORT") {
		return true
	}
	// <SVC>_PORT_<port>_<proto>[_ADDR|_PORT|_PROTO]
	i := strings.LastIndex(name, "_PORT_")
	if i < 0 {
		return false
	}
	parts := strings.Split(name[i+len("_PORT_"):], "_")
	if len(parts) < 2 || len(parts) > 3 || strings.Trim(parts[0], "0123456789") != "" || parts[0] == "" {
		return false
	}
	switch parts[1] {
	case "TCP", "UDP", "SCTP":
	default:
		return false
	}
	if len(parts) == 3 {
		switch parts[2] {
		case "ADDR", "PORT", "PROTO":
		default:
			return false
		}
	}
	return true
}

// loadFile applies the YAML file at path, named by source (--config or
// RELAY_CONFIG), to the options.
func loadFile(source, path string, opts []option) []error {
	f, err := os.Open(path)
	if err != nil {
		return []error{fmt.Errorf("%s: %w", source, err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigFileBytes+1))
	if err != nil {
		return []error{fmt.Errorf("%s: %w", source, err)}
	}
	if len(data) > maxConfigFileBytes {
		return []error{fmt.Errorf("%s: %s is larger than %d bytes", source, path, maxConfigFileBytes)}
	}
	return applyYAML(path, data, opts)
}

// applyYAML applies data, the YAML file named file, to the options. The file
// holds one mapping of setting names to values. A key that is not a setting,
// a repeated key, or a value of the wrong type is an error naming the file and
// line; every such problem is reported. (The mapping is walked against the
// option table rather than decoded into Config, so the check that
// yaml.Decoder.KnownFields(true) would make happens here, with the lines.)
func applyYAML(file string, data []byte, opts []option) (problems []error) {
	defer func() {
		// The parser is not ours; never let it take the relay down.
		if r := recover(); r != nil {
			problems = []error{fmt.Errorf("%s: cannot parse YAML: %v", file, r)}
		}
	}()
	at := func(n *yaml.Node, format string, args ...any) error {
		return fmt.Errorf("%s: line %d: %s", file, n.Line, fmt.Sprintf(format, args...))
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file sets nothing
		}
		return []error{fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))}
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return []error{fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))}
		}
		return []error{at(&next, "a second YAML document; the file holds one mapping of settings")}
	}

	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil
		}
		root = root.Content[0]
	}
	root = resolveAlias(root)
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil // a file of comments only
	}
	if root.Kind != yaml.MappingNode {
		return []error{at(root, "the file must hold a mapping of settings (name: value), not %s", kindName(root))}
	}

	byName := make(map[string]option, len(opts))
	names := make([]string, 0, len(opts))
	for _, o := range opts {
		byName[o.name] = o
		names = append(names, o.name)
	}
	seen := make(map[string]int)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := resolveAlias(root.Content[i]), resolveAlias(root.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			problems = append(problems, at(k, "a key must be a setting name, not %s", kindName(k)))
			continue
		}
		o, ok := byName[k.Value]
		if !ok {
			problems = append(problems, at(k, "unknown key %s%s", quote(k.Value), suggest(k.Value, names)))
			continue
		}
		if line, dup := seen[k.Value]; dup {
			problems = append(problems, at(k, "%s repeats the key of line %d", k.Value, line))
			continue
		}
		seen[k.Value] = k.Line
		if err := setYAML(o, v); err != nil {
			problems = append(problems, at(v, "%s: %v", k.Value, err))
		}
	}
	return problems
}

// setYAML stores the YAML value n into o's field. Scalars are parsed from
// their text exactly as a flag would be (so "30s", "1" for true, and no YAML
// 1.1 surprises); null is the empty value; only a list takes a sequence.
func setYAML(o option, n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return o.set("")
		}
		return o.set(n.Value)
	case yaml.SequenceNode:
		items := make([]string, 0, len(n.Content))
		for _, it := range n.Content {
			it = resolveAlias(it)
			if it.Kind == yaml.MappingNode && o.name == "etcd-shards" {
				s, err := shardFromYAML(it)
				if err != nil {
					return err
				}
				items = append(items, s)
				continue
			}
			if it.Kind != yaml.ScalarNode {
				return fmt.Errorf("a list item must be a plain value, not %s (line %d)", kindName(it), it.Line)
			}
			if it.ShortTag() != "!!null" {
				items = append(items, it.Value)
			}
		}
		return o.setItems(items)
	default:
		return fmt.Errorf("must be %s, not %s", o.aTypeName(), kindName(n))
	}
}

// resolveAlias follows n to the node it aliases, if it is an alias.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for range 100 { // YAML forbids cycles; bound the walk all the same
		if n.Kind != yaml.AliasNode || n.Alias == nil {
			return n
		}
		n = n.Alias
	}
	return n
}

// kindName names the kind of a YAML node for an error message.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a plain value"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	return "an unknown node"
}
