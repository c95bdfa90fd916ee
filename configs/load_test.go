package configs

import (
	"errors"
	"flag"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// env is a fake environment for Load.
func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// A flag beats an environment variable, which beats the file, which beats the
// default, for every kind of setting.
func TestPrecedence(t *testing.T) {
	type layer struct {
		yaml string // the value as written in the file
		env  string
		flag string // the whole argument
		want any
	}
	tests := []struct {
		name       string
		get        func(Config) any
		def        any
		file, envv layer
		flagv      layer
	}{
		{
			name: "listen", get: func(c Config) any { return c.Listen }, def: ":8080",
			file:  layer{yaml: `"127.0.0.1:1001"`, want: "127.0.0.1:1001"},
			envv:  layer{env: ":1002", want: ":1002"},
			flagv: layer{flag: "--listen=:1003", want: ":1003"},
		},
		{
			name: "cors-origins", get: func(c Config) any { return c.CORSOrigins }, def: Defaults().CORSOrigins,
			file:  layer{yaml: "\n  - https://a.example\n  - HTTPS://B.example", want: []string{"https://a.example", "https://b.example"}},
			envv:  layer{env: " https://c.example ,, https://d.example", want: []string{"https://c.example", "https://d.example"}},
			flagv: layer{flag: "--cors-origins=https://e.example", want: []string{"https://e.example"}},
		},
		{
			name: "drain-timeout", get: func(c Config) any { return c.DrainTimeout }, def: 30 * time.Second,
			file:  layer{yaml: "1m30s", want: 90 * time.Second},
			envv:  layer{env: "2s", want: 2 * time.Second},
			flagv: layer{flag: "--drain-timeout=250ms", want: 250 * time.Millisecond},
		},
		{
			name: "allow-http-upstream", get: func(c Config) any { return c.AllowHTTPUpstream }, def: false,
			file:  layer{yaml: "true", want: true},
			envv:  layer{env: "0", want: false},
			flagv: layer{flag: "--allow-http-upstream", want: true},
		},
		{
			name: "allow-http-upstream", get: func(c Config) any { return c.AllowHTTPUpstream }, def: false,
			file:  layer{yaml: "1", want: true},
			envv:  layer{env: "TRUE", want: true},
			flagv: layer{flag: "--allow-http-upstream=false", want: false},
		},
	}
	for _, tt := range tests {
		// Each combination of the three layers: the highest one set wins.
		for mask := 0; mask < 8; mask++ {
			useFile, useEnv, useFlag := mask&1 != 0, mask&2 != 0, mask&4 != 0
			name := tt.name + "/"
			var args []string
			getenv := env()
			want := tt.def
			if useFile {
				name += "file"
				args = append(args, "--config", writeFile(t, "relay.yaml", tt.name+": "+tt.file.yaml+"\n"))
				want = tt.file.want
			}
			if useEnv {
				name += "+env"
				getenv = env(envName(tt.name), tt.envv.env)
				want = tt.envv.want
			}
			if useFlag {
				name += "+flag"
				args = append(args, tt.flagv.flag)
				want = tt.flagv.want
			}
			t.Run(name, func(t *testing.T) {
				cfg, err := Load(args, getenv)
				if err != nil {
					t.Fatal(err)
				}
				if got := tt.get(cfg); !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v, want %#v", tt.name, got, want)
				}
			})
		}
	}
}

