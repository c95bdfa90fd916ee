package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// The anchors scenario (`go run ./cmd/bench --scenario anchors`, issue 13)
// puts the relay's data API next to the floor of what it could be on this
// machine: in one run, with the same load generator, the same requests, the
// same concurrency, rounds interleaved (the order flips every round) and
// medians taken,
//
//   - config reads answered 304: the relay against nginx serving the very
//     same document bytes as a static file with ETag and If-None-Match
//     (anchors_nginx.go), the fastest "send a cached document" a server has;
//   - mapping writes and lookups by conversation: the relay against a bare
//     etcd client loop doing the store's own transactions and range reads on
//     the relay's own embedded etcd, with no HTTP and no JSON
//     (anchors_floor.go).
//
// Each row has its requests per second, latency percentiles and the CPU per
// request of the server's own processes and of the bench process.

// AnchorsScenario is the scenario's name.
const AnchorsScenario = "anchors"

// The anchors' goals (issue 13). Never lowered here.
const (
	GoalConfig304Ratio = 0.8 // relay 304s per second ÷ nginx's, at least
	GoalConfig304P99Ms = 5.0 // the relay's p99 for 304s, at most
	GoalStoreRatio     = 0.7 // relay mapping writes (lookups) per second ÷ the etcd floor's, at least
)

// DefaultAnchors are the anchors of --scenario anchors: the concurrencies
// of the config-304, map-writes and map-reads presets.
const DefaultAnchors = "config=32,map-write=64,map-read=32"

// Anchor is one comparison of the anchors scenario: an operation at a
// concurrency, the relay against its reference.
type Anchor struct {
	Op          Op
	Concurrency int
}

// String is the anchor in --anchors syntax.
func (a Anchor) String() string { return a.Op.String() + "=" + strconv.Itoa(a.Concurrency) }

// anchorConcurrency is each operation's concurrency when --anchors and
// --concurrency give none: the presets'.
var anchorConcurrency = map[Op]int{OpConfig: 32, OpMapWrite: 64, OpMapRead: 32}

// ParseAnchors reads --anchors: a comma list of OP or OP=CONCURRENCY, OP one
// of config, map-write, map-read. An OP without a concurrency gets conc, or
// its preset's (config 32, map-write 64, map-read 32) when conc is 0. One
// operation may come at several concurrencies; the same pair twice is
// refused.
func ParseAnchors(s string, conc int) ([]Anchor, error) {
	var out []Anchor
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, c, hasC := strings.Cut(part, "=")
		op, err := ParseOp(strings.TrimSpace(name))
		if err != nil || op == OpUpload {
			return nil, fmt.Errorf("unknown anchor %q (want config, map-write or map-read, each optionally =CONCURRENCY)", name)
		}
		a := Anchor{Op: op, Concurrency: conc}
		if a.Concurrency == 0 {
			a.Concurrency = anchorConcurrency[op]
		}
		if hasC {
			n, err := strconv.Atoi(strings.TrimSpace(c))
			if err != nil || n < 1 || n > 10000 {
				return nil, fmt.Errorf("%q: the concurrency must be a whole number from 1 to 10000", part)
			}
			a.Concurrency = n
		}
		if slices.Contains(out, a) {
			return nil, fmt.Errorf("anchor %s given twice", a)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, errors.New("no anchor given")
	}
	return out, nil
}

func anchorsText(as []Anchor) string {
	var s []string
	for _, a := range as {
		s = append(s, a.String())
	}
	return strings.Join(s, ",")
}

// anchorLabel names an operation in the anchors' tables.
func anchorLabel(op Op) string {
	switch op {
	case OpConfig:
		return "config 304"
	case OpMapWrite:
		return "mapping writes"
	case OpMapRead:
		return "lookups by conversation"
	}
	return op.String()
}

