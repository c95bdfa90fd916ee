package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// The fleet scenario (`go run ./cmd/bench --scenario fleet --relays N`)
// starts N relays on one etcd (relay 1 embeds it; the others reach it with
// --etcd-endpoints; one --etcd-prefix) in front of one fake Jira, and
// measures two things of the fleet acting as one service:
//
//   - the fleet-wide tenant limit: every relay runs with --instance-rps R
//     --instance-burst B (each enforcing its share); an open-loop load well
//     above R, as GET config of one tenant spread round-robin over the
//     relays, for --duration; the 2xx admitted against burst + rate × t;
//   - propagation through etcd, over K trials each: a Jira 429 seen by
//     relay 1 until every other relay holds the cool-down (its /metrics
//     relay_fleet_cooldowns{scope="issue"}), a configuration change, a
//     rotated client key and an erased tenant until every other relay
//     answers accordingly, and a new tenant until every other relay knows
//     it. The propagation trials run on a second start of the fleet whose
//     tenant limit is open wide, so that polling every millisecond is never
//     refused by the limit the first part measures.

// FleetScenario is the scenario's name.
const FleetScenario = "fleet"

// The fleet scenario's default tenant limit, fleet-wide.
const (
	DefaultFleetRPS   = 50
	DefaultFleetBurst = 50
)

// FleetConfig is one run of the fleet scenario. Zero fields take the
// defaults given.
type FleetConfig struct {
	Relays        int           // relays on one etcd; default 3, at least 2
	InstanceRPS   float64       // the fleet-wide tenant limit, per second; default DefaultFleetRPS
	InstanceBurst int           // and its burst; default DefaultFleetBurst
	Rate          float64       // offered load of the limit part, req/s; default 10 × InstanceRPS
	Concurrency   int           // workers of the limit part, pinned round-robin to the relays; default 16
	Duration      time.Duration // of the limit part; default 5s
	Trials        int           // per propagation kind; default 50
	TrialTimeout  time.Duration // bound on one trial's wait; default 2s
	Poll          time.Duration // pause between two polls of one relay; default 1ms
	Budget        time.Duration // bound on one propagation kind's trials; default 60s

	Src         string   // module root to build cmd/relay and cmd/fakejira from
	RelayBin    string   // prebuilt binaries (skip the build)
	FakeJiraBin string   //
	RelayFlags  []string // appended to every relay's command line

	Command string    // the command line, for the report
	Log     io.Writer // progress (stderr); nil: none
}

func (c *FleetConfig) defaults() error {
	if c.Relays == 0 {
		c.Relays = 3
	}
	if c.InstanceRPS == 0 {
		c.InstanceRPS = DefaultFleetRPS
	}
	if c.InstanceBurst == 0 {
		c.InstanceBurst = DefaultFleetBurst
	}
	if c.Rate == 0 {
		c.Rate = 10 * c.InstanceRPS
	}
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
	}
	if c.Trials == 0 {
		c.Trials = 50
	}
	if c.TrialTimeout == 0 {
		c.TrialTimeout = 2 * time.Second
	}
	if c.Poll == 0 {
		c.Poll = time.Millisecond
	}
	if c.Budget == 0 {
		c.Budget = time.Minute
	}
	switch {
	case c.Relays < 2 || c.Relays > MaxRelays:
		return fmt.Errorf("--relays: the fleet scenario needs 2 to %d relays", MaxRelays)
	case c.InstanceRPS < 0.1 || c.InstanceRPS > 1e5:
		return errors.New("--instance-rps must be from 0.1 to 100000")
	case c.InstanceBurst < 1 || c.InstanceBurst > 1e6:
		return errors.New("--instance-burst must be from 1 to 1000000")
	case c.Rate < 0 || c.Rate > 1e6:
		return errors.New("--rate must be from 0 (10 × --instance-rps) to 1000000")
	case c.Concurrency < c.Relays || c.Concurrency > 10000:
		return fmt.Errorf("--concurrency must be from --relays (%d: a worker per relay at least) to 10000", c.Relays)
	case c.Duration < 0 || c.Duration > time.Hour:
		return errors.New("--duration must be more than 0 and at most 1h")
	case c.Trials < 1 || c.Trials > 10000:
		return errors.New("--trials must be from 1 to 10000")
	case c.TrialTimeout < 0 || c.Poll < 0 || c.Budget < 0:
		return errors.New("the trial timeout, poll interval and budget must be positive")
	}
	return nil
}

