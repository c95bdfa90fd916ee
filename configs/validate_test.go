package configs

import (
	"errors"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Each rule of Validate, broken once: exactly one problem, naming the flag.
func TestValidateRejects(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, "cert.pem", "PEM")
	missing := dir + "/missing.pem"
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"listen without port", func(c *Config) { c.Listen = "abc" }, `--listen: "abc" is not host:port`},
		{"listen bad port", func(c *Config) { c.Listen = ":99999" }, `--listen: ":99999": the port must be a number from 0 to 65535`},
		{"listen named port", func(c *Config) { c.Listen = ":http" }, `--listen: ":http": the port must be a number`},
		{"data-dir empty", func(c *Config) { c.DataDir = "" }, `--data-dir: must not be empty`},
		{"mapping-retention negative", func(c *Config) { c.MappingRetention = -time.Second }, `--mapping-retention: must be 0 (keep) or from 1s to 87600h (ten years)`},
		{"mapping-retention under a second", func(c *Config) { c.MappingRetention = time.Millisecond }, `--mapping-retention: must be 0 (keep) or from 1s`},
		{"mapping-retention over ten years", func(c *Config) { c.MappingRetention = 87601 * time.Hour }, `--mapping-retention: must be 0 (keep) or from 1s`},
		{"tenant-max-mappings negative", func(c *Config) { c.TenantMaxMappings = -1 }, `--tenant-max-mappings: must be 0 (no quota) or more`},
		{"tenant-max-users negative", func(c *Config) { c.TenantMaxUsers = -1 }, `--tenant-max-users: must be 0 (no quota) or more`},
		{"etcd-quota-bytes too small", func(c *Config) { c.EtcdQuotaBytes = 1 << 20 }, `--etcd-quota-bytes: must be from 16777216`},
		{"max-cooldown under a second", func(c *Config) { c.MaxCooldown = 500 * time.Millisecond }, `--max-cooldown: must be from 1s to 24h, not 500ms`},
		{"max-cooldown over a day", func(c *Config) { c.MaxCooldown = 25 * time.Hour }, `--max-cooldown: must be from 1s to 24h`},
		{"max-cooldown zero", func(c *Config) { c.MaxCooldown = 0 }, `--max-cooldown: must be more than 0`},
		{"fleet-ttl under etcd's shortest lease", func(c *Config) { c.FleetTTL = time.Second }, `--fleet-ttl: must be from 2s (etcd's shortest lease) to 5m, not 1s`},
		{"fleet-ttl over 5m", func(c *Config) { c.FleetTTL = time.Hour }, `--fleet-ttl: must be from 2s`},
		{"fleet-ttl negative", func(c *Config) { c.FleetTTL = -time.Second }, `--fleet-ttl: must be more than 0`},
		{"relay-id with a slash", func(c *Config) { c.RelayID = "a/b" }, `--relay-id: "a/b" must be 1 to 64 characters of A-Z a-z 0-9 . _ -`},
		{"relay-id too long", func(c *Config) { c.RelayID = strings.Repeat("r", 65) }, `--relay-id: "rrrr`},
		{"relay-id with a space", func(c *Config) { c.RelayID = "relay 1" }, `--relay-id: "relay 1" must be`},
		{"encryption-key-file missing", func(c *Config) { c.EncryptionKeyFile = missing }, `--encryption-key-file: encryption key file ` + missing + `: no such file or directory`},
		{"encryption-key-file not a key file", func(c *Config) { c.EncryptionKeyFile = file }, `--encryption-key-file: encryption key file ` + file + `: `},
		{"drain-timeout zero", func(c *Config) { c.DrainTimeout = 0 }, `--drain-timeout: must be more than 0, not 0s`},

		{"etcd-endpoints without scheme", func(c *Config) { c.EtcdEndpoints = []string{"127.0.0.1:2379"} }, `--etcd-endpoints: "127.0.0.1:2379" is not an http:// or https:// URL with a host`},
		{"etcd-endpoints other scheme", func(c *Config) { c.EtcdEndpoints = []string{"unix:///run/etcd.sock"} }, `--etcd-endpoints: "unix:///run/etcd.sock" is not an http:// or https:// URL`},
		{"etcd-endpoints with credentials", func(c *Config) { c.EtcdEndpoints = []string{"https://root:hunter2@etcd:2379"} }, `--etcd-endpoints: "https://root:xxxxx@etcd:2379" must not hold credentials`},
		{"etcd-endpoints with path", func(c *Config) { c.EtcdEndpoints = []string{"https://etcd:2379/v3"} }, `--etcd-endpoints: "https://etcd:2379/v3" must be scheme://host[:port] without a path`},
		{"etcd-password without user", func(c *Config) { c.EtcdPassword = "x" }, `--etcd-password: is set but --etcd-username is not`},
		{"etcd-cert without key", func(c *Config) { c.EtcdCert = file }, `--etcd-key: must be set with --etcd-cert`},
		{"etcd-key without cert", func(c *Config) { c.EtcdKey = file }, `--etcd-cert: must be set with --etcd-key`},
		{"etcd-ca missing", func(c *Config) { c.EtcdCA = missing }, `--etcd-ca: stat ` + missing + `: no such file or directory`},
		{"etcd-listen without scheme", func(c *Config) { c.EtcdListen = "127.0.0.1:2379" }, `--etcd-listen: "127.0.0.1:2379" is not an http:// or https:// URL`},
		{"etcd-peer-listen without host", func(c *Config) { c.EtcdPeerListen = "http://:2380" }, `--etcd-peer-listen: "http://:2380" is not an http:// or https:// URL with a host`},
		{"etcd-peer-listen bad port", func(c *Config) { c.EtcdPeerListen = "http://127.0.0.1:70000" }, `--etcd-peer-listen: "http://127.0.0.1:70000": the port must be`},
		{"etcd-prefix without leading slash", func(c *Config) { c.EtcdPrefix = "jira-relay/" }, `--etcd-prefix: "jira-relay/" must start and end with "/"`},
		{"etcd-prefix without trailing slash", func(c *Config) { c.EtcdPrefix = "/jira-relay" }, `--etcd-prefix: "/jira-relay" must start and end with "/"`},
		{"etcd-prefix empty", func(c *Config) { c.EtcdPrefix = "" }, `--etcd-prefix: "" must start and end with "/"`},
		{"etcd-prefix control character", func(c *Config) { c.EtcdPrefix = "/a\x00b/" }, `--etcd-prefix: "/a\x00b/" must not contain control characters`},
		{"etcd-prefix invalid UTF-8", func(c *Config) { c.EtcdPrefix = "/\xff/" }, `--etcd-prefix: "/\xff/" is not valid UTF-8`},
		{"etcd-dial-timeout negative", func(c *Config) { c.EtcdDialTimeout = -time.Second }, `--etcd-dial-timeout: must be more than 0, not -1s`},
		{"etcd-request-timeout zero", func(c *Config) { c.EtcdRequestTimeout = 0 }, `--etcd-request-timeout: must be more than 0`},

		{"allowed-upstreams empty", func(c *Config) { c.AllowedUpstreams = nil }, `--allowed-upstreams: must name at least one host`},
		{"allowed-upstreams star", func(c *Config) { c.AllowedUpstreams = []string{"*"} }, `--allowed-upstreams: "*" is not a host name`},
		{"allowed-upstreams URL", func(c *Config) { c.AllowedUpstreams = []string{"https://x.atlassian.net"} }, `--allowed-upstreams: "https://x.atlassian.net" is not a host name`},
		{"allowed-upstreams with port", func(c *Config) { c.AllowedUpstreams = []string{"jira.example.com:8443"} }, `--allowed-upstreams: "jira.example.com:8443" is not a host name`},
		{"allowed-upstreams inner wildcard", func(c *Config) { c.AllowedUpstreams = []string{"jira.*.com"} }, `--allowed-upstreams: "jira.*.com" is not a host name`},
		{"allowed-upstreams underscore", func(c *Config) { c.AllowedUpstreams = []string{"bad_host.example"} }, `--allowed-upstreams: "bad_host.example" is not a host name`},
		{"allowed-upstreams leading hyphen", func(c *Config) { c.AllowedUpstreams = []string{"-a.example"} }, `--allowed-upstreams: "-a.example" is not a host name`},
		{"allowed-upstreams trailing dot", func(c *Config) { c.AllowedUpstreams = []string{"a.example."} }, `--allowed-upstreams: "a.example." is not a host name`},
		{"allowed-upstreams wildcard IP", func(c *Config) { c.AllowedUpstreams = []string{"*.10.0.0.1"} }, `--allowed-upstreams: "*.10.0.0.1"`},
		{"allowed-upstreams whole TLD", func(c *Config) { c.AllowedUpstreams = []string{"*.net"} }, `--allowed-upstreams: "*.net" would allow every host of a top-level domain`},
		{"allowed-upstreams upper case", func(c *Config) { c.AllowedUpstreams = []string{"Jira.Example.com"} }, `--allowed-upstreams: "Jira.Example.com" is not lower case`},
		{"registration-token is free-form", func(c *Config) { c.RegistrationToken = "x"; c.Listen = "" }, `--listen: "" is not host:port`},
		{"tls-cert without key", func(c *Config) { c.TLSCert = file }, `--tls-key: must be set with --tls-cert`},
		{"tls-key without cert", func(c *Config) { c.TLSKey = file }, `--tls-cert: must be set with --tls-key`},
		{"tls-cert missing", func(c *Config) { c.TLSCert, c.TLSKey = missing, file }, `--tls-cert: stat ` + missing},
		{"tls-key is a directory", func(c *Config) { c.TLSCert, c.TLSKey = file, dir }, `--tls-key: "` + dir + `" is not a regular file`},

		{"cors-origins star", func(c *Config) { c.CORSOrigins = []string{"*"} }, `--cors-origins: "*" is not allowed; list the origins`},
		{"cors-origins trailing slash", func(c *Config) { c.CORSOrigins = []string{"https://outlook.office.com/"} }, `--cors-origins: "https://outlook.office.com/" is not an origin: scheme://host[:port] without a path, not even "/"`},
		{"cors-origins without scheme", func(c *Config) { c.CORSOrigins = []string{"outlook.office.com"} }, `--cors-origins: "outlook.office.com" is not an origin`},
		{"cors-origins other scheme", func(c *Config) { c.CORSOrigins = []string{"ftp://x.example"} }, `--cors-origins: "ftp://x.example" is not an origin`},
		{"cors-origins query", func(c *Config) { c.CORSOrigins = []string{"https://x.example?a"} }, `--cors-origins: "https://x.example?a" is not an origin`},
		{"cors-origins empty fragment", func(c *Config) { c.CORSOrigins = []string{"https://x.example#"} }, `--cors-origins: "https://x.example#" is not an origin`},
		{"cors-origins user", func(c *Config) { c.CORSOrigins = []string{"https://u@x.example"} }, `--cors-origins: "https://u@x.example" is not an origin`},
		{"cors-origins wildcard", func(c *Config) { c.CORSOrigins = []string{"https://*.office.com"} }, `--cors-origins: "https://*.office.com": "*.office.com" is not a host name or IP address (no wildcards)`},
		{"cors-origins bad port", func(c *Config) { c.CORSOrigins = []string{"https://x.example:65536"} }, `--cors-origins: "https://x.example:65536": the port must be`},
		{"cors-origins upper case", func(c *Config) { c.CORSOrigins = []string{"https://X.example"} }, `--cors-origins: "https://X.example" is not lower case`},

		{"max-attachment-bytes zero", func(c *Config) { c.MaxAttachmentBytes = 0 }, `--max-attachment-bytes: must be more than 0, not 0`},
		{"max-attachment-bytes negative", func(c *Config) { c.MaxAttachmentBytes = -1 }, `--max-attachment-bytes: must be more than 0, not -1`},
		{"instance-rps zero", func(c *Config) { c.InstanceRPS = 0 }, `--instance-rps: must be a finite number more than 0, not 0`},
		{"instance-rps infinite", func(c *Config) { c.InstanceRPS = math.Inf(1) }, `--instance-rps: must be a finite number more than 0, not +Inf`},
		{"instance-rps NaN", func(c *Config) { c.InstanceRPS = math.NaN() }, `--instance-rps: must be a finite number more than 0, not NaN`},
		{"instance-burst zero", func(c *Config) { c.InstanceBurst = 0 }, `--instance-burst: must be at least 1, not 0`},
		{"ip-rps negative", func(c *Config) { c.IPRPS = -1 }, `--ip-rps: must be a finite number more than 0, not -1`},
		{"ip-burst zero", func(c *Config) { c.IPBurst = 0 }, `--ip-burst: must be at least 1, not 0`},
		{"instance-max-streams zero", func(c *Config) { c.InstanceMaxStreams = 0 }, `--instance-max-streams: must be at least 1, not 0`},
		{"trusted-proxies host name", func(c *Config) { c.TrustedProxies = []string{"proxy.internal"} }, `--trusted-proxies: "proxy.internal" is not an IP address or CIDR`},
		{"trusted-proxies bad bits", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/33"} }, `--trusted-proxies: "10.0.0.0/33" is not an IP address or CIDR`},
		{"trusted-proxies zone", func(c *Config) { c.TrustedProxies = []string{"fe80::1%eth0"} }, `--trusted-proxies: "fe80::1%eth0" is not an IP address or CIDR: zones are not allowed`},
		{"breaker-failures zero", func(c *Config) { c.BreakerFailures = 0 }, `--breaker-failures: must be at least 1, not 0`},
		{"breaker-open-timeout zero", func(c *Config) { c.BreakerOpenTimeout = 0 }, `--breaker-open-timeout: must be more than 0`},
		{"breaker-half-open-requests zero", func(c *Config) { c.BreakerHalfOpenRequests = 0 }, `--breaker-half-open-requests: must be at least 1, not 0`},
		{"header-read-timeout zero", func(c *Config) { c.HeaderReadTimeout = 0 }, `--header-read-timeout: must be more than 0`},
		{"idle-timeout zero", func(c *Config) { c.IdleTimeout = 0 }, `--idle-timeout: must be more than 0`},
		{"stream-idle-timeout zero", func(c *Config) { c.StreamIdleTimeout = 0 }, `--stream-idle-timeout: must be more than 0`},
		{"upstream-dial-timeout zero", func(c *Config) { c.UpstreamDialTimeout = 0 }, `--upstream-dial-timeout: must be more than 0`},
		{"upstream-response-timeout zero", func(c *Config) { c.UpstreamResponseTimeout = 0 }, `--upstream-response-timeout: must be more than 0`},
		{"upstream-max-conns zero", func(c *Config) { c.UpstreamMaxConns = 0 }, `--upstream-max-conns: must be at least 1, not 0`},
		{"upstream-ca missing", func(c *Config) { c.UpstreamCA = missing }, `--upstream-ca: stat ` + missing + `: no such file or directory`},
		{"upstream-ca is a device", func(c *Config) { c.UpstreamCA = os.DevNull }, `--upstream-ca: "` + os.DevNull + `" is not a regular file`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.mutate(&c)
			err := c.Validate()
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("Validate() = %v, want a *UsageError", err)
			}
			if len(ue.Problems) != 1 {
				t.Fatalf("Validate() found %d problems, want 1: %v", len(ue.Problems), err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// Values Validate accepts besides the defaults.
func TestValidateAccepts(t *testing.T) {
	file := writeFile(t, "x.pem", "PEM")
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"defaults", func(c *Config) {}},
		{"listen on an IP and any port", func(c *Config) { c.Listen = "127.0.0.1:0" }},
		{"listen on IPv6", func(c *Config) { c.Listen = "[::1]:8443" }},
		{"an etcd cluster with auth and mutual TLS", func(c *Config) {
			c.EtcdEndpoints = []string{"https://etcd-0.etcd:2379", "http://10.0.0.1:2379/"}
			c.EtcdUsername, c.EtcdPassword = "relay", "secret"
			c.EtcdCA, c.EtcdCert, c.EtcdKey = file, file, file
		}},
		{"root etcd prefix", func(c *Config) { c.EtcdPrefix = "/" }},
		{"upstreams for local fakes", func(c *Config) {
			c.AllowedUpstreams = []string{"localhost", "127.0.0.1", "::1", "jira.example.com", "*.jira.example.com"}
		}},
		{"https front door", func(c *Config) { c.TLSCert, c.TLSKey, c.UpstreamCA = file, file, file }},
		{"no CORS origins", func(c *Config) { c.CORSOrigins = nil }},
		{"a local add-in origin", func(c *Config) {
			c.CORSOrigins = []string{"http://localhost:3000", "https://[::1]:3000", "https://addin.example.com"}
		}},
		{"trusted proxies", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/8", "192.168.1.7", "::1", "2001:db8::/32"} }},
		{"fractional rate", func(c *Config) { c.IPRPS = 0.5 }},
		{"a named relay in a fleet", func(c *Config) {
			c.RelayID, c.FleetTTL, c.MaxCooldown = "jira-relay-7c9f4-x.z_1", 2*time.Second, 24*time.Hour
		}},
		{"the shortest cool-down cap", func(c *Config) { c.MaxCooldown, c.FleetTTL = time.Second, 5*time.Minute }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.mutate(&c)
			if err := c.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

// Validate reports every problem, not just the first.
func TestValidateReportsEveryProblem(t *testing.T) {
	c := Defaults()
	c.Listen = "abc"
	c.EtcdPrefix = "relay"
	c.CORSOrigins = []string{"*", "https://ok.example", "https://x.example/"}
	c.IPBurst = 0
	c.TLSKey = "/nonexistent/key.pem"
	err := c.Validate()
	var ue *UsageError
	if !errors.As(err, &ue) {
		t.Fatalf("Validate() = %v", err)
	}
	want := []string{"--listen:", "--etcd-prefix:", "--tls-cert: must be set with --tls-key", "--cors-origins: \"*\"",
		"--cors-origins: \"https://x.example/\"", "--ip-burst:", "--tls-key: stat /nonexistent/key.pem"}
	if len(ue.Problems) != len(want) {
		t.Fatalf("Validate() found %d problems, want %d:\n%v", len(ue.Problems), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(ue.Problems[i].Error(), w) {
			t.Errorf("problem %d = %q, want it to start with %q", i, ue.Problems[i], w)
		}
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the missing file's problem does not unwrap to fs.ErrNotExist")
	}
	if !strings.HasPrefix(err.Error(), "7 configuration problems:\n  --listen:") {
		t.Errorf("Error() = %q", err)
	}
}

// An unreadable file is a problem too (not testable as root).
func TestValidateUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every file")
	}
	path := writeFile(t, "ca.pem", "PEM")
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	c.UpstreamCA = path
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--upstream-ca: open "+path+": permission denied") {
		t.Errorf("Validate() = %v", err)
	}
}

// Normalize trims and lower-cases what compares case-insensitively, and
// leaves the rest alone.
func TestNormalize(t *testing.T) {
	c := Defaults()
	c.AllowedUpstreams = []string{" *.Atlassian.NET ", "", "Jira.Example.com"}
	c.CORSOrigins = []string{"HTTPS://Outlook.Office.com", " "}
	c.TrustedProxies = []string{" "}
	c.EtcdPrefix = "/Relay/"
	c.Normalize()
	want := Defaults()
	want.AllowedUpstreams = []string{"*.atlassian.net", "jira.example.com"}
	want.CORSOrigins = []string{"https://outlook.office.com"}
	want.EtcdPrefix = "/Relay/"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Normalize() =\n%+v\nwant\n%+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	// Load normalizes.
	cfg, err := Load([]string{"--allowed-upstreams= *.Example.COM", "--cors-origins=HTTPS://A.EXAMPLE"}, nil)
	if err != nil || cfg.AllowedUpstreams[0] != "*.example.com" || cfg.CORSOrigins[0] != "https://a.example" {
		t.Errorf("Load did not normalize: %v, %v, %v", cfg.AllowedUpstreams, cfg.CORSOrigins, err)
	}
}

// TrustedProxyNets turns each entry into a prefix.
func TestTrustedProxyNets(t *testing.T) {
	c := Config{TrustedProxies: []string{"10.0.0.0/8", "10.1.2.3/16", "192.168.1.7", "::ffff:192.168.1.8", "::1", "2001:db8::/32"}}
	got, err := c.TrustedProxyNets()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("192.168.1.8/32"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("2001:db8::/32"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("TrustedProxyNets() = %v, want %v", got, want)
	}
	if got, err := (Config{}).TrustedProxyNets(); err != nil || len(got) != 0 {
		t.Errorf("no proxies: %v, %v", got, err)
	}
	_, err = Config{TrustedProxies: []string{"a", "10.0.0.1", "b"}}.TrustedProxyNets()
	var ue *UsageError
	if !errors.As(err, &ue) || len(ue.Problems) != 2 {
		t.Errorf("two bad entries: %v", err)
	}
}