// AnchorRow is one path of one anchor: medians over the rounds.
type AnchorRow struct {
	Anchor      string `json:"anchor"` // the operation: config, map-write, map-read
	Concurrency int    `json:"concurrency"`
	Path        string `json:"path"`      // relay, nginx, etcd floor
	Reference   bool   `json:"reference"` // the path the relay is measured against
	// ReqPerSec is the median of the rounds' requests (operations, for the
	// floor) per second; Rounds are the rounds' figures in order.
	ReqPerSec float64   `json:"reqPerSec"`
	Rounds    []float64 `json:"roundsReqPerSec"`
	// P50Ms and P99Ms are percentiles of every round's latencies together.
	P50Ms float64 `json:"p50Ms"`
	P99Ms float64 `json:"p99Ms"`
	// VsReference is ReqPerSec ÷ the reference's ReqPerSec (1 for the
	// reference itself, 0 when it was not measured).
	VsReference float64 `json:"vsReference"`
	// ServerCPUMicros is the CPU of the serving processes per request, in
	// µs (median of the rounds): the relay's process (its HTTP layer, JSON,
	// access log and the embedded etcd it serves) on the relay's rows;
	// nginx's process group (master and workers); on the floor's rows the
	// relay's process while the floor runs, that is its embedded etcd
	// serving the floor (the relay itself idle).
	ServerCPUMicros float64 `json:"serverCpuMicrosPerOp"`
	// ClientCPUMicros is the bench process's CPU per request in µs: the
	// HTTP load generator on the relay's and nginx's rows, the floor's own
	// loop (key building, etcd's gRPC client) on the floor's rows.
	ClientCPUMicros float64 `json:"clientCpuMicrosPerOp"`
	// TotalCPUMicros is the two together: every CPU the path spent per
	// request on this machine, but for the fake Jira's idle.
	TotalCPUMicros float64 `json:"totalCpuMicrosPerOp"`
	// Processes is how many processes the serving side had at the end.
	Processes int   `json:"serverProcesses"`
	Requests  int64 `json:"requests"`
	Errors    int64 `json:"errors"`
}

// AnchorVerdict is one anchor's goal and whether the run met it.
type AnchorVerdict struct {
	Anchor      string  `json:"anchor"`
	Concurrency int     `json:"concurrency"`
	Goal        string  `json:"goal"`
	Ratio       float64 `json:"ratio"` // relay ÷ reference, requests per second
	P99Ms       float64 `json:"relayP99Ms"`
	Verdict     string  `json:"verdict"` // met, missed, not measured
}

// AnchorsResult is what the anchors scenario measured.
type AnchorsResult struct {
	Rounds   int             `json:"rounds"`
	Duration string          `json:"duration"` // of each phase
	Rows     []AnchorRow     `json:"rows"`
	Verdicts []AnchorVerdict `json:"verdicts"`
	// Checks are what the run verified before measuring: the floor writes
	// the store's keys and record bytes, nginx serves the relay's bytes.
	Checks  []string `json:"checks,omitempty"`
	Missing []string `json:"missing,omitempty"`
}