// How lists, the config file's name and flags are read.
func TestLoadForms(t *testing.T) {
	hosts := func(c Config) any { return c.AllowedUpstreams }
	proxies := func(c Config) any { return c.TrustedProxies }
	fileA := writeFile(t, "a.yaml", "listen: \":1\"\n")
	fileB := writeFile(t, "b.yaml", "listen: \":2\"\n")
	listen := func(c Config) any { return c.Listen }
	tests := []struct {
		name   string
		args   []string
		getenv func(string) (string, bool)
		get    func(Config) any
		want   any
	}{
		{"yaml list as a comma-separated string", []string{"--config", writeFile(t, "c.yaml", "allowed-upstreams: \"a.example, *.B.example\"\n")}, nil, hosts, []string{"a.example", "*.b.example"}},
		{"yaml flow list", []string{"--config", writeFile(t, "c.yaml", "trusted-proxies: [10.0.0.0/8, '::1']\n")}, nil, proxies, []string{"10.0.0.0/8", "::1"}},
		{"yaml null list is empty", []string{"--config", writeFile(t, "c.yaml", "trusted-proxies:\n")}, nil, proxies, []string(nil)},
		{"yaml alias", []string{"--config", writeFile(t, "c.yaml", "etcd-username: &u relay\nlisten: \":3\"\ndata-dir: *u\n")}, nil, func(c Config) any { return c.DataDir }, "relay"},
		{"empty file sets nothing", []string{"--config", writeFile(t, "c.yaml", "")}, nil, listen, ":8080"},
		{"comments-only file sets nothing", []string{"--config", writeFile(t, "c.yaml", "# nothing\n")}, nil, listen, ":8080"},
		{"repeated list flag adds", []string{"--trusted-proxies=10.0.0.1", "--trusted-proxies", "10.0.0.2,10.0.0.3"}, nil, proxies, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}},
		{"repeated scalar flag: last wins", []string{"--listen=:1", "-listen", ":2"}, nil, listen, ":2"},
		{"empty env list clears the default", nil, env("RELAY_TRUSTED_PROXIES", ""), proxies, []string(nil)},
		{"RELAY_CONFIG names the file", nil, env("RELAY_CONFIG", fileA), listen, ":1"},
		{"--config beats RELAY_CONFIG", []string{"--config=" + fileB}, env("RELAY_CONFIG", fileA), listen, ":2"},
		{"--config= turns the file off", []string{"--config="}, env("RELAY_CONFIG", fileA), listen, ":8080"},
		{"nil getenv is an empty environment", nil, nil, listen, ":8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(tt.args, tt.getenv)
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.get(cfg); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

// Each way a source can be wrong is a *UsageError saying where.
func TestLoadErrors(t *testing.T) {
	yamlFile := func(content string) []string {
		return []string{"--config", writeFile(t, "bad.yaml", content)}
	}
	tests := []struct {
		name    string
		args    []string
		environ []string // for LoadEnviron
		want    []string // substrings of the message, in order
	}{
		{"unknown yaml key", yamlFile("listen: \":1\"\nlisen: \":2\"\n"), nil,
			[]string{"bad.yaml: line 2: unknown key \"lisen\" (did you mean \"listen\"?)"}},
		{"yaml string given a list", yamlFile("listen: [a, b]\n"), nil,
			[]string{"bad.yaml: line 1: listen: must be a string, not a list"}},
		{"yaml integer given a mapping", yamlFile("\nmax-attachment-bytes: {a: 1}\n"), nil,
			[]string{"bad.yaml: line 2: max-attachment-bytes: must be an integer, not a mapping"}},
		{"yaml list given a mapping", yamlFile("cors-origins: {a: b}\n"), nil,
			[]string{"bad.yaml: line 1: cors-origins: must be a list, not a mapping"}},
		{"yaml list item not plain", yamlFile("cors-origins:\n  - [a]\n"), nil,
			[]string{"bad.yaml: line 2: cors-origins: a list item must be a plain value, not a list"}},
		{"yaml bad integer", yamlFile("max-attachment-bytes: 1GiB\n"), nil,
			[]string{"bad.yaml: line 1: max-attachment-bytes: \"1GiB\" is not an integer"}},
		{"yaml duration without unit", yamlFile("drain-timeout: 30\n"), nil,
			[]string{"bad.yaml: line 1: drain-timeout: \"30\" is not a duration"}},
		{"yaml null duration", yamlFile("drain-timeout:\n"), nil,
			[]string{"drain-timeout: \"\" is not a duration"}},
		{"yaml yes is not a bool", yamlFile("allow-http-upstream: yes\n"), nil,
			[]string{"bad.yaml: line 1: allow-http-upstream: \"yes\" is not a bool"}},
		{"yaml repeated key", yamlFile("listen: \":1\"\nlisten: \":2\"\n"), nil,
			[]string{"bad.yaml: line 2: listen repeats the key of line 1"}},
		{"yaml syntax error", yamlFile("listen: \":1\n"), nil,
			[]string{"bad.yaml: line"}},
		{"yaml not a mapping", yamlFile("- listen\n"), nil,
			[]string{"bad.yaml: line 1: the file must hold a mapping"}},
		{"yaml two documents", yamlFile("listen: \":1\"\n---\nlisten: \":2\"\n"), nil,
			[]string{"bad.yaml: line 2: a second YAML document"}},
		{"yaml merge key", yamlFile("<<: {listen: \":1\"}\n"), nil,
			[]string{"unknown key \"<<\""}},
		{"missing config file", []string{"--config", "/nonexistent/relay.yaml"}, nil,
			[]string{"--config: open /nonexistent/relay.yaml: no such file or directory"}},
		{"missing RELAY_CONFIG file", nil, []string{"RELAY_CONFIG=/nonexistent/relay.yaml"},
			[]string{"RELAY_CONFIG: open /nonexistent/relay.yaml"}},
		{"config file too large", yamlFile("# " + strings.Repeat("x", maxConfigFileBytes) + "\n"), nil,
			[]string{"--config: ", "bad.yaml is larger than 1048576 bytes"}},
		{"config file is a directory", []string{"--config", t.TempDir()}, nil,
			[]string{"--config: read "}},
		{"bad duration flag", []string{"--drain-timeout=soon"}, nil,
			[]string{"--drain-timeout: \"soon\" is not a duration"}},
		{"bad integer flag", []string{"--max-attachment-bytes=1e9"}, nil,
			[]string{"--max-attachment-bytes: \"1e9\" is not an integer"}},
		{"integer out of range", []string{"--breaker-failures=4294967296"}, nil,
			[]string{"--breaker-failures: \"4294967296\" is out of range"}},
		{"negative unsigned", []string{"--breaker-failures=-1"}, nil,
			[]string{"--breaker-failures: \"-1\" is not a whole number"}},
		{"bad float flag", []string{"--ip-rps=NaN"}, nil,
			[]string{"--ip-rps: \"NaN\" is not a finite number"}},
		{"bad bool env", nil, []string{"RELAY_ALLOW_HTTP_UPSTREAM=yes"},
			[]string{"RELAY_ALLOW_HTTP_UPSTREAM: \"yes\" is not a bool"}},
		{"bad duration env", nil, []string{"RELAY_IDLE_TIMEOUT=60"},
			[]string{"RELAY_IDLE_TIMEOUT: \"60\" is not a duration"}},
		{"unknown RELAY_ variable", nil, []string{"RELAY_LISTN=:1", "HOME=/root"},
			[]string{"environment variable RELAY_LISTN is not a setting (did you mean \"RELAY_LISTEN\"?)"}},
		{"unknown RELAY_ variable without a near name", nil, []string{"RELAY_VERBOSE=1"},
			[]string{"environment variable RELAY_VERBOSE is not a setting"}},
		{"positional argument", []string{"--listen", ":1", "serve"}, nil,
			[]string{"unexpected argument \"serve\""}},
		{"bool flag does not take a separate value", []string{"--allow-http-upstream", "false"}, nil,
			[]string{"unexpected argument \"false\""}},
		{"unknown flag", []string{"--lisen=:1"}, nil,
			[]string{"flag provided but not defined: -lisen"}},
		{"flag without its value", []string{"--listen"}, nil,
			[]string{"flag needs an argument: -listen"}},
		{"validation failure", []string{"--listen=abc"}, nil,
			[]string{"--listen: \"abc\" is not host:port"}},
		{"every source's problems at once",
			append(yamlFile("lisen: x\n"), "--ip-burst=many"), []string{"RELAY_IP_RPS=fast"},
			[]string{"3 configuration problems:", "unknown key \"lisen\"", "RELAY_IP_RPS: \"fast\"", "--ip-burst: \"many\""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadEnviron(tt.args, tt.environ)
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("LoadEnviron = %+v, %v; want a *UsageError", cfg, err)
			}
			if !reflect.DeepEqual(cfg, Config{}) {
				t.Errorf("LoadEnviron returned a config with its error")
			}
			msg := err.Error()
			for _, w := range tt.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Fatalf("error %q does not contain %q", msg, w)
				}
				msg = msg[i+len(w):]
			}
		})
	}
}

