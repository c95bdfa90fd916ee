// Command bench is jira-relay's load-test harness.
//
// With no flags it builds and starts, on loopback, the relay (embedded etcd,
// temp data dir, limiter opened wide) and the fake Jira as subprocesses,
// registers a tenant with users, a configuration and mappings through the
// relay's API, plays the add-in's traffic for 10 s, prints a table, and
// cleans up every process and temp dir, also on Ctrl-C.
//
//	go run ./cmd/bench                                  # the add-in mix, self-contained
//	go run ./cmd/bench --scenario upload-64mib          # a preset (see -h)
//	go run ./cmd/bench --scenario small-uploads --tls --tls-front   # TLS on every hop (tls-both)
//	go run ./cmd/bench --scenario capacity              # etcd per mapping, old key layout vs current (no relay)
//	go run ./cmd/bench --scenario anchors               # config 304s vs nginx, mapping writes and lookups vs a bare etcd loop
//	go run ./cmd/bench --relays 3                       # the mix over 3 relays on one etcd
//	go run ./cmd/bench --scenario fleet --relays 3      # the fleet-wide limit and propagation delays
//	go run ./cmd/bench --target http://127.0.0.1:8080 --instance-id ID --client-key KEY
//	bench/peers/run.sh                                  # relay vs nginx, HAProxy and Caddy
//	go run ./cmd/bench --peers bench/peers --peers-mode all   # the same in plain, tls-upstream and tls-both
//
// Run `go run ./cmd/bench -h` for every flag and the scenarios. The library
// is package bench at the repository root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/jira-relay/jira-relay/bench"
)

// Exit codes.
const (
	exitOK          = 0
	exitFail        = 1
	exitUsage       = 2
	exitErrors      = 3 // the run completed but some requests failed
	exitInterrupted = 130
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, bench.IsTerminal(os.Stderr))
	stop()
	os.Exit(code)
}