// WriteTable prints the anchors' table and verdicts.
func (a *AnchorsResult) WriteTable(out io.Writer) {
	fmt.Fprintf(out, "anchors: medians of %d interleaved round(s) of %s per path; HTTP/1.1 keep-alive on loopback; open loop\n", a.Rounds, a.Duration)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "anchor\tconc\tpath\treq/s\t× ref\tp50 ms\tp99 ms\tserver CPU µs/req\tprocesses\tbench CPU µs/req\ttotal CPU µs/req\trequests\terrors\trounds req/s\t")
	for _, r := range a.Rows {
		var rounds []string
		for _, v := range r.Rounds {
			rounds = append(rounds, fmt.Sprintf("%.0f", v))
		}
		vs := "-"
		if r.VsReference > 0 {
			vs = fmt.Sprintf("%.3f", r.VsReference)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%s\t%.3f\t%.3f\t%.1f\t%d\t%.1f\t%.1f\t%d\t%d\t%s\t\n", anchorLabel(mustOp(r.Anchor)), r.Concurrency, r.Path,
			r.ReqPerSec, vs, r.P50Ms, r.P99Ms, r.ServerCPUMicros, r.Processes, r.ClientCPUMicros, r.TotalCPUMicros, r.Requests, r.Errors, strings.Join(rounds, " "))
	}
	tw.Flush()
	fmt.Fprintf(out, "server CPU: the relay's process (HTTP, JSON, access log and its embedded etcd); nginx's master and workers; on the\n"+
		"etcd floor's rows the relay's process while the floor runs, i.e. the embedded etcd serving it (the relay idle; idle too on\n"+
		"the in-process floor's rows). bench CPU: the bench process: the HTTP load generator (relay, nginx), the floor's loop with\n"+
		"etcd's gRPC client (etcd floor: %d loopback connections to the relay's etcd), or the floor's loop and an etcd member of its own\n"+
		"(etcd floor in-process: reached through v3client, as the relay reaches its embedded etcd; a copy of the tenant's data).\n"+
		"total: the two. × ref: req/s ÷ the reference's (nginx; the etcd floor on the relay's etcd), the issue's goal.\n", floorConns)
	for _, v := range a.Verdicts {
		fmt.Fprintf(out, "goal %s ×%d: %s — %s\n", anchorLabel(mustOp(v.Anchor)), v.Concurrency, v.Goal, v.Verdict)
	}
	for _, c := range a.Checks {
		fmt.Fprintf(out, "checked: %s\n", c)
	}
	for _, m := range a.Missing {
		fmt.Fprintf(out, "not measured: %s\n", m)
	}
}

func mustOp(s string) Op {
	op, _ := ParseOp(s)
	return op
}

// anchorPath is one side of an anchor: what the load goes to, and which
// process serves it.
type anchorPath struct {
	t     Target
	name  string
	ref   bool
	proxy *procWatch // the serving process group when it is not the relay (nginx)
}

