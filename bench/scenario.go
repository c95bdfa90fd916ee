package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Scenario is a named preset of the load's parameters; flags given
// explicitly override it.
type Scenario struct {
	Name        string
	Doc         string // one line for -h
	Mix         string
	Sizes       string
	Duration    time.Duration
	Concurrency int
	Rate        float64
	Count       int64
	Compare     string
	Rounds      int
	Timeout     time.Duration
	// Readers is the concurrent lookups of the capacity scenario.
	Readers int
	// Relays and Trials are the fleet scenario's relays and propagation
	// trials per kind.
	Relays int
	Trials int
}

// Scenarios are the presets, the first being the default.
var Scenarios = []Scenario{
	{Name: "addin-mix", Doc: "the add-in's traffic: uploads (most 20 KiB–2 MiB, some 10–25 MiB), config 304s, mapping writes and lookups",
		Mix: "upload:20,config:40,map-write:20,map-read:20", Sizes: "20KiB-2MiB:90,10MiB-25MiB:10",
		Duration: 10 * time.Second, Concurrency: 16, Rounds: 1, Timeout: 2 * time.Minute},
	{Name: "upload-64mib", Doc: "64 MiB uploads, 4 at a time, relay vs direct in 3 interleaved rounds (target: relay ≥ 0.9 × direct)",
		Mix: "upload:1", Sizes: "64MiB", Duration: 10 * time.Second, Concurrency: 4, Compare: "direct", Rounds: 3, Timeout: 2 * time.Minute},
	{Name: "upload-64mib-x32", Doc: "64 MiB uploads, 32 at a time: the relay's peak RSS (target: within 64 MiB of idle)",
		Mix: "upload:1", Sizes: "64MiB", Duration: 15 * time.Second, Concurrency: 32, Rounds: 1, Timeout: 5 * time.Minute},
	{Name: "upload-1gib", Doc: "1 GiB uploads one at a time, 4 in a row: the relay's peak RSS (target: within 64 MiB of idle)",
		Mix: "upload:1", Sizes: "1GiB", Duration: 5 * time.Minute, Concurrency: 1, Count: 4, Rounds: 1, Timeout: 5 * time.Minute},
	{Name: "small-uploads", Doc: "1 KiB uploads at 1,000 req/s, relay vs direct in 3 rounds (target: relay adds ≤ 0.3 ms at p50)",
		Mix: "upload:1", Sizes: "1KiB", Duration: 10 * time.Second, Concurrency: 32, Rate: 1000, Compare: "direct", Rounds: 3, Timeout: 30 * time.Second},
	{Name: "config-304", Doc: "config reads with If-None-Match, open loop (target: ≥ 50,000 req/s, p99 ≤ 5 ms)",
		Mix: "config:1", Sizes: "1KiB", Duration: 10 * time.Second, Concurrency: 32, Rounds: 1, Timeout: 30 * time.Second},
	{Name: "map-writes", Doc: "mapping writes (POST /mappings), open loop (target: ≥ 2,000/s)",
		Mix: "map-write:1", Sizes: "1KiB", Duration: 10 * time.Second, Concurrency: 64, Rounds: 1, Timeout: 30 * time.Second},
	{Name: "map-reads", Doc: "mapping lookups by conversation, open loop (target: ≥ 10,000/s)",
		Mix: "map-read:1", Sizes: "1KiB", Duration: 10 * time.Second, Concurrency: 32, Rounds: 1, Timeout: 30 * time.Second},
	{Name: "mappings", Doc: "mapping writes and lookups together, 20:80",
		Mix: "map-write:20,map-read:80", Sizes: "1KiB", Duration: 10 * time.Second, Concurrency: 32, Rounds: 1, Timeout: 30 * time.Second},
	{Name: AnchorsScenario, Doc: "the data API against its floor, interleaved rounds: config 304s, relay vs nginx serving the same document as a static file (goal: ≥ 0.8 × nginx, p99 ≤ 5 ms); mapping writes and lookups, relay vs a bare etcd client loop doing the store's transactions on the relay's embedded etcd (goal: ≥ 0.7 × the floor)",
		Mix: "config:1,map-write:1,map-read:1", Sizes: "1KiB", Duration: 10 * time.Second, Rounds: 3, Timeout: 30 * time.Second},
	{Name: CapacityScenario, Doc: "etcd per mapping, old key layout vs current, on embedded etcd members of its own, no relay (targets: ≤ 1,200 B in use, ≥ 2,000 writes/s, ≥ 10,000 lookups/s)",
		Duration: 10 * time.Second, Concurrency: 64, Readers: 32, Count: 5000, Rounds: 1},
	{Name: FleetScenario, Doc: "N relays on one etcd: one tenant's open-loop load against the fleet-wide limit (target: admitted within ±20 % of burst + rps × t), and p50/p99 propagation of a Jira cool-down, a configuration change, a key rotation, a new and an erased tenant to the other relays",
		Duration: 5 * time.Second, Concurrency: 16, Relays: 3, Trials: 50, Rounds: 1},
}