const usageHead = `Usage: bench [flags]

Load-tests jira-relay. Without --target it builds ./cmd/relay and ./cmd/fakejira,
starts both on loopback (random ports, embedded etcd in a temp dir, --allow-http-upstream,
limiter opened wide), registers a tenant, its users, a configuration and seed mappings
through the relay's API, plays the load, prints a table per operation (req/s, MiB/s,
latency p50/p90/p99/max, errors by status) and the relay's peak RSS and CPU seconds,
and removes every process and temp dir it made, also on Ctrl-C. Every run is bounded by
--duration (and --count); load goes to loopback only.

Latency is measured from the moment a request was due: with --rate, a relay that falls
behind shows its queueing delay. Uploads count file bytes in MiB/s; the other operations
count request plus response bodies. Exit status: 0 ok, 1 failure, 2 bad flags,
3 some requests failed, 130 interrupted.

Scenarios (--scenario; flags given explicitly override the preset):
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer, tty bool) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scenario := fs.String("scenario", bench.Scenarios[0].Name, "preset of the flags below (see the list above)")
	duration := fs.Duration("duration", 0, "how long each phase issues requests (in-flight ones then finish)")
	concurrency := fs.Int("concurrency", 0, "concurrent requests (workers, each with its own connection)")
	rate := fs.Float64("rate", 0, "global requests per second; 0 = open loop, as fast as the workers go")
	count := fs.Int64("count", 0, "stop each phase after this many requests; 0 = only --duration bounds it")
	sizes := fs.String("sizes", "", `upload size mix: bands "MIN-MAX:WEIGHT" or "SIZE:WEIGHT", e.g. "20KiB-2MiB:90,10MiB-25MiB:10"`)
	mix := fs.String("mix", "", `operation mix, e.g. "upload:20,config:40,map-write:20,map-read:20"`)
	compare := fs.String("compare", "", `"direct": also send the upload load straight at the fake Jira and print relay/direct; "none": don't`)
	rounds := fs.Int("rounds", 0, "phases per target, interleaved (medians on a noisy machine)")
	warmup := fs.Duration("warmup", time.Second, "unmeasured load against each target first; 0 = none")
	useTLS := fs.Bool("tls", false, "the fake Jira serves HTTPS (fakejira --tls --ca-out) and the relay trusts it via --upstream-ca")
	tlsFront := fs.Bool("tls-front", false, "with --tls: the relay's front door serves HTTPS too (--tls-cert/--tls-key from a test CA made for the run, "+
		"which the fake Jira's certificate also chains to): TLS on every hop, relay and direct (tls-both)")
	uploadBody := fs.String("upload-body", "raw", `how uploads reach the relay: "raw" (file body, ?filename=) or "multipart"`)
	users := fs.Int("users", 50, "users registered (PUT users/{id}) and used by mapping writes")
	convs := fs.Int("conversations", 256, "conversations seeded with two mappings each, for lookups")
	timeout := fs.Duration("request-timeout", 0, "bound on one request")
	jsonOut := fs.String("json", "", "write the results as JSON to FILE")
	htmlOut := fs.String("html", "", "write one self-contained HTML page (charts, tables) to FILE")
	target := fs.String("target", "", "URL of a running relay to drive instead of starting one")
	instanceID := fs.String("instance-id", "", "with --target: the instance to play")
	clientKey := fs.String("client-key", "", "with --target: the instance's client key")
	adminKey := fs.String("admin-key", "", "with --target: the admin key (optional: PUTs a configuration)")
	jiraURL := fs.String("jira-url", "", "with --target and --compare direct: the Jira the instance points at")
	relayPid := fs.Int("relay-pid", 0, "with --target: sample this process's RSS and CPU")
	caFile := fs.String("ca", "", "PEM file trusted for an https --target or --jira-url")
	allowRemote := fs.Bool("allow-remote", false, "allow a --target that is not on loopback")
	src := fs.String("src", "", "repository to build ./cmd/relay and ./cmd/fakejira from (default: found from the working dir)")
	relayBin := fs.String("relay-bin", "", "use this relay binary instead of building one")
	fakeBin := fs.String("fakejira-bin", "", "use this fakejira binary instead of building one")
	var relayFlags []string
	fs.Func("relay-flag", "extra flag for the relay the harness starts, e.g. --relay-flag=--log-level=warn (repeatable)", func(v string) error {
		if !strings.HasPrefix(v, "--") {
			return fmt.Errorf("%q is not a flag (want --name=value)", v)
		}
		relayFlags = append(relayFlags, v)
		return nil
	})
	profileDir := fs.String("profile", "", "write CPU profiles to DIR: the relay's per phase (via its --admin-listen) and the generator's")
	peersDir := fs.String("peers", "", "proxy comparison: directory of the proxies' config templates (bench/peers)")
	peerList := fs.String("peer-list", "nginx,haproxy,caddy", "with --peers: the proxies to compare")
	peersMode := fs.String("peers-mode", bench.PeersPlain, "with --peers: plain, tls-upstream (the fake Jira over HTTPS, verified by every path), "+
		"tls-both (every front door over HTTPS too), a comma list of them run one after the other, or all")
	readers := fs.Int("readers", 0, "with --scenario capacity: concurrent lookups (--concurrency is the writers, --count the mappings per layout)")
	relays := fs.Int("relays", 1, "relays to start on one etcd (relay 1 embeds it, the others use it, one --etcd-prefix): a fleet; workers are pinned to the relays round-robin (--scenario fleet: default 3)")
	trials := fs.Int("trials", 0, "with --scenario fleet: trials per kind of propagation (default 50)")
	instanceRPS := fs.Float64("instance-rps", 0, fmt.Sprintf("with --scenario fleet: every relay's --instance-rps, the fleet-wide tenant limit (default %d)", bench.DefaultFleetRPS))
	instanceBurst := fs.Int("instance-burst", 0, fmt.Sprintf("with --scenario fleet: every relay's --instance-burst (default %d)", bench.DefaultFleetBurst))
	anchors := fs.String("anchors", bench.DefaultAnchors, "with --scenario anchors: the anchors, a comma list of config, map-write, map-read, "+
		"each optionally =CONCURRENCY (one may come at several); without one, --concurrency or the preset's")
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead)
		bench.WriteScenarios(stderr)
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "bench: "+format+"\nrun 'bench -h' for the flags and scenarios\n", a...)
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usage("unexpected arguments %q", fs.Args())
	}
	sc, err := bench.FindScenario(*scenario)
	if err != nil {
		return usage("%v", err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *tlsFront && !*useTLS {
		return usage("--tls-front needs --tls (TLS on both hops)")
	}
	if sc.Name == bench.CapacityScenario {
		return runCapacity(ctx, set, capacityFlags{count: *count, concurrency: *concurrency, readers: *readers, duration: *duration,
			warmup: *warmup, users: *users, rounds: *rounds, jsonOut: *jsonOut, profileDir: *profileDir}, sc, args, stdout, stderr, usage)
	}
	if set["readers"] {
		return usage("--readers is for --scenario %s", bench.CapacityScenario)
	}
	if sc.Name == bench.FleetScenario {
		return runFleet(ctx, set, fleetFlags{relays: *relays, trials: *trials, instanceRPS: *instanceRPS, instanceBurst: *instanceBurst,
			rate: *rate, concurrency: *concurrency, duration: *duration, jsonOut: *jsonOut, src: *src, relayBin: *relayBin,
			fakeBin: *fakeBin, relayFlags: relayFlags}, sc, args, stdout, stderr, usage)
	}
	for _, name := range []string{"trials", "instance-rps", "instance-burst"} {
		if set[name] {
			return usage("--%s is for --scenario %s", name, bench.FleetScenario)
		}
	}
	if sc.Name == bench.AnchorsScenario {
		for _, name := range anchorsRejects {
			if set[name] {
				return usage("--scenario %s starts its own relay, nginx and etcd client loop and plays its own requests: --%s does not apply", bench.AnchorsScenario, name)
			}
		}
	} else if set["anchors"] {
		return usage("--anchors is for --scenario %s", bench.AnchorsScenario)
	}
	if *relays < 1 || *relays > bench.MaxRelays {
		return usage("--relays must be from 1 to %d", bench.MaxRelays)
	}
	if *relays > 1 && (*target != "" || *peersDir != "") {
		return usage("--relays starts a fleet of relays: it goes with neither --target nor --peers")
	}
	pick := func(name, flagVal, preset string) string {
		if set[name] {
			return flagVal
		}
		return preset
	}
	cfg := bench.Config{
		Scenario: sc.Name, Target: *target, InstanceID: *instanceID, ClientKey: *clientKey, AdminKey: *adminKey,
		JiraURL: *jiraURL, RelayPid: *relayPid, CAFile: *caFile, AllowRemote: *allowRemote,
		Duration: sc.Duration, Concurrency: sc.Concurrency, Rate: sc.Rate, Count: sc.Count, Rounds: sc.Rounds,
		Compare: sc.Compare, RequestTimeout: sc.Timeout, Warmup: *warmup, TLS: *useTLS, TLSFront: *tlsFront, UploadBody: *uploadBody,
		Users: *users, Conversations: *convs, Src: *src, RelayBin: *relayBin, FakeJiraBin: *fakeBin, RelayFlags: relayFlags, Relays: *relays,
		Command: "go run ./cmd/bench " + strings.Join(args, " "), Log: stderr, TTY: tty,
	}
	if set["duration"] {
		cfg.Duration = *duration
	}
	if set["concurrency"] {
		cfg.Concurrency = *concurrency
	}
	if set["rate"] {
		cfg.Rate = *rate
	}
	if set["count"] {
		cfg.Count = *count
	}
	if set["rounds"] {
		cfg.Rounds = *rounds
	}
	if set["request-timeout"] {
		cfg.RequestTimeout = *timeout
	}
	if c := pick("compare", *compare, sc.Compare); c == "none" {
		cfg.Compare = ""
	} else {
		cfg.Compare = c
	}
	if cfg.Sizes, err = bench.ParseSizes(pick("sizes", *sizes, sc.Sizes)); err != nil {
		return usage("--sizes: %v", err)
	}
	if cfg.Mix, err = bench.ParseMix(pick("mix", *mix, sc.Mix)); err != nil {
		return usage("--mix: %v", err)
	}
	if set["peers-mode"] && *peersDir == "" {
		return usage("--peers-mode is for --peers")
	}
	if *tlsFront && (*peersDir != "" || *target != "") {
		return usage("--tls-front starts the relay with a certificate of its own: not with --target, nor with --peers (use --peers-mode tls-both)")
	}
	if cfg.PeersModes, err = bench.ParsePeersModes(*peersMode); err != nil {
		return usage("--peers-mode: %v", err)
	}
	if sc.Name == bench.AnchorsScenario {
		conc := 0
		if set["concurrency"] {
			if *concurrency < 1 || *concurrency > 10000 {
				return usage("--concurrency must be from 1 to 10000")
			}
			conc = *concurrency
		}
		if cfg.Anchors, err = bench.ParseAnchors(*anchors, conc); err != nil {
			return usage("--anchors: %v", err)
		}
	}
	if *profileDir != "" {
		cfg.ProfileDir = *profileDir
		if *target != "" {
			return usage("--profile needs the self-contained mode (the relay's admin port is not known with --target)")
		}
		if err := os.MkdirAll(*profileDir, 0o755); err != nil {
			return usage("--profile: %v", err)
		}
		f, err := os.Create(filepath.Join(*profileDir, "generator.pprof"))
		if err != nil {
			return usage("--profile: %v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return usage("--profile: %v", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	var res *bench.Result
	if *peersDir != "" {
		cfg.PeersDir = *peersDir
		for _, p := range strings.Split(*peerList, ",") {
			if p = strings.TrimSpace(p); p != "" {
				cfg.Peers = append(cfg.Peers, p)
			}
		}
		cfg.Compare = ""
		res, err = bench.RunPeers(ctx, cfg)
	} else if sc.Name == bench.AnchorsScenario {
		res, err = bench.RunAnchors(ctx, cfg)
	} else {
		res, err = bench.Run(ctx, cfg)
	}
	if err != nil {
		return failed(ctx, stderr, err)
	}
	res.WriteTable(stdout)
	if *jsonOut != "" {
		if err := res.WriteJSON(*jsonOut); err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return exitFail
		}
	}
	if *htmlOut != "" {
		if err := res.WriteHTML(*htmlOut); err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return exitFail
		}
	}
	switch {
	case res.Interrupted:
		return exitInterrupted
	case res.Errors() > 0:
		return exitErrors
	}
	return exitOK
}

// capacityFlags are the flags the capacity scenario reads.
type capacityFlags struct {
	count                int64
	concurrency, readers int
	duration, warmup     time.Duration
	users, rounds        int
	jsonOut, profileDir  string
}

// capacityRejects are the flags of the relay's load that mean nothing to
// the capacity scenario, which runs etcd members of its own.
var capacityRejects = []string{"target", "instance-id", "client-key", "admin-key", "jira-url", "relay-pid", "ca", "allow-remote",
	"mix", "sizes", "rate", "compare", "tls", "tls-front", "upload-body", "conversations", "request-timeout", "html",
	"src", "relay-bin", "fakejira-bin", "relay-flag", "peers", "peer-list", "peers-mode", "relays", "trials", "instance-rps", "instance-burst"}

// runCapacity is --scenario capacity: the old and the current key layout
// on etcd members of their own, side by side.
func runCapacity(ctx context.Context, set map[string]bool, f capacityFlags, sc bench.Scenario, args []string,
	stdout, stderr io.Writer, usage func(string, ...any) int) int {
	for _, name := range capacityRejects {
		if set[name] {
			return usage("--scenario %s starts etcd members of its own (no relay, no Jira): --%s does not apply", bench.CapacityScenario, name)
		}
	}
	cfg := bench.CapacityConfig{N: int(sc.Count), Concurrency: sc.Concurrency, Readers: sc.Readers, Duration: sc.Duration,
		Warmup: f.warmup, Users: f.users, Command: "go run ./cmd/bench " + strings.Join(args, " "), Log: stderr}
	if set["rounds"] {
		if f.rounds < 1 || f.rounds > 50 {
			return usage("--rounds: with --scenario %s, the rounds of the plaintext and sealed pair, from 1 to 50", bench.CapacityScenario)
		}
		cfg.Rounds = f.rounds
	}
	if set["count"] {
		if f.count < 1 || f.count > 10_000_000 {
			return usage("--count: with --scenario %s, the mappings per layout, from 1 to 10000000", bench.CapacityScenario)
		}
		cfg.N = int(f.count)
	}
	if set["concurrency"] {
		if f.concurrency < 1 || f.concurrency > 10000 {
			return usage("--concurrency (the writers) must be from 1 to 10000")
		}
		cfg.Concurrency = f.concurrency
	}
	if set["readers"] {
		if f.readers < 1 || f.readers > 10000 {
			return usage("--readers must be from 1 to 10000")
		}
		cfg.Readers = f.readers
	}
	if set["warmup"] && f.warmup < 0 {
		return usage("--warmup must not be negative")
	}
	if set["users"] && f.users < 1 {
		return usage("--users must be 1 or more")
	}
	if set["duration"] {
		if f.duration <= 0 {
			return usage("--duration must be more than 0")
		}
		cfg.Duration = f.duration
	}
	if f.profileDir != "" {
		if err := os.MkdirAll(f.profileDir, 0o755); err != nil {
			return usage("--profile: %v", err)
		}
		pf, err := os.Create(filepath.Join(f.profileDir, "capacity.pprof"))
		if err != nil {
			return usage("--profile: %v", err)
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			pf.Close()
			return usage("--profile: %v", err)
		}
		defer func() { pprof.StopCPUProfile(); pf.Close() }()
	}
	rep, err := bench.RunCapacity(ctx, cfg)
	if err != nil {
		return failed(ctx, stderr, err)
	}
	if code := writeReport(rep, f.jsonOut, stdout, stderr); code != exitOK {
		return code
	}
	if rep.Errors() > 0 {
		return exitErrors
	}
	return exitOK
}

// failed reports a run that did not finish and returns its exit code: an
// interrupt, a flag the run refused (its error starts with "--"), or a
// failure.
func failed(ctx context.Context, stderr io.Writer, err error) int {
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "bench: interrupted")
		return exitInterrupted
	}
	fmt.Fprintf(stderr, "bench: %v\n", err)
	if strings.HasPrefix(err.Error(), "--") {
		return exitUsage
	}
	return exitFail
}

// writeReport prints a scenario's report as a table, and as JSON to
// jsonOut when given.
func writeReport(rep interface {
	WriteTable(io.Writer)
	WriteJSON(string) error
}, jsonOut string, stdout, stderr io.Writer) int {
	rep.WriteTable(stdout)
	if jsonOut != "" {
		if err := rep.WriteJSON(jsonOut); err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return exitFail
		}
	}
	return exitOK
}

// anchorsRejects are the flags that mean nothing to the anchors scenario:
// it starts its relay, nginx and etcd floor itself and plays its own
// requests, open loop, over plain HTTP.
var anchorsRejects = []string{"target", "instance-id", "client-key", "admin-key", "jira-url", "relay-pid", "ca", "allow-remote",
	"mix", "sizes", "rate", "count", "compare", "tls", "tls-front", "upload-body", "peers", "peer-list", "peers-mode", "relays", "readers"}
