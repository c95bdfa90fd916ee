package main

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/jira-relay/jira-relay/bench"
)

// fleetFlags are the flags the fleet scenario reads.
type fleetFlags struct {
	relays, trials, instanceBurst, concurrency int
	instanceRPS, rate                          float64
	duration                                   time.Duration
	jsonOut, src, relayBin, fakeBin            string
	relayFlags                                 []string
}

// fleetRejects are the flags that mean nothing to the fleet scenario: it
// starts its own fleet and plays its own requests.
var fleetRejects = []string{"target", "instance-id", "client-key", "admin-key", "jira-url", "relay-pid", "ca", "allow-remote",
	"mix", "sizes", "count", "compare", "rounds", "tls", "upload-body", "users", "conversations", "request-timeout", "html",
	"peers", "peer-list", "peers-mode", "readers", "profile", "warmup"}

// runFleet is --scenario fleet: N relays on one etcd, the fleet-wide
// tenant limit and the propagation delays.
func runFleet(ctx context.Context, set map[string]bool, f fleetFlags, sc bench.Scenario, args []string,
	stdout, stderr io.Writer, usage func(string, ...any) int) int {
	for _, name := range fleetRejects {
		if set[name] {
			return usage("--scenario %s starts a fleet of its own and plays its own requests: --%s does not apply", bench.FleetScenario, name)
		}
	}
	cfg := bench.FleetConfig{Relays: sc.Relays, Trials: sc.Trials, Duration: sc.Duration, Concurrency: sc.Concurrency,
		Src: f.src, RelayBin: f.relayBin, FakeJiraBin: f.fakeBin, RelayFlags: f.relayFlags,
		Command: "go run ./cmd/bench " + strings.Join(args, " "), Log: stderr}
	if set["relays"] {
		if f.relays < 2 || f.relays > bench.MaxRelays {
			return usage("--relays: --scenario %s needs 2 to %d relays", bench.FleetScenario, bench.MaxRelays)
		}
		cfg.Relays = f.relays
	}
	for _, c := range []struct {
		name   string
		ok     bool
		rng    string
		assign func()
	}{
		{"trials", f.trials >= 1 && f.trials <= 10000, "from 1 to 10000", func() { cfg.Trials = f.trials }},
		{"instance-rps", f.instanceRPS >= 0.1 && f.instanceRPS <= 1e5, "from 0.1 to 100000", func() { cfg.InstanceRPS = f.instanceRPS }},
		{"instance-burst", f.instanceBurst >= 1 && f.instanceBurst <= 1e6, "from 1 to 1000000", func() { cfg.InstanceBurst = f.instanceBurst }},
		{"rate", f.rate > 0 && f.rate <= 1e6, "more than 0 and at most 1000000 (the offered load in req/s)", func() { cfg.Rate = f.rate }},
		{"concurrency", f.concurrency >= 1 && f.concurrency <= 10000, "from 1 to 10000", func() { cfg.Concurrency = f.concurrency }},
	} {
		if !set[c.name] {
			continue
		}
		if !c.ok {
			return usage("--%s must be %s", c.name, c.rng)
		}
		c.assign()
	}
	if set["duration"] {
		if f.duration <= 0 || f.duration > time.Hour {
			return usage("--duration must be more than 0 and at most 1h")
		}
		cfg.Duration = f.duration
	}
	if cfg.Concurrency < cfg.Relays {
		return usage("--concurrency %d: at least one worker per relay (--relays %d)", cfg.Concurrency, cfg.Relays)
	}
	rep, err := bench.RunFleet(ctx, cfg)
	if err != nil {
		return failed(ctx, stderr, err)
	}
	if code := writeReport(rep, f.jsonOut, stdout, stderr); code != exitOK {
		return code
	}
	switch {
	case rep.Interrupted:
		return exitInterrupted
	case rep.Errors() > 0:
		return exitErrors
	}
	return exitOK
}