// RunFleet runs the fleet scenario: the limit part on one start of the
// fleet, the propagation part on a second. Every process and temp dir it
// made is gone when it returns; when ctx ends early the report covers what
// ran and Interrupted is set.
func RunFleet(ctx context.Context, cfg FleetConfig) (*FleetReport, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "jira-relay-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	base := Config{Relays: cfg.Relays, Src: cfg.Src, RelayBin: cfg.RelayBin, FakeJiraBin: cfg.FakeJiraBin,
		RelayFlags: cfg.RelayFlags, Concurrency: cfg.Concurrency, Log: cfg.Log}
	if base.RelayBin, base.FakeJiraBin, err = binaries(ctx, &base, dir); err != nil {
		return nil, err
	}
	rep := &FleetReport{Scenario: FleetScenario, Command: cfg.Command, Started: time.Now(), Machine: machine(),
		Settings: FleetSettings{Relays: cfg.Relays, InstanceRPS: cfg.InstanceRPS, InstanceBurst: cfg.InstanceBurst,
			Rate: cfg.Rate, Concurrency: cfg.Concurrency, Duration: cfg.Duration.String(), Trials: cfg.Trials,
			TrialTimeout: cfg.TrialTimeout.String(), Poll: cfg.Poll.String(), RelayFlags: cfg.RelayFlags},
		Verdicts: map[string]string{}}

	limited := base
	limited.instanceRPS, limited.instanceBurst = cfg.InstanceRPS, cfg.InstanceBurst
	lim, err := fleetLimitPart(ctx, &cfg, &limited, filepath.Join(dir, "limit"))
	if err != nil {
		return nil, fmt.Errorf("the limit part: %w", err)
	}
	rep.Limit = lim
	if lim.Ratio >= 0.8 && lim.Ratio <= 1.2 {
		rep.Verdicts["admittedVsExpected"] = "met"
	} else {
		rep.Verdicts["admittedVsExpected"] = "missed"
	}
	if ctx.Err() == nil {
		props, notes, err := fleetPropagationPart(ctx, &cfg, &base, filepath.Join(dir, "propagation"))
		if err != nil {
			return nil, fmt.Errorf("the propagation part: %w", err)
		}
		rep.Propagation, rep.Notes = props, append(rep.Notes, notes...)
	}
	rep.Interrupted = ctx.Err() != nil
	rep.Machine.LoadAvg = append(rep.Machine.LoadAvg, loadAvg())
	return rep, nil
}

