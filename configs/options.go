package configs

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// option is one setting of Config. Its name is the YAML key and the flag
// (--name); its environment variable is envName(name). ptr points at the field
// of the Config the table was built from, and usage is the one-line help shown
// by Usage and written above the key in relay.yaml.
type option struct {
	name  string
	ptr   any // *string, *[]string, *bool, *int, *int64, *uint32, *float64 or *time.Duration
	usage string
}

// options is the one table of settings, in struct order, with pointers into c.
// Flags, environment variables, the YAML file, Usage and relay.yaml are all
// driven by it: a new Config field needs one line here and its key in
// relay.yaml (the tests insist on both, and on the name matching the yaml tag).
func (c *Config) options() []option {
	return []option{
		{"listen", &c.Listen, "address of the front door (host:port)"},
		{"data-dir", &c.DataDir, "directory holding the embedded etcd's data"},
		{"drain-timeout", &c.DrainTimeout, "how long in-flight requests may finish after SIGINT/SIGTERM"},

		{"etcd-endpoints", &c.EtcdEndpoints, "client URLs of an existing etcd cluster; empty starts the embedded single-node etcd"},
		{"etcd-username", &c.EtcdUsername, "user name for the existing etcd cluster"},
		{"etcd-password", &c.EtcdPassword, "password of etcd-username (secret)"},
		{"etcd-ca", &c.EtcdCA, "PEM file of the CAs that sign the etcd cluster's certificates"},
		{"etcd-cert", &c.EtcdCert, "client certificate (PEM file) for mutual TLS with etcd"},
		{"etcd-key", &c.EtcdKey, "key (PEM file) of etcd-cert"},
		{"etcd-listen", &c.EtcdListen, "client URL of the embedded etcd"},
		{"etcd-peer-listen", &c.EtcdPeerListen, "peer URL of the embedded etcd"},
		{"etcd-prefix", &c.EtcdPrefix, "etcd key prefix holding everything of the relay; starts and ends with /"},
		{"etcd-dial-timeout", &c.EtcdDialTimeout, "bound on connecting to etcd"},
		{"etcd-request-timeout", &c.EtcdRequestTimeout, "bound on one store operation"},

		{"allowed-upstreams", &c.AllowedUpstreams, "host patterns an instance URL may name (*.example.com matches one or more labels)"},
		{"allow-http-upstream", &c.AllowHTTPUpstream, "let instance URLs be plain http (tests, local fakes)"},
		{"registration-token", &c.RegistrationToken, "when set, registering an instance needs it in X-Registration-Token (secret)"},
		{"tls-cert", &c.TLSCert, "certificate (PEM file) that makes the front door serve HTTPS; reloaded when it changes"},
		{"tls-key", &c.TLSKey, "key (PEM file) of tls-cert"},

		{"cors-origins", &c.CORSOrigins, "origins (scheme://host[:port]) whose browsers may call the relay"},
		{"max-attachment-bytes", &c.MaxAttachmentBytes, "largest attachment relayed, in bytes"},
		{"instance-rps", &c.InstanceRPS, "requests per second allowed per instance, fleet-wide (each relay enforces its share)"},
		{"instance-burst", &c.InstanceBurst, "request burst allowed per instance, fleet-wide"},
		{"ip-rps", &c.IPRPS, "requests per second allowed per client IP"},
		{"ip-burst", &c.IPBurst, "request burst allowed per client IP"},
		{"registration-rps", &c.RegistrationRPS, "instance registrations per second allowed per client IP"},
		{"registration-burst", &c.RegistrationBurst, "instance registration burst allowed per client IP"},
		{"instance-max-streams", &c.InstanceMaxStreams, "concurrent attachment streams allowed per instance, fleet-wide (at least 1 per relay)"},
		{"max-cooldown", &c.MaxCooldown, "longest hold after Jira's 429, whatever its Retry-After"},
		{"fleet-ttl", &c.FleetTTL, "lease of this relay's member key: a relay gone without leaving leaves the fleet within it"},
		{"relay-id", &c.RelayID, "this relay's name in the fleet (A-Z a-z 0-9 . _ -, at most 64); default host name + random suffix"},
		{"trusted-proxies", &c.TrustedProxies, "IPs or CIDRs of proxies whose X-Forwarded-For is believed"},
		{"breaker-failures", &c.BreakerFailures, "consecutive upstream failures that open an instance's circuit breaker"},
		{"breaker-open-timeout", &c.BreakerOpenTimeout, "how long a breaker stays open before half-open probes"},
		{"breaker-half-open-requests", &c.BreakerHalfOpenRequests, "probe requests allowed while a breaker is half-open"},
		{"header-read-timeout", &c.HeaderReadTimeout, "bound on reading a request's headers"},
		{"idle-timeout", &c.IdleTimeout, "how long an idle keep-alive connection stays open"},
		{"stream-idle-timeout", &c.StreamIdleTimeout, "abort a stream when no byte moves for this long"},
		{"upstream-dial-timeout", &c.UpstreamDialTimeout, "bound on connecting to Jira"},
		{"upstream-response-timeout", &c.UpstreamResponseTimeout, "bound on waiting for Jira's answer after the body is sent"},
		{"upstream-max-conns", &c.UpstreamMaxConns, "pooled connections per Jira host"},
		{"upstream-ca", &c.UpstreamCA, "PEM bundle trusted for Jira besides the system roots"},

		{"admin-listen", &c.AdminListen, "address of /metrics, /debug/pprof, /healthz and /readyz (never the public port); empty turns it off"},
		{"log-level", &c.LogLevel, "debug, info, warn or error"},
		{"error-report-ttl", &c.ErrorReportTTL, "how long an add-in error report is kept"},
		{"mapping-retention", &c.MappingRetention, "how long a mapping lives after it was last linked; 0 keeps it until unlinked"},
		{"tenant-max-mappings", &c.TenantMaxMappings, "most mappings one tenant may hold (507 tenant_quota_exceeded past it); 0 is no quota"},
		{"tenant-max-users", &c.TenantMaxUsers, "most users one tenant may hold; 0 is no quota"},
		{"etcd-shards", &c.EtcdShards, "etcd clusters for tenants' data: NAME=URL[|URL...][;ca=FILE][;cert=FILE][;key=FILE], comma-separated"},
		{"encryption-key-file", &c.EncryptionKeyFile, "file of named 32-byte keys (relay keys generate): the first seals new values in etcd, all open; empty stores plaintext"},
		{"etcd-quota-bytes", &c.EtcdQuotaBytes, "the embedded etcd's database quota in bytes (507 store_full past it)"},
	}
}

