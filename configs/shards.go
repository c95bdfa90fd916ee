package configs

import (
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Shard is one etcd cluster of --etcd-shards: where tenants' data lives.
// Written on the command line and in the environment as
//
//	NAME=URL[|URL…][;ca=FILE][;cert=FILE][;key=FILE]
//
// (a list: several shards separated by commas), and in the YAML file as
// that string or as a mapping:
//
//	etcd-shards:
//	  - name: eu1
//	    endpoints: [https://etcd-eu1-a:2379, https://etcd-eu1-b:2379]
//	    ca: /etc/relay/eu1-ca.pem
//	    cert: /etc/relay/eu1-client.pem
//	    key: /etc/relay/eu1-client-key.pem
//
// A shard without ca/cert/key uses --etcd-ca, --etcd-cert and --etcd-key;
// --etcd-username and --etcd-password apply to every cluster.
type Shard struct {
	Name      string
	Endpoints []string
	CA        string
	Cert      string
	Key       string
}

// ParseShard reads one shard's text form.
func ParseShard(s string) (Shard, error) {
	parts := strings.Split(s, ";")
	name, eps, ok := strings.Cut(parts[0], "=")
	if !ok || name == "" || eps == "" {
		return Shard{}, fmt.Errorf("a shard is not NAME=URL[|URL…][;ca=FILE][;cert=FILE][;key=FILE] (the value is not repeated here: it may hold credentials)")
	}
	if !validShardName(name) {
		return Shard{}, fmt.Errorf("%q: the name must be 1 to 32 of a-z 0-9 - (and not \"directory\")", name)
	}
	sh := Shard{Name: name, Endpoints: strings.Split(eps, "|")}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		if !ok || v == "" {
			return Shard{}, fmt.Errorf("shard %s: a setting is not ca=FILE, cert=FILE or key=FILE", name)
		}
		switch k {
		case "ca":
			sh.CA = v
		case "cert":
			sh.Cert = v
		case "key":
			sh.Key = v
		default:
			return Shard{}, fmt.Errorf("shard %s: unknown setting %q (want ca, cert or key)", name, k)
		}
	}
	return sh, nil
}

// Shards parses --etcd-shards (validated by Validate).
func (c *Config) Shards() ([]Shard, error) {
	out := make([]Shard, 0, len(c.EtcdShards))
	for _, s := range c.EtcdShards {
		sh, err := ParseShard(s)
		if err != nil {
			return nil, err
		}
		out = append(out, sh)
	}
	return out, nil
}

func validShardName(n string) bool {
	if n == "" || len(n) > 32 || n == "directory" {
		return false
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// shardFromYAML turns a shard written as a YAML mapping into its text form.
func shardFromYAML(n *yaml.Node) (string, error) {
	var m struct {
		Name      string   `yaml:"name"`
		Endpoints []string `yaml:"endpoints"`
		CA        string   `yaml:"ca"`
		Cert      string   `yaml:"cert"`
		Key       string   `yaml:"key"`
	}
	known := map[string]bool{"name": true, "endpoints": true, "ca": true, "cert": true, "key": true}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; !known[k] {
			keys := make([]string, 0, len(known))
			for k := range known {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return "", fmt.Errorf("unknown shard setting %q (line %d; want %s)", k, n.Content[i].Line, strings.Join(keys, ", "))
		}
	}
	if err := n.Decode(&m); err != nil {
		return "", fmt.Errorf("a shard (line %d): %w", n.Line, err)
	}
	if m.Name == "" || len(m.Endpoints) == 0 {
		return "", fmt.Errorf("a shard (line %d) needs a name and endpoints", n.Line)
	}
	for _, e := range m.Endpoints {
		if strings.ContainsAny(e, "|;,") {
			return "", fmt.Errorf("shard %s: endpoint %q holds | ; or ,", m.Name, e)
		}
	}
	s := m.Name + "=" + strings.Join(m.Endpoints, "|")
	for _, kv := range [][2]string{{"ca", m.CA}, {"cert", m.Cert}, {"key", m.Key}} {
		if strings.ContainsAny(kv[1], ";,") {
			return "", fmt.Errorf("shard %s: %s %q holds ; or ,", m.Name, kv[0], kv[1])
		}
		if kv[1] != "" {
			s += ";" + kv[0] + "=" + kv[1]
		}
	}
	return s, nil
}