// fleetLimitPart starts the fleet with the tenant limit, registers a
// tenant through relay 1, waits until every relay knows it and the buckets
// are full again, and plays the open-loop load of GET config.
func fleetLimitPart(ctx context.Context, cfg *FleetConfig, sc *Config, dir string) (*FleetLimit, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	st, err := StartStack(ctx, sc, dir, false)
	if err != nil {
		return nil, err
	}
	defer st.Stop()
	first, err := NewEndpoint(st.RelayURL, cfg.Concurrency+8, "", false)
	if err != nil {
		return nil, err
	}
	defer first.Close()
	first.AbortOn(ctx)
	t, err := Register(first, st.JiraURL)
	if err != nil {
		return nil, err
	}
	// Every relay knows the tenant (one token of each relay's bucket).
	h, err := apiCall(first, "GET", "/v1/instances/"+t.ID+"/config", t.ClientKey, nil, nil, nil, 200)
	if err != nil {
		return nil, err
	}
	t.ETag = string(h.Peek("ETag"))
	es, err := fleetEndpoints(ctx, st.RelayURLs, first, cfg.Concurrency, t)
	if err != nil {
		return nil, err
	}
	for _, e := range es[1:] {
		defer e.Close()
	}
	// Each relay's bucket (its share of the burst, refilled at its share of
	// the rate) is full after burst / rate seconds.
	refill := time.Duration(float64(cfg.InstanceBurst)/cfg.InstanceRPS*1.2*float64(time.Second)) + 500*time.Millisecond
	logf(sc, "tenant %s known to all %d relays; waiting %v for the buckets to refill", t.ID, cfg.Relays, refill.Round(time.Millisecond))
	if err := sleep(ctx, refill); err != nil {
		return nil, err
	}
	target := newLimitTarget(es, t)
	var mix Mix
	mix[OpConfig] = 1
	p := Phase{Name: "fleet limit (refusals count as errors)", Target: target, Mix: mix, Duration: cfg.Duration, Concurrency: cfg.Concurrency, Rate: cfg.Rate}
	logf(sc, "open-loop GET config at %g/s over %d relays for %v (limit %g/s, burst %d, fleet-wide)",
		cfg.Rate, cfg.Relays, cfg.Duration, cfg.InstanceRPS, cfg.InstanceBurst)
	var prog *Progress
	live := &Live{}
	if sc.Log != nil {
		prog = StartProgress(sc.Log, false, p.Name, live)
	}
	run := RunPhase(ctx, p, live)
	if prog != nil {
		prog.Stop()
	}
	pr, _ := summarize(run)
	secs := run.Elapsed.Seconds()
	lim := &FleetLimit{Seconds: secs, Expected: float64(cfg.InstanceBurst) + cfg.InstanceRPS*secs}
	if o, ok := pr.OpFigure(OpConfig); ok {
		lim.Requests, lim.Latency = o.Requests, o.Latency
		lim.Admitted = o.Requests - o.Errors
		lim.Other = map[string]int64{}
		for k, v := range o.ByKind {
			if k == limitRefusal {
				lim.Refused = v
			} else {
				lim.Other[k] = v
			}
		}
		if len(lim.Other) == 0 {
			lim.Other = nil
		}
	}
	lim.OfferedPerSec = float64(lim.Requests) / max(secs, 1e-9)
	if lim.Expected > 0 {
		lim.Ratio = float64(lim.Admitted) / lim.Expected
	}
	n := float64(cfg.Relays)
	for i := range es {
		ra := RelayAdmission{Relay: i + 1, Requests: target.requests[i].Load(), Admitted: target.admitted[i].Load(),
			Refused: target.refused[i].Load()}
		// This relay's share: burst / members (the remainder to the lowest
		// ranks, which the bench does not know) plus rate / members × t.
		ra.Expected = float64(cfg.InstanceBurst)/n + cfg.InstanceRPS/n*secs
		lim.PerRelay = append(lim.PerRelay, ra)
	}
	return lim, nil
}

// limitRefusal is the error kind of a refusal by the tenant limit.
const limitRefusal = "429 rate_limited_instance"

// limitTarget sends GET config of one tenant, worker i to relay i mod N,
// and counts per relay what was admitted (2xx) and refused by the tenant
// limit (429 rate_limited_instance).
type limitTarget struct {
	es                          []*Endpoint
	uris                        []string
	key                         string
	requests, admitted, refused []atomic.Int64
}

func newLimitTarget(es []*Endpoint, t *Tenant) *limitTarget {
	lt := &limitTarget{es: es, key: t.ClientKey, requests: make([]atomic.Int64, len(es)),
		admitted: make([]atomic.Int64, len(es)), refused: make([]atomic.Int64, len(es))}
	for _, e := range es {
		lt.uris = append(lt.uris, e.Base+e.Path+"/v1/instances/"+t.ID+"/config")
	}
	return lt
}

// Name implements Target.
func (l *limitTarget) Name() string { return "fleet" }

// Supports implements Target: GET config only.
func (l *limitTarget) Supports(op Op) bool { return op == OpConfig }

// Do implements Target: a 2xx is success; a 429 is reported with the
// relay's error code, so that the tenant limit's refusals stand apart.
func (l *limitTarget) Do(w *worker, _ Op) (int64, string) {
	i := w.id % len(l.es)
	req, resp := w.req, w.resp
	req.Reset()
	resp.Reset()
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURI(l.uris[i])
	req.Header.Set("X-Relay-Key", l.key)
	l.requests[i].Add(1)
	if err := l.es[i].Do(req, resp, time.Now().Add(10*time.Second)); err != nil {
		return 0, transportKind(err)
	}
	switch s := resp.StatusCode(); {
	case s >= 200 && s < 300:
		l.admitted[i].Add(1)
		return int64(len(resp.Body())), ""
	case s == 429:
		code := relayErrorCode(resp.Body())
		if "429 "+code == limitRefusal {
			l.refused[i].Add(1)
			return 0, limitRefusal
		}
		return 0, "429 " + code
	default:
		return 0, statusKind(s)
	}
}

// relayErrorCode is the code of the relay's JSON error
// {"error":{"code":…,"message":…}}, or "" for another body.
func relayErrorCode(b []byte) string {
	var e struct {
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error == nil {
		return ""
	}
	return e.Error.Code
}