// Load sees only the variables getenv is asked about; LoadEnviron also lets
// through the variables Kubernetes sets for a Service named relay or relay-*.
func TestUnknownEnv(t *testing.T) {
	if _, err := Load(nil, env("RELAY_LISTN", ":1")); err != nil {
		t.Errorf("Load cannot list the environment, yet failed: %v", err)
	}
	allowed := []string{
		"RELAY_CONFIG=",
		"RELAY_SERVICE_HOST=10.0.0.1", "RELAY_SERVICE_PORT=8080", "RELAY_SERVICE_PORT_HTTP=8080",
		"RELAY_PORT=tcp://10.0.0.1:8080", "RELAY_PORT_8080_TCP=tcp://10.0.0.1:8080",
		"RELAY_PORT_8080_TCP_ADDR=10.0.0.1", "RELAY_PORT_8080_TCP_PORT=8080", "RELAY_PORT_8080_TCP_PROTO=tcp",
		"RELAY_ETCD_SERVICE_HOST=10.0.0.2", "RELAY_ETCD_PORT_2379_TCP_ADDR=10.0.0.2",
		"OTHER=1", "=C:=C:\\", "NOEQUALS",
	}
	if _, err := LoadEnviron(nil, allowed); err != nil {
		t.Errorf("LoadEnviron(%q) = %v", allowed, err)
	}
	for _, bad := range []string{"RELAY_PORT_8080_XTP=1", "RELAY_PORT_HTTP_TCP=1", "RELAY_PORT_8080_TCP_HOST=1", "RELAY_=1"} {
		if _, err := LoadEnviron(nil, []string{bad}); err == nil {
			t.Errorf("LoadEnviron(%q) accepted it", bad)
		}
	}
	// The first of a repeated variable wins, as in os.Getenv.
	cfg, err := LoadEnviron(nil, []string{"RELAY_LISTEN=:1", "RELAY_LISTEN=:2"})
	if err != nil || cfg.Listen != ":1" {
		t.Errorf("repeated variable: Listen = %q, %v; want :1", cfg.Listen, err)
	}
}

