// Package configs holds the relay's one configuration struct, its defaults,
// its validation, and the loader that fills it from flags, environment
// variables (RELAY_<FLAG_IN_UPPER_SNAKE>) and a YAML file, in that order of
// precedence: flag > env > file > default. relay.yaml beside this file lists
// every key with its default.
//
// Load is the one entry point: it layers the sources, normalizes, validates,
// and reports every problem at once as a *UsageError.
package configs

import "time"

// Config is every setting of the relay binary. Each field is a flag
// (--<yaml key>), an environment variable RELAY_<KEY_IN_UPPER_SNAKE>, and a key
// in the YAML file named by --config.
type Config struct {
	// Listen is the front door's address. Default ":8080".
	Listen string `yaml:"listen"`
	// DataDir holds the embedded etcd's data. Default "./data".
	DataDir string `yaml:"data-dir"`
	// DrainTimeout bounds how long in-flight requests may finish after
	// SIGINT/SIGTERM. Default 30s.
	DrainTimeout time.Duration `yaml:"drain-timeout"`

	// EtcdEndpoints are an existing cluster's client URLs; empty starts the
	// embedded single-node etcd. Default empty.
	EtcdEndpoints []string `yaml:"etcd-endpoints"`
	// EtcdUsername authenticates to an existing cluster. Default empty.
	EtcdUsername string `yaml:"etcd-username"`
	// EtcdPassword goes with EtcdUsername. Default empty.
	EtcdPassword string `yaml:"etcd-password"`
	// EtcdCA is a PEM file of CAs that sign the cluster's certificates. Default empty.
	EtcdCA string `yaml:"etcd-ca"`
	// EtcdCert is the client certificate (PEM) for mutual TLS. Default empty.
	EtcdCert string `yaml:"etcd-cert"`
	// EtcdKey is the client certificate's key (PEM). Default empty.
	EtcdKey string `yaml:"etcd-key"`
	// EtcdListen is the embedded etcd's client URL. Default "http://127.0.0.1:2379".
	EtcdListen string `yaml:"etcd-listen"`
	// EtcdPeerListen is the embedded etcd's peer URL. Default "http://127.0.0.1:2380".
	EtcdPeerListen string `yaml:"etcd-peer-listen"`
	// EtcdPrefix is where every key of the relay lives; it ends in "/". Default "/jira-relay/".
	EtcdPrefix string `yaml:"etcd-prefix"`
	// EtcdDialTimeout bounds connecting to etcd. Default 5s.
	EtcdDialTimeout time.Duration `yaml:"etcd-dial-timeout"`
	// EtcdRequestTimeout bounds one store operation. Default 5s.
	EtcdRequestTimeout time.Duration `yaml:"etcd-request-timeout"`

	// AllowedUpstreams are host patterns ("*.atlassian.net" matches one or
	// more labels before ".atlassian.net") an instance URL may name.
	// Default ["*.atlassian.net", "api.atlassian.com"].
	AllowedUpstreams []string `yaml:"allowed-upstreams"`
	// AllowHTTPUpstream lets an instance URL be plain http (tests, local
	// fakes). Default false.
	AllowHTTPUpstream bool `yaml:"allow-http-upstream"`
	// RegistrationToken, when set, must be sent as X-Registration-Token to
	// register an instance. Default empty (open registration).
	RegistrationToken string `yaml:"registration-token"`
	// TLSCert (with TLSKey) makes the front door serve HTTPS; a changed file
	// is picked up without a restart. Default empty (plain HTTP).
	TLSCert string `yaml:"tls-cert"`
	// TLSKey is the key of TLSCert. Default empty.
	TLSKey string `yaml:"tls-key"`

	// CORSOrigins are the origins whose browsers may call the relay.
	// Default: the Outlook on the web origins.
	CORSOrigins []string `yaml:"cors-origins"`
	// MaxAttachmentBytes is the largest attachment relayed. Default 1073741824 (1 GiB).
	MaxAttachmentBytes int64 `yaml:"max-attachment-bytes"`
	// InstanceRPS (with InstanceBurst) limits requests per instance, for
	// the whole fleet: each relay enforces its share (the limit divided by
	// the relays in --etcd-prefix's fleet). Default 100.
	InstanceRPS float64 `yaml:"instance-rps"`
	// InstanceBurst is the per-instance burst, for the whole fleet. Default 200.
	InstanceBurst int `yaml:"instance-burst"`
	// IPRPS (with IPBurst) limits requests per client IP. Default 50.
	IPRPS float64 `yaml:"ip-rps"`
	// IPBurst is the per-IP burst. Default 100.
	IPBurst int `yaml:"ip-burst"`
	// RegistrationRPS (with RegistrationBurst) limits POST /v1/instances per
	// client IP: each registration writes to etcd before anyone holds a
	// key. Default 0.1 (six a minute).
	RegistrationRPS float64 `yaml:"registration-rps"`
	// RegistrationBurst is the per-IP registration burst. Default 5.
	RegistrationBurst int `yaml:"registration-burst"`
	// InstanceMaxStreams caps concurrent attachment streams per instance,
	// for the whole fleet (each relay takes its share, at least 1). Default 32.
	InstanceMaxStreams int `yaml:"instance-max-streams"`
	// MaxCooldown caps how long the relay holds requests back after Jira's
	// 429 (Retry-After or backoff). Default 1h.
	MaxCooldown time.Duration `yaml:"max-cooldown"`
	// FleetTTL is the lease of this relay's member key: a relay that stops
	// without leaving is dropped from the fleet (and the others' shares
	// grow) within it. Default 10s.
	FleetTTL time.Duration `yaml:"fleet-ttl"`
	// RelayID names this relay in the fleet (its member key): 1 to 64 of
	// A-Z a-z 0-9 . _ -, unique among the relays. Default: the host name
	// and a random suffix, new at every start.
	RelayID string `yaml:"relay-id"`
	// TrustedProxies are IPs or CIDRs whose X-Forwarded-For is believed
	// (TrustedProxyNets parses them). Default empty.
	TrustedProxies []string `yaml:"trusted-proxies"`
	// BreakerFailures consecutive upstream failures open an instance's breaker. Default 5.
	BreakerFailures uint32 `yaml:"breaker-failures"`
	// BreakerOpenTimeout is how long a breaker stays open before half-open probes. Default 30s.
	BreakerOpenTimeout time.Duration `yaml:"breaker-open-timeout"`
	// BreakerHalfOpenRequests are the probes allowed while half-open. Default 1.
	BreakerHalfOpenRequests uint32 `yaml:"breaker-half-open-requests"`
	// HeaderReadTimeout bounds reading a request's headers. Default 10s.
	HeaderReadTimeout time.Duration `yaml:"header-read-timeout"`
	// IdleTimeout closes idle keep-alive connections. Default 60s.
	IdleTimeout time.Duration `yaml:"idle-timeout"`
	// StreamIdleTimeout aborts a stream when no byte moves for this long. Default 30s.
	StreamIdleTimeout time.Duration `yaml:"stream-idle-timeout"`
	// UpstreamDialTimeout bounds connecting to Jira. Default 10s.
	UpstreamDialTimeout time.Duration `yaml:"upstream-dial-timeout"`
	// UpstreamResponseTimeout bounds waiting for Jira's answer after the body is sent. Default 60s.
	UpstreamResponseTimeout time.Duration `yaml:"upstream-response-timeout"`
	// UpstreamMaxConns bounds pooled connections per Jira host. Default 64.
	UpstreamMaxConns int `yaml:"upstream-max-conns"`
	// UpstreamCA is a PEM bundle trusted for Jira besides the system roots. Default empty.
	UpstreamCA string `yaml:"upstream-ca"`

	// AdminListen serves /metrics, /debug/pprof, /healthz and /readyz, never
	// on the public port. Default "127.0.0.1:9090"; empty turns it off.
	AdminListen string `yaml:"admin-listen"`
	// LogLevel is debug, info, warn or error. Default "info".
	LogLevel string `yaml:"log-level"`
	// ErrorReportTTL is how long an add-in error report is kept (an etcd
	// lease). Default 720h (30 days).
	ErrorReportTTL time.Duration `yaml:"error-report-ttl"`

	// MappingRetention is how long a mapping lives after it was last linked
	// (an etcd lease shared by the mappings that expire on the same day); a
	// tenant's admin may set its own. Default 0: kept until unlinked.
	MappingRetention time.Duration `yaml:"mapping-retention"`
	// TenantMaxMappings is the most mappings one tenant may hold; past it its
	// links get 507 tenant_quota_exceeded. 0 is no quota. Default 1000000.
	TenantMaxMappings int64 `yaml:"tenant-max-mappings"`
	// TenantMaxUsers is the most users one tenant may hold. 0 is no quota.
	// Default 100000.
	TenantMaxUsers int64 `yaml:"tenant-max-users"`
	// EtcdShards are etcd clusters that hold tenants' data (users,
	// mappings, error reports), each NAME=URL[|URL…][;ca=FILE][;cert=FILE]
	// [;key=FILE] or, in the YAML file, a mapping (name, endpoints, ca,
	// cert, key): see Shard. The cluster of --etcd-endpoints (or the
	// embedded one) stays the directory; a new tenant goes to the shard
	// with the most free room. Default empty: everything on one cluster.
	EtcdShards []string `yaml:"etcd-shards"`
	// EncryptionKeyFile names a file of named 32-byte keys (YAML or JSON,
	// readable by its owner and group only): the first seals new values of
	// users, mappings, configurations and error reports in etcd, every one
	// opens. Default empty: values are stored as plaintext.
	EncryptionKeyFile string `yaml:"encryption-key-file"`
	// EtcdQuotaBytes is the embedded etcd's database quota: past it etcd
	// refuses writes (NOSPACE) and the relay answers 507 store_full. Default
	// 2147483648 (2 GiB, etcd's own); etcd advises at most 8 GiB.
	EtcdQuotaBytes int64 `yaml:"etcd-quota-bytes"`
}