// envPrefix starts every environment variable of the relay.
const envPrefix = "RELAY_"

// envConfig names the YAML file, like --config.
const envConfig = envPrefix + "CONFIG"

// envName is the environment variable of the setting name:
// "max-attachment-bytes" -> "RELAY_MAX_ATTACHMENT_BYTES".
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// isList reports whether o holds a list.
func (o option) isList() bool {
	_, ok := o.ptr.(*[]string)
	return ok
}

// isBool reports whether o holds a bool (a flag that needs no value).
func (o option) isBool() bool {
	_, ok := o.ptr.(*bool)
	return ok
}

// typeName names the kind of value o takes, for Usage and error messages.
func (o option) typeName() string {
	switch o.ptr.(type) {
	case *string:
		return "string"
	case *[]string:
		return "list"
	case *bool:
		return "bool"
	case *int, *int64, *uint32:
		return "integer"
	case *float64:
		return "number"
	case *time.Duration:
		return "duration"
	}
	return fmt.Sprintf("%T", o.ptr)
}

// aTypeName is typeName with its article: "a string", "an integer".
func (o option) aTypeName() string {
	n := o.typeName()
	if strings.ContainsRune("aeiou", rune(n[0])) {
		return "an " + n
	}
	return "a " + n
}

// set parses s, written as in a flag or an environment variable, into o's
// field. A list is comma-separated; spaces around items and empty items are
// dropped. The error names the value but not the setting.
func (o option) set(s string) error {
	switch p := o.ptr.(type) {
	case *string:
		*p = s
	case *[]string:
		*p = splitList(s)
	case *bool:
		switch strings.ToLower(s) {
		case "true", "1":
			*p = true
		case "false", "0":
			*p = false
		default:
			return fmt.Errorf("%s is not a bool (true, false, 1 or 0)", quote(s))
		}
	case *int:
		n, err := strconv.ParseInt(s, 10, strconv.IntSize)
		if err != nil {
			return numError(s, err, "an integer")
		}
		*p = int(n)
	case *int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return numError(s, err, "an integer")
		}
		*p = n
	case *uint32:
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return numError(s, err, fmt.Sprintf("a whole number from 0 to %d", uint32(math.MaxUint32)))
		}
		*p = uint32(n)
	case *float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%s is not a finite number", quote(s))
		}
		*p = f
	case *time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%s is not a duration (Go syntax: 30s, 1m30s, 500ms)", quote(s))
		}
		*p = d
	default:
		return fmt.Errorf("unsupported setting type %T", p)
	}
	return nil
}

// setItems stores items, each one element of a YAML sequence, into o's list
// field, trimming spaces and dropping empty items.
func (o option) setItems(items []string) error {
	p, ok := o.ptr.(*[]string)
	if !ok {
		return fmt.Errorf("must be %s, not a list", o.aTypeName())
	}
	*p = cleanList(items)
	return nil
}

// String formats o's current value as a flag or environment variable would
// give it, so set(String()) restores it.
func (o option) String() string {
	switch p := o.ptr.(type) {
	case *string:
		return *p
	case *[]string:
		return strings.Join(*p, ",")
	case *bool:
		return strconv.FormatBool(*p)
	case *int:
		return strconv.Itoa(*p)
	case *int64:
		return strconv.FormatInt(*p, 10)
	case *uint32:
		return strconv.FormatUint(uint64(*p), 10)
	case *float64:
		return strconv.FormatFloat(*p, 'g', -1, 64)
	case *time.Duration:
		return formatDuration(*p)
	}
	return ""
}

// formatDuration is d.String() without zero trailing units: 1m, not 1m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// splitList splits a comma-separated list, trimming spaces and dropping empty
// items. No items gives nil.
func splitList(s string) []string {
	return cleanList(strings.Split(s, ","))
}

// cleanList trims spaces from items and drops the empty ones, in a new slice;
// no items gives nil.
func cleanList(items []string) []string {
	var out []string
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out
}

// numError explains why s is not what (e.g. "an integer").
func numError(s string, err error, what string) error {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("%s is out of range for %s", quote(s), what)
	}
	return fmt.Errorf("%s is not %s", quote(s), what)
}

// quote quotes a value for an error message, shortening a long one.
func quote(s string) string {
	const max = 100
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// suggest returns ` (did you mean "x"?)` for the candidate nearest to s, when
// one is close enough to be a likely typo, and "" otherwise.
func suggest(s string, candidates []string) string {
	best, bestDist := "", 3 // at most two edits away
	if len(s) > 200 {
		return ""
	}
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