// -h, -help and --help ask for Usage: flag.ErrHelp, not a *UsageError.
func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--h", "-help", "--help"} {
		_, err := Load([]string{"--listen=:1", arg, "--nonsense"}, nil)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("Load(%s) = %v, want flag.ErrHelp", arg, err)
		}
		var ue *UsageError
		if errors.As(err, &ue) {
			t.Errorf("Load(%s) is a *UsageError", arg)
		}
	}
}

// Load writes nothing to stdout or stderr, whatever happens.
func TestLoadIsSilent(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = w, w
	for _, args := range [][]string{{"-h"}, {"--nonsense"}, {"--listen"}, {"x"}, {"--listen=bad"}, {}} {
		Load(args, nil)
	}
	os.Stdout, os.Stderr = stdout, stderr
	w.Close()
	if out, _ := io.ReadAll(r); len(out) > 0 {
		t.Errorf("Load wrote %q", out)
	}
}

// UsageError lists its problems and unwraps to them.
func TestUsageError(t *testing.T) {
	a, b := errors.New("--a: bad"), errors.New("--b: worse")
	if got := (&UsageError{Problems: []error{a}}).Error(); got != "--a: bad" {
		t.Errorf("one problem: %q", got)
	}
	two := &UsageError{Problems: []error{a, b}}
	if got, want := two.Error(), "2 configuration problems:\n  --a: bad\n  --b: worse"; got != want {
		t.Errorf("two problems: %q, want %q", got, want)
	}
	if !errors.Is(two, b) {
		t.Errorf("UsageError does not unwrap to its problems")
	}
	if got := (&UsageError{}).Error(); got == "" {
		t.Errorf("no problems: empty message")
	}
}