// RunAnchors is the anchors scenario: it starts the relay (embedded etcd)
// and the fake Jira as Run does, prepares a tenant, starts the references
// the anchors need (nginx for config, the etcd floor for mappings), checks
// that each reference does what the relay does (the same document bytes;
// the same keys and record bytes in etcd), warms every path up, then plays
// cfg.Rounds rounds of every anchor, relay and reference back to back with
// the order flipped every round. Without nginx the config anchor's
// reference is left out with a note (the relay's row is still measured).
func RunAnchors(ctx context.Context, cfg Config) (*Result, error) {
	if len(cfg.Anchors) == 0 {
		return nil, errors.New("--anchors: no anchor given")
	}
	if cfg.Target != "" || cfg.TLS || cfg.Relays > 1 || cfg.PeersDir != "" {
		return nil, errors.New("--scenario anchors starts its own relay, nginx and etcd client: it goes with none of --target, --tls, --relays, --peers")
	}
	conc := 0
	for _, a := range cfg.Anchors {
		conc = max(conc, a.Concurrency)
	}
	cfg.Concurrency = conc
	if err := cfg.check(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "jira-relay-anchors-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res := &Result{Scenario: cfg.Scenario, Command: cfg.Command, Started: time.Now(), Machine: machine(),
		Settings: Settings{Target: "self-contained: the relay vs nginx (config 304) and vs an etcd client loop on the relay's embedded etcd (mappings)",
			Mix: anchorsText(cfg.Anchors), Sizes: "-", Duration: cfg.Duration.String(), Concurrency: conc, Rounds: cfg.Rounds,
			UploadBody: cfg.UploadBody, RelayFlags: cfg.RelayFlags}}
	ar := &AnchorsResult{Rounds: cfg.Rounds, Duration: cfg.Duration.String()}
	res.Anchors = ar
	need := func(op Op) bool { return slices.ContainsFunc(cfg.Anchors, func(a Anchor) bool { return a.Op == op }) }

	st, err := StartStack(ctx, &cfg, dir, false)
	if err != nil {
		return nil, err
	}
	defer st.Stop()
	relayW := &procWatch{pid: st.Relay.Pid(), sampler: StartRSSSampler(st.Relay.Pid(), 100*time.Millisecond)}
	defer relayW.sampler.Stop()
	relayE, err := NewEndpoint(st.RelayURL, conc+8, "", false)
	if err != nil {
		return nil, err
	}
	defer relayE.Close()
	relayE.AbortOn(ctx)
	tenant, err := Register(relayE, st.JiraURL)
	if err != nil {
		return nil, err
	}
	logf(&cfg, "preparing tenant %s: %d users, configuration, %d conversations with mappings", tenant.ID, cfg.Users, cfg.Conversations)
	if err := Prepare(ctx, relayE, tenant, cfg.Users, cfg.Conversations); err != nil {
		return nil, err
	}
	// Writes go to conversations of their own, so that the lookups' stay
	// at the two mappings each that Prepare seeded, whatever was written.
	wt := *tenant
	wt.Convs = nil
	for i := range cfg.Conversations {
		wt.Convs = append(wt.Convs, convID(tenant.RunID, 1_000_000+i))
	}
	relayPath := func(t *Tenant) anchorPath {
		return anchorPath{t: NewRelayTarget(relayE, t, cfg.Sizes, cfg.UploadBody, cfg.RequestTimeout), name: "relay"}
	}
	refs := map[Op]anchorPath{}   // each anchor's reference: the issue's
	extras := map[Op]anchorPath{} // and a path measured besides, without a goal
	if need(OpConfig) {
		ng, err := startStaticNginx(ctx, &cfg, dir, relayE, tenant, conc)
		switch {
		case err == nil:
			defer ng.stop()
			refs[OpConfig] = anchorPath{t: ng.target, name: ng.target.Name(), ref: true, proxy: &procWatch{pid: ng.proc.Pid()}}
			ar.Checks = append(ar.Checks, ng.check)
		case ctx.Err() != nil:
			return nil, ctx.Err()
		default:
			ar.Missing = append(ar.Missing, "nginx (the config 304 anchor's reference): "+firstLine(err.Error()))
			logf(&cfg, "config 304: no nginx, the relay's row only: %v", err)
		}
	}
	if need(OpMapWrite) || need(OpMapRead) {
		fl, err := newFloor(ctx, st.EtcdURL, etcdPrefix(cfg.RelayFlags), tenant, wt.Convs, cfg.RequestTimeout)
		if err != nil {
			return nil, err
		}
		defer fl.Close()
		check, err := fl.check(ctx, relayE, tenant)
		if err != nil {
			return nil, err
		}
		ar.Checks = append(ar.Checks, check)
		refs[OpMapWrite] = anchorPath{t: fl, name: fl.Name(), ref: true}
		refs[OpMapRead] = refs[OpMapWrite]
		ip, err := inProcessFloor(ctx, dir, fl)
		if err != nil {
			return nil, err
		}
		defer ip.Close()
		extras[OpMapWrite] = anchorPath{t: ip, name: ip.Name()}
		extras[OpMapRead] = extras[OpMapWrite]
	}
	pairs := make([][]anchorPath, len(cfg.Anchors))
	for i, a := range cfg.Anchors {
		rp := relayPath(tenant)
		if a.Op == OpMapWrite {
			rp = relayPath(&wt)
		}
		pairs[i] = []anchorPath{rp}
		if ref, ok := refs[a.Op]; ok {
			pairs[i] = append(pairs[i], ref)
		}
		if x, ok := extras[a.Op]; ok {
			pairs[i] = append(pairs[i], x)
		}
	}
	phase := func(a Anchor, p anchorPath) Phase {
		var m Mix
		m[a.Op] = 1
		return Phase{Name: fmt.Sprintf("%s×%d %s", a.Op, a.Concurrency, p.name), Target: p.t, Mix: m,
			Duration: cfg.Duration, Concurrency: a.Concurrency}
	}

	relayW.sampler.Reset()
	if sleep(ctx, time.Second) == nil {
		idle := relayW.sampler.Reset()
		res.RelayIdle = &idle
	}
	if cfg.Warmup > 0 {
		for i, a := range cfg.Anchors {
			for _, p := range pairs[i] {
				w := phase(a, p)
				w.Name, w.Duration = "warm-up "+w.Name, cfg.Warmup
				logf(&cfg, "%s for %v", w.Name, cfg.Warmup)
				RunPhase(ctx, w, &Live{})
			}
		}
	}
	type key struct {
		anchor int
		path   string
	}
	phasesOf := map[key][]int{} // positions in res.Phases
	for r := 0; r < cfg.Rounds && ctx.Err() == nil; r++ {
		for i, a := range cfg.Anchors {
			for k := range pairs[i] {
				if ctx.Err() != nil {
					break
				}
				p := pairs[i][(k+r)%len(pairs[i])]
				ph := phase(a, p)
				ph.Name = phaseName(ph.Name, r, cfg.Rounds)
				var prof chan error
				if st.AdminURL != "" {
					prof = make(chan error, 1)
					path := filepath.Join(cfg.ProfileDir, fileName(cfg.Scenario+"-"+ph.Name)+".pprof")
					go func() { prof <- fetchProfile(ctx, st.AdminURL, ph.Duration, path) }()
				}
				m := runMeasured(ctx, &cfg, ph, watches{relay: relayW, proxy: p.proxy, rss: p.name == "relay"})
				if prof != nil {
					if err := <-prof; err != nil {
						res.Notes = append(res.Notes, "relay profile: "+err.Error())
					}
				}
				phasesOf[key{i, p.name}] = append(phasesOf[key{i, p.name}], len(res.Phases))
				res.runs = append(res.runs, m.run)
				res.Phases = append(res.Phases, m.result)
				res.hists = append(res.hists, m.hists)
			}
		}
	}
	for i, a := range cfg.Anchors {
		var rows []AnchorRow
		for _, p := range pairs[i] {
			row := anchorRow(res, a, p, phasesOf[key{i, p.name}])
			if p.proxy != nil {
				row.Processes = len(GroupPids(p.proxy.pid))
			} else {
				row.Processes = len(GroupPids(relayW.pid))
			}
			rows = append(rows, row)
		}
		ar.Verdicts = append(ar.Verdicts, anchorVerdicts(a, rows)...)
		ar.Rows = append(ar.Rows, rows...)
	}
	res.Interrupted = ctx.Err() != nil
	res.Machine.LoadAvg = append(res.Machine.LoadAvg, loadAvg())
	res.RelayHWM, _ = ReadHWM(relayW.pid)
	return res, nil
}

