package configs

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jira-relay/jira-relay/internal/seal"
)

// Normalize puts c in the form Validate expects and the rest of the relay
// relies on: list items are trimmed and empty ones dropped (an empty list
// becomes nil), and allowed-upstreams and cors-origins are lower-cased, since
// host names and browser-sent origins compare case-insensitively. Load calls
// it; call it before Validate on a Config built in code.
func (c *Config) Normalize() {
	for _, o := range c.options() {
		if p, ok := o.ptr.(*[]string); ok {
			*p = cleanList(*p)
		}
	}
	for i, h := range c.AllowedUpstreams {
		c.AllowedUpstreams[i] = strings.ToLower(h)
	}
	for i, o := range c.CORSOrigins {
		c.CORSOrigins[i] = strings.ToLower(o)
	}
}

// Validate checks c once, at start-up, and returns nil or a *UsageError
// listing every problem, each naming its flag, such as
// `--listen: "abc" is not host:port`. It expects a normalized Config (see
// Normalize). The files c names (TLS, etcd and upstream CA, certificates and
// keys) must exist and be readable now; they are not parsed here.
func (c *Config) Validate() error {
	var v validator

	v.hostPort("listen", c.Listen)
	if c.AdminListen != "" {
		v.hostPort("admin-listen", c.AdminListen)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		v.add("log-level", "%s must be debug, info, warn or error", quote(c.LogLevel))
	}
	if c.ErrorReportTTL < 10*time.Second {
		v.add("error-report-ttl", "must be at least 10s (an etcd lease)")
	}
	if r := c.MappingRetention; r != 0 && (r < time.Second || r > 3650*24*time.Hour) {
		v.add("mapping-retention", "must be 0 (keep) or from 1s to 87600h (ten years)")
	}
	if c.TenantMaxMappings < 0 {
		v.add("tenant-max-mappings", "must be 0 (no quota) or more")
	}
	if c.TenantMaxUsers < 0 {
		v.add("tenant-max-users", "must be 0 (no quota) or more")
	}
	seen := map[string]bool{}
	for _, raw := range c.EtcdShards {
		sh, err := ParseShard(raw)
		if err != nil {
			v.add("etcd-shards", "%s", err.Error())
			continue
		}
		if seen[sh.Name] {
			v.add("etcd-shards", "shard %q is given twice", sh.Name)
		}
		seen[sh.Name] = true
		for _, e := range sh.Endpoints {
			v.httpURL("etcd-shards", e)
		}
		v.readable("etcd-shards", sh.CA)
		v.readable("etcd-shards", sh.Cert)
		v.readable("etcd-shards", sh.Key)
		v.pair("etcd-shards", sh.Cert, "etcd-shards", sh.Key)
	}
	if c.EncryptionKeyFile != "" {
		if _, err := seal.Load(c.EncryptionKeyFile); err != nil {
			v.add("encryption-key-file", "%s", err.Error())
		}
	}
	if c.EtcdQuotaBytes < 16<<20 || c.EtcdQuotaBytes > 64<<30 {
		v.add("etcd-quota-bytes", "must be from 16777216 (16 MiB) to 68719476736 (64 GiB)")
	}
	if c.DataDir == "" {
		v.add("data-dir", "must not be empty")
	}

	for _, e := range c.EtcdEndpoints {
		v.httpURL("etcd-endpoints", e)
	}
	if c.EtcdPassword != "" && c.EtcdUsername == "" {
		v.add("etcd-password", "is set but --etcd-username is not")
	}
	v.pair("etcd-cert", c.EtcdCert, "etcd-key", c.EtcdKey)
	v.httpURL("etcd-listen", c.EtcdListen)
	v.httpURL("etcd-peer-listen", c.EtcdPeerListen)
	switch p := c.EtcdPrefix; {
	case !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/"):
		v.add("etcd-prefix", "%s must start and end with \"/\"", quote(p))
	case !utf8.ValidString(p):
		v.add("etcd-prefix", "%s is not valid UTF-8", quote(p))
	case strings.ContainsFunc(p, unicode.IsControl):
		v.add("etcd-prefix", "%s must not contain control characters", quote(p))
	}

	if len(c.AllowedUpstreams) == 0 {
		v.add("allowed-upstreams", "must name at least one host, or no instance can be registered")
	}
	for _, h := range c.AllowedUpstreams {
		v.upstreamPattern(h)
	}
	v.pair("tls-cert", c.TLSCert, "tls-key", c.TLSKey)

	for _, o := range c.CORSOrigins {
		v.origin(o)
	}
	if c.MaxAttachmentBytes <= 0 {
		v.add("max-attachment-bytes", "must be more than 0, not %d", c.MaxAttachmentBytes)
	}
	v.rate("instance-rps", c.InstanceRPS)
	v.atLeastOne("instance-burst", int64(c.InstanceBurst))
	v.rate("ip-rps", c.IPRPS)
	v.atLeastOne("ip-burst", int64(c.IPBurst))
	v.rate("registration-rps", c.RegistrationRPS)
	v.atLeastOne("registration-burst", int64(c.RegistrationBurst))
	v.atLeastOne("instance-max-streams", int64(c.InstanceMaxStreams))
	if c.MaxCooldown > 0 && (c.MaxCooldown < time.Second || c.MaxCooldown > 24*time.Hour) {
		v.add("max-cooldown", "must be from 1s to 24h, not %s", formatDuration(c.MaxCooldown))
	}
	if c.FleetTTL > 0 && (c.FleetTTL < 2*time.Second || c.FleetTTL > 5*time.Minute) {
		v.add("fleet-ttl", "must be from 2s (etcd's shortest lease) to 5m, not %s", formatDuration(c.FleetTTL))
	}
	if c.RelayID != "" && !ValidRelayID(c.RelayID) {
		v.add("relay-id", "%s must be 1 to 64 characters of A-Z a-z 0-9 . _ -", quote(c.RelayID))
	}
	if _, err := c.TrustedProxyNets(); err != nil {
		var ue *UsageError
		if errors.As(err, &ue) {
			v.problems = append(v.problems, ue.Problems...)
		}
	}
	v.atLeastOne("breaker-failures", int64(c.BreakerFailures))
	v.atLeastOne("breaker-half-open-requests", int64(c.BreakerHalfOpenRequests))
	v.atLeastOne("upstream-max-conns", int64(c.UpstreamMaxConns))

	// Every duration, so that a new one is checked too (but
	// mapping-retention, where 0 means keep, checked above).
	for _, o := range c.options() {
		if d, ok := o.ptr.(*time.Duration); ok && *d <= 0 && o.name != "mapping-retention" {
			v.add(o.name, "must be more than 0, not %s", formatDuration(*d))
		}
	}

	// Files, last: they are the only checks that look outside c.
	for _, f := range []struct{ name, path string }{
		{"etcd-ca", c.EtcdCA},
		{"etcd-cert", c.EtcdCert},
		{"etcd-key", c.EtcdKey},
		{"tls-cert", c.TLSCert},
		{"tls-key", c.TLSKey},
		{"upstream-ca", c.UpstreamCA},
	} {
		v.readable(f.name, f.path)
	}

	if len(v.problems) == 0 {
		return nil
	}
	return &UsageError{Problems: v.problems}
}