// Defaults returns the configuration the relay runs with when nothing is set:
// the defaults documented on each field of Config. Empty lists are nil. Every
// call returns fresh slices, so the caller may modify the result.
func Defaults() Config {
	return Config{
		Listen:       ":8080",
		DataDir:      "./data",
		DrainTimeout: 30 * time.Second,

		EtcdListen:         "http://127.0.0.1:2379",
		EtcdPeerListen:     "http://127.0.0.1:2380",
		EtcdPrefix:         "/jira-relay/",
		EtcdDialTimeout:    5 * time.Second,
		EtcdRequestTimeout: 5 * time.Second,

		AllowedUpstreams: []string{"*.atlassian.net", "api.atlassian.com"},

		// The origins Outlook on the web runs in.
		CORSOrigins: []string{
			"https://outlook.office.com",
			"https://outlook.office365.com",
			"https://outlook.live.com",
			"https://outlook.cloud.microsoft",
		},
		MaxAttachmentBytes:      1 << 30,
		InstanceRPS:             100,
		InstanceBurst:           200,
		IPRPS:                   50,
		IPBurst:                 100,
		RegistrationRPS:         0.1,
		RegistrationBurst:       5,
		InstanceMaxStreams:      32,
		MaxCooldown:             time.Hour,
		FleetTTL:                10 * time.Second,
		BreakerFailures:         5,
		BreakerOpenTimeout:      30 * time.Second,
		BreakerHalfOpenRequests: 1,
		HeaderReadTimeout:       10 * time.Second,
		IdleTimeout:             60 * time.Second,
		StreamIdleTimeout:       30 * time.Second,
		UpstreamDialTimeout:     10 * time.Second,
		UpstreamResponseTimeout: 60 * time.Second,
		UpstreamMaxConns:        64,

		AdminListen:    "127.0.0.1:9090",
		LogLevel:       "info",
		ErrorReportTTL: 30 * 24 * time.Hour,

		TenantMaxMappings: 1_000_000,
		TenantMaxUsers:    100_000,
		EtcdQuotaBytes:    2 << 30,
	}
}