// anchorRow sums up one path of one anchor from its phases (positions in
// res.Phases and res.runs).
func anchorRow(res *Result, a Anchor, p anchorPath, at []int) AnchorRow {
	row := AnchorRow{Anchor: a.Op.String(), Concurrency: a.Concurrency, Path: p.name, Reference: p.ref}
	var h Histogram
	var server, client, total []float64
	for _, k := range at {
		run, pr := res.runs[k], res.Phases[k]
		s := run.Stats.ops[a.Op]
		if s == nil {
			continue
		}
		n := s.ok + s.errors
		row.Rounds = append(row.Rounds, float64(n)/max(run.Elapsed.Seconds(), 1e-9))
		row.Requests += n
		row.Errors += s.errors
		h.Merge(&s.hist)
		if n == 0 {
			continue
		}
		var cpu float64
		switch {
		case p.proxy != nil && pr.Proxy != nil:
			cpu = pr.Proxy.CPUSeconds
		case pr.Relay != nil:
			cpu = pr.Relay.CPUSeconds
		}
		server = append(server, cpu/float64(n)*1e6)
		client = append(client, pr.GeneratorCPU/float64(n)*1e6)
		total = append(total, (cpu+pr.GeneratorCPU)/float64(n)*1e6)
	}
	row.ReqPerSec = median(row.Rounds)
	row.P50Ms, row.P99Ms = ms(h.Percentile(50)), ms(h.Percentile(99))
	row.ServerCPUMicros, row.ClientCPUMicros, row.TotalCPUMicros = median(server), median(client), median(total)
	return row
}