// TrustedProxyNets parses TrustedProxies: a CIDR becomes its masked prefix, a
// bare IP a /32 (IPv4, also when written IPv4-mapped) or /128 (IPv6). The
// error lists every entry that is neither.
func (c Config) TrustedProxyNets() ([]netip.Prefix, error) {
	nets := make([]netip.Prefix, 0, len(c.TrustedProxies))
	var problems []error
	for _, s := range c.TrustedProxies {
		p, err := parseProxy(s)
		if err != nil {
			problems = append(problems, fmt.Errorf("--trusted-proxies: %s is not an IP address or CIDR: %w", quote(s), err))
			continue
		}
		nets = append(nets, p)
	}
	if len(problems) > 0 {
		return nil, &UsageError{Problems: problems}
	}
	return nets, nil
}

// parseProxy parses one trusted-proxies entry.
func parseProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, stripParse(err)
		}
		return p.Masked(), nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, stripParse(err)
	}
	if ip.Zone() != "" {
		return netip.Prefix{}, errors.New("zones are not allowed")
	}
	ip = ip.Unmap()
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

// stripParse drops the repeated input from a netip parse error, keeping the
// reason.
func stripParse(err error) error {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		return errors.New(msg[i+3:])
	}
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return errors.New(msg[i+2:])
	}
	return err
}

// validator collects the problems Validate finds.
type validator struct {
	problems []error
}

// add reports a problem with the flag name.
func (v *validator) add(name, format string, args ...any) {
	v.problems = append(v.problems, fmt.Errorf("--%s: %s", name, fmt.Sprintf(format, args...)))
}

// hostPort checks a listen address: host:port with a numeric port.
func (v *validator) hostPort(name, s string) {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		v.add(name, "%s is not host:port", quote(s))
		return
	}
	if !validPort(port) {
		v.add(name, "%s: the port must be a number from 0 to 65535", quote(s))
	}
}