// FindScenario looks a preset up by name.
func FindScenario(name string) (Scenario, error) {
	var names []string
	for _, s := range Scenarios {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Scenario{}, fmt.Errorf("unknown scenario %q (want one of %s)", name, strings.Join(names, ", "))
}

// WriteScenarios lists the presets for -h.
func WriteScenarios(w io.Writer) {
	for _, s := range Scenarios {
		fmt.Fprintf(w, "  %-17s %s\n", s.Name, s.Doc)
		if s.Name == CapacityScenario {
			fmt.Fprintf(w, "  %-17s   = --count %d (mappings per layout) --concurrency %d (writers) --readers %d --duration %s (lookups per layout)\n",
				"", s.Count, s.Concurrency, s.Readers, s.Duration)
			continue
		}
		if s.Name == AnchorsScenario {
			fmt.Fprintf(w, "  %-17s   = --anchors %s --duration %s --rounds %d (without nginx, the 304 row is the relay's alone)\n",
				"", DefaultAnchors, s.Duration, s.Rounds)
			continue
		}
		if s.Name == FleetScenario {
			fmt.Fprintf(w, "  %-17s   = --relays %d --instance-rps %d --instance-burst %d --rate %d (10 × rps) --duration %s --concurrency %d --trials %d\n",
				"", s.Relays, DefaultFleetRPS, DefaultFleetBurst, 10*DefaultFleetRPS, s.Duration, s.Concurrency, s.Trials)
			continue
		}
		line := fmt.Sprintf("--mix %s --sizes %s --duration %s --concurrency %d", s.Mix, s.Sizes, s.Duration, s.Concurrency)
		if s.Rate > 0 {
			line += fmt.Sprintf(" --rate %g", s.Rate)
		}
		if s.Count > 0 {
			line += fmt.Sprintf(" --count %d", s.Count)
		}
		if s.Compare != "" {
			line += fmt.Sprintf(" --compare %s --rounds %d", s.Compare, s.Rounds)
		}
		fmt.Fprintf(w, "  %-17s   = %s\n", "", line)
	}
}

// Config is one run of the harness.
type Config struct {
	Scenario string

	// Target is the URL of a running relay; "" starts a relay and a fake
	// Jira on loopback.
	Target      string
	InstanceID  string // with Target: the tenant to play
	ClientKey   string
	AdminKey    string // optional: lets the run PUT a configuration
	JiraURL     string // with Target and Compare "direct": the Jira the tenant points at
	RelayPid    int    // with Target: sample this process's RSS and CPU
	CAFile      string // PEM trusted for an https Target or JiraURL
	AllowRemote bool   // send load to a non-loopback Target

	Mix            Mix
	Sizes          SizeMix
	Duration       time.Duration
	Warmup         time.Duration
	Concurrency    int
	Rate           float64
	Count          int64
	Compare        string // "" or "direct"
	Rounds         int
	TLS            bool   // the fake Jira serves HTTPS; the relay trusts its CA
	TLSFront       bool   // with TLS: the relay's front door serves HTTPS too, a test CA made for the run trusted on every path (tls-both)
	UploadBody     string // "raw" or "multipart"
	Users          int
	Conversations  int
	RequestTimeout time.Duration

	// Relays is how many relays to start on one etcd (relay 1 embeds it,
	// the others use it, one --etcd-prefix): a fleet acting as one service.
	// Load generator workers are pinned round-robin to the relays. 0 or 1:
	// one relay.
	Relays int

	// instanceRPS and instanceBurst, when instanceRPS > 0, are the relays'
	// fleet-wide tenant limit instead of a wide open one (fleet scenario).
	instanceRPS   float64
	instanceBurst int

	RelayFlags  []string // appended to the relay's command line
	Src         string   // module root to build cmd/relay and cmd/fakejira from
	RelayBin    string   // prebuilt binaries (skip the build)
	FakeJiraBin string

	// ProfileDir, when set, receives a CPU profile of the relay (from its
	// --admin-listen /debug/pprof) for every phase against it.
	ProfileDir string

	// Anchors, in the anchors scenario (RunAnchors), are the operations
	// and concurrencies compared with their references.
	Anchors []Anchor

	PeersDir   string   // peers mode: directory of the proxies' config templates
	Peers      []string // peers mode: which proxies (nginx, haproxy, caddy)
	PeersModes []string // peers mode: plain, tls-upstream, tls-both (one after the other); none: plain

	// certs, in the peers comparison's TLS modes: StartStack's fake Jira
	// serves HTTPS with this certificate (with its tls argument) instead of
	// one of its own, and with frontTLS the relay's front door serves it too.
	certs    *TestCerts
	frontTLS bool

	Command string    // the command line, for the report
	Log     io.Writer // progress and notes (stderr)
	TTY     bool      // Log is a terminal
}