// anchorVerdicts fills in each row's ratio to the reference and judges the
// anchor's goal; a path measured besides (the in-process etcd floor) gets a
// line of its own, without a goal.
func anchorVerdicts(a Anchor, rows []AnchorRow) []AnchorVerdict {
	v := AnchorVerdict{Anchor: a.Op.String(), Concurrency: a.Concurrency, Verdict: "not measured"}
	if a.Op == OpConfig {
		v.Goal = fmt.Sprintf("relay ≥ %.1f × nginx's 304s per second, relay p99 ≤ %.0f ms", GoalConfig304Ratio, GoalConfig304P99Ms)
	} else {
		v.Goal = fmt.Sprintf("relay ≥ %.1f × the etcd floor's operations per second", GoalStoreRatio)
	}
	var relay, ref *AnchorRow
	var extras []*AnchorRow
	for i := range rows {
		switch {
		case rows[i].Reference:
			ref = &rows[i]
		case rows[i].Path == "relay":
			relay = &rows[i]
		default:
			extras = append(extras, &rows[i])
		}
	}
	if relay == nil || ref == nil || ref.ReqPerSec == 0 || relay.Requests == 0 {
		return []AnchorVerdict{v}
	}
	for i := range rows {
		rows[i].VsReference = rows[i].ReqPerSec / ref.ReqPerSec
	}
	v.Ratio, v.P99Ms = relay.VsReference, relay.P99Ms
	met := v.Ratio >= GoalStoreRatio
	if a.Op == OpConfig {
		met = v.Ratio >= GoalConfig304Ratio && v.P99Ms <= GoalConfig304P99Ms
	}
	v.Verdict = fmt.Sprintf("missed (relay/%s %.3f, relay p99 %.2f ms)", ref.Path, v.Ratio, v.P99Ms)
	if met {
		v.Verdict = fmt.Sprintf("met (relay/%s %.3f, relay p99 %.2f ms)", ref.Path, v.Ratio, v.P99Ms)
	}
	if relay.Errors > 0 || ref.Errors > 0 {
		v.Verdict += fmt.Sprintf("; with errors (relay %d, %s %d)", relay.Errors, ref.Path, ref.Errors)
	}
	out := []AnchorVerdict{v}
	for _, x := range extras {
		if x.ReqPerSec == 0 {
			continue
		}
		r := relay.ReqPerSec / x.ReqPerSec
		out = append(out, AnchorVerdict{Anchor: v.Anchor, Concurrency: v.Concurrency, Ratio: r, P99Ms: relay.P99Ms,
			Goal:    fmt.Sprintf("none, for scale: relay vs the %s (an etcd member in the bench process, reached in-process as the relay reaches its own)", x.Path),
			Verdict: fmt.Sprintf("measured (relay/%s %.3f, total CPU µs/req %.0f vs %.0f)", x.Path, r, relay.TotalCPUMicros, x.TotalCPUMicros)})
	}
	return out
}

// etcdPrefix is the relay's --etcd-prefix among its extra flags, or its
// default.
func etcdPrefix(flags []string) string {
	p := "/jira-relay/"
	for i, f := range flags {
		switch {
		case strings.HasPrefix(f, "--etcd-prefix="):
			p = strings.TrimPrefix(f, "--etcd-prefix=")
		case f == "--etcd-prefix" && i+1 < len(flags):
			p = flags[i+1]
		}
	}
	return p
}