// validPort reports whether port is a number from 0 to 65535.
func validPort(port string) bool {
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n <= math.MaxUint16
}

// httpURL checks an etcd URL: http or https, a host, an optional numeric
// port, and nothing else (no credentials, path, query or fragment).
func (v *validator) httpURL(name, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		v.add(name, "%s is not an http:// or https:// URL with a host", quote(s))
		return
	}
	switch {
	case u.User != nil:
		v.add(name, "%s must not hold credentials (use --etcd-username and --etcd-password)", quote(u.Redacted()))
	case u.Port() != "" && !validPort(u.Port()):
		v.add(name, "%s: the port must be a number from 0 to 65535", quote(s))
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		v.add(name, "%s must be scheme://host[:port] without a path, query or fragment", quote(s))
	}
}

// pair checks that both or neither of two files are set.
func (v *validator) pair(aName, a, bName, b string) {
	switch {
	case a != "" && b == "":
		v.add(bName, "must be set with --%s", aName)
	case a == "" && b != "":
		v.add(aName, "must be set with --%s", bName)
	}
}

// upstreamPattern checks one allowed-upstreams entry: a lower-case host name,
// optionally starting with "*." and then at least two labels, or an IP address.
func (v *validator) upstreamPattern(s string) {
	const name = "allowed-upstreams"
	host, wildcard := strings.CutPrefix(s, "*.")
	switch {
	case s != strings.ToLower(s):
		v.add(name, "%s is not lower case (Normalize lower-cases it)", quote(s))
	case !wildcard && isIP(host):
	case !isHostname(host):
		v.add(name, "%s is not a host name, \"*.\" and a host name, or an IP address", quote(s))
	case wildcard && !strings.Contains(host, "."):
		v.add(name, "%s would allow every host of a top-level domain", quote(s))
	}
}

// origin checks one cors-origins entry: lower-case scheme://host[:port] with
// scheme http or https and nothing after the port, exactly as a browser sends
// it in Origin.
func (v *validator) origin(s string) {
	const name = "cors-origins"
	if s == "*" {
		v.add(name, "\"*\" is not allowed; list the origins")
		return
	}
	u, err := url.Parse(s)
	bad := err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.Opaque != "" ||
		u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.String() != s
	switch {
	case bad:
		v.add(name, "%s is not an origin: scheme://host[:port] without a path, not even \"/\"", quote(s))
	case !isHostname(u.Hostname()) && !isIP(u.Hostname()):
		v.add(name, "%s: %s is not a host name or IP address (no wildcards)", quote(s), quote(u.Hostname()))
	case u.Port() != "" && !validPort(u.Port()):
		v.add(name, "%s: the port must be a number from 0 to 65535", quote(s))
	case s != strings.ToLower(s):
		v.add(name, "%s is not lower case (Normalize lower-cases it)", quote(s))
	}
}

// rate checks a requests-per-second limit.
func (v *validator) rate(name string, r float64) {
	if !(r > 0) || math.IsInf(r, 0) {
		v.add(name, "must be a finite number more than 0, not %s", strconv.FormatFloat(r, 'g', -1, 64))
	}
}

// atLeastOne checks a count that must be 1 or more.
func (v *validator) atLeastOne(name string, n int64) {
	if n < 1 {
		v.add(name, "must be at least 1, not %d", n)
	}
}

// readable checks that path, when set, is a regular file this process can open.
func (v *validator) readable(name, path string) {
	if path == "" {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		v.problems = append(v.problems, fmt.Errorf("--%s: %w", name, err))
		return
	}
	if !fi.Mode().IsRegular() {
		v.add(name, "%s is not a regular file", quote(path))
		return
	}
	f, err := os.Open(path)
	if err != nil {
		v.problems = append(v.problems, fmt.Errorf("--%s: %w", name, err))
		return
	}
	f.Close()
}

// isIP reports whether s is an IP address without a zone.
func isIP(s string) bool {
	ip, err := netip.ParseAddr(s)
	return err == nil && ip.Zone() == ""
}

// isHostname reports whether s is a DNS host name: dot-separated labels of
// letters, digits and inner hyphens, each 1 to 63 bytes, 253 bytes in all, the
// last not all digits (so that no IPv4 address or part of one passes).
func isHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	if last := s[strings.LastIndexByte(s, '.')+1:]; strings.Trim(last, "0123456789") == "" {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-') {
				return false
			}
		}
	}
	return true
}

// ValidRelayID reports whether id may name a relay in the fleet: 1 to 64
// characters of A-Z, a-z, 0-9, ".", "_" and "-".
func ValidRelayID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
