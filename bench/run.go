package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func numCPU() int       { return runtime.NumCPU() }
func goVersion() string { return runtime.Version() }

// procWatch measures one process during phases.
type procWatch struct {
	pid     int
	sampler *RSSSampler // nil: CPU only
	more    []int       // a fleet's other relays: their CPU is added to pid's
}

func (w *procWatch) cpu() float64 {
	if w == nil {
		return 0
	}
	d, _ := GroupCPU(w.pid)
	for _, pid := range w.more {
		m, _ := GroupCPU(pid)
		d += m
	}
	return d.Seconds()
}

// Run is one whole run: start (or find) the relay and fake Jira, prepare a
// tenant, play the phases, and return the result. Every process and temp
// dir it made is gone when it returns, also when ctx ends early (the result
// then covers what ran and Interrupted is set).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "jira-relay-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	res := &Result{Scenario: cfg.Scenario, Command: cfg.Command, Started: time.Now(), Machine: machine(),
		Settings: Settings{Target: "self-contained (relay + fake Jira on loopback)", Mix: cfg.Mix.String(), Sizes: cfg.Sizes.String(),
			Duration: cfg.Duration.String(), Concurrency: cfg.Concurrency, Rate: cfg.Rate, Count: cfg.Count, TLS: cfg.TLS,
			UploadBody: cfg.UploadBody, Compare: cfg.Compare, Rounds: cfg.Rounds, RelayFlags: cfg.RelayFlags}}
	if cfg.Relays > 1 {
		res.Settings.Relays = cfg.Relays
		res.Settings.Target = fmt.Sprintf("self-contained (%d relays on one etcd + fake Jira on loopback)", cfg.Relays)
		res.Notes = append(res.Notes, fmt.Sprintf("%d relays on one etcd (relay 1 embeds it): workers pinned round-robin to the relays; "+
			"relay CPU seconds are the sum over every relay, peak RSS is relay 1's", cfg.Relays))
	}

	relayURL, jiraURL, caFile := cfg.Target, cfg.JiraURL, cfg.CAFile
	var relayW, jiraW *procWatch
	var tenant *Tenant
	adminURL := ""
	var fleetURLs []string
	if cfg.Target == "" {
		st, err := StartStack(ctx, &cfg, dir, cfg.TLS)
		if err != nil {
			return nil, err
		}
		defer st.Stop()
		relayURL, jiraURL, caFile, adminURL = st.RelayURL, st.JiraURL, st.CAFile, st.AdminURL
		relayW = &procWatch{pid: st.Relay.Pid(), sampler: StartRSSSampler(st.Relay.Pid(), 100*time.Millisecond)}
		defer relayW.sampler.Stop()
		for _, p := range st.Relays[1:] {
			relayW.more = append(relayW.more, p.Pid())
		}
		fleetURLs = st.RelayURLs
		jiraW = &procWatch{pid: st.FakeJira.Pid()}
	} else {
		res.Settings.Target = cfg.Target
		tenant = &Tenant{ID: cfg.InstanceID, ClientKey: cfg.ClientKey, AdminKey: cfg.AdminKey}
		if cfg.RelayPid > 0 {
			relayW = &procWatch{pid: cfg.RelayPid, sampler: StartRSSSampler(cfg.RelayPid, 100*time.Millisecond)}
			defer relayW.sampler.Stop()
		}
	}

	relayE, err := NewEndpoint(relayURL, cfg.Concurrency+8, caFile, cfg.AllowRemote)
	if err != nil {
		return nil, err
	}
	defer relayE.Close()
	relayE.AbortOn(ctx)
	if tenant == nil {
		if tenant, err = Register(relayE, jiraURL); err != nil {
			return nil, err
		}
	}
	convs := 0
	if cfg.Mix.Has(OpMapRead) || cfg.Mix.Has(OpMapWrite) {
		convs = cfg.Conversations
	}
	convs = max(convs, 1)
	logf(&cfg, "preparing tenant %s: %d users, configuration, %d conversations with mappings", tenant.ID, cfg.Users, convs)
	if err := Prepare(ctx, relayE, tenant, cfg.Users, convs); err != nil {
		return nil, err
	}
	relayT := NewRelayTarget(relayE, tenant, cfg.Sizes, cfg.UploadBody, cfg.RequestTimeout)
	if len(fleetURLs) > 1 {
		es, err := fleetEndpoints(ctx, fleetURLs, relayE, cfg.Concurrency, tenant)
		if err != nil {
			return nil, err
		}
		for _, e := range es[1:] {
			defer e.Close()
		}
		relayT.Spread(es)
	}
	var directT *JiraTarget
	if cfg.Compare == "direct" {
		je, err := NewEndpoint(jiraURL, cfg.Concurrency+8, caFile, cfg.AllowRemote)
		if err != nil {
			return nil, err
		}
		defer je.Close()
		je.AbortOn(ctx)
		directT = &JiraTarget{Label: "direct", E: je, Sizes: cfg.Sizes, Timeout: cfg.RequestTimeout}
	}
	phases := buildPhases(&cfg, relayT, directT)

	if relayW != nil && relayW.sampler != nil {
		// Idle: a second with no load after setup.
		relayW.sampler.Reset()
		if sleep(ctx, time.Second) == nil {
			idle := relayW.sampler.Reset()
			res.RelayIdle = &idle
		}
	}
	if cfg.Warmup > 0 {
		done := map[string]bool{}
		for _, p := range phases {
			if done[p.Target.Name()] {
				continue
			}
			done[p.Target.Name()] = true
			if p.Count > 0 {
				continue // counted runs (one 1 GiB upload) get no warm-up
			}
			w := p
			w.Name, w.Duration = "warm-up "+p.Target.Name(), cfg.Warmup
			logf(&cfg, "%s for %v", w.Name, cfg.Warmup)
			RunPhase(ctx, w, &Live{})
		}
		if relayW != nil && relayW.sampler != nil {
			relayW.sampler.Reset()
		}
	}
	for _, p := range phases {
		if ctx.Err() != nil {
			break
		}
		var prof chan error
		if adminURL != "" && p.Target.Name() == "relay" {
			prof = make(chan error, 1)
			path := filepath.Join(cfg.ProfileDir, fileName(cfg.Scenario+"-"+p.Name)+".pprof")
			go func() { prof <- fetchProfile(ctx, adminURL, p.Duration, path) }()
		}
		pr := runMeasured(ctx, &cfg, p, watches{relay: relayW, jira: jiraW, rss: p.Target.Name() == "relay"})
		if prof != nil {
			if err := <-prof; err != nil {
				res.Notes = append(res.Notes, "relay profile: "+err.Error())
			}
		}
		res.runs = append(res.runs, pr.run)
		res.Phases = append(res.Phases, pr.result)
		res.hists = append(res.hists, pr.hists)
	}
	res.Interrupted = ctx.Err() != nil
	res.Machine.LoadAvg = append(res.Machine.LoadAvg, loadAvg())
	if relayW != nil {
		res.RelayHWM, _ = ReadHWM(relayW.pid)
	}
	if cfg.Compare == "direct" {
		res.Compare = compare(res.runs, res.Phases)
	}
	return res, nil
}

type measured struct {
	run    *phaseRun
	result PhaseResult
	hists  []*Histogram
}

// watches are the processes measured around a phase: the relay (CPU, and
// peak RSS when rss is set and it has a sampler), the fake Jira and a proxy
// (CPU of its whole process group).
type watches struct {
	relay, jira, proxy *procWatch
	rss                bool
}

// runMeasured plays one phase with the progress line and the processes'
// CPU and peak RSS around it.
func runMeasured(ctx context.Context, cfg *Config, p Phase, w watches) measured {
	live := &Live{}
	var prog *Progress
	if cfg.Log != nil {
		prog = StartProgress(cfg.Log, cfg.TTY, p.Name, live)
	}
	sampled := w.rss && w.relay != nil && w.relay.sampler != nil
	if sampled {
		w.relay.sampler.Reset()
	}
	r0, j0, x0, g0 := w.relay.cpu(), w.jira.cpu(), w.proxy.cpu(), SelfCPU()
	run := RunPhase(ctx, p, live)
	r1, j1, x1, g1 := w.relay.cpu(), w.jira.cpu(), w.proxy.cpu(), SelfCPU()
	if prog != nil {
		prog.Stop()
	}
	pr, hists := summarize(run)
	pr.GeneratorCPU = (g1 - g0).Seconds()
	if w.relay != nil {
		pr.Relay = &ProcResult{Pid: w.relay.pid, CPUSeconds: r1 - r0}
		if sampled {
			pr.Relay.PeakRSS = w.relay.sampler.Peak()
		}
	}
	if w.jira != nil {
		pr.FakeJira = &ProcResult{Pid: w.jira.pid, CPUSeconds: j1 - j0}
	}
	if w.proxy != nil {
		pr.Proxy = &ProcResult{Pid: w.proxy.pid, CPUSeconds: x1 - x0}
	}
	return measured{run: run, result: pr, hists: hists}
}

// buildPhases lays out the run: the main phase against the relay, or, with
// --compare direct, upload-only phases against the relay and straight at the
// fake Jira, alternated for --rounds rounds (the order flips every round, so
// that drift on a noisy machine hits both sides alike).
func buildPhases(cfg *Config, relay *RelayTarget, direct *JiraTarget) []Phase {
	base := Phase{Mix: cfg.Mix, Duration: cfg.Duration, Concurrency: cfg.Concurrency, Rate: cfg.Rate, Count: cfg.Count}
	var out []Phase
	if direct == nil {
		for r := range cfg.Rounds {
			p := base
			p.Target, p.Name = relay, phaseName("relay", r, cfg.Rounds)
			out = append(out, p)
		}
		return out
	}
	if !cfg.Mix.Only(OpUpload) {
		p := base
		p.Target, p.Name = relay, "relay mix"
		out = append(out, p)
	}
	var up Mix
	up[OpUpload] = 1
	for r := range cfg.Rounds {
		rp, dp := base, base
		rp.Mix, dp.Mix = up, up
		rp.Target, rp.Name = relay, phaseName("relay", r, cfg.Rounds)
		dp.Target, dp.Name = direct, phaseName("direct", r, cfg.Rounds)
		if r%2 == 0 {
			out = append(out, rp, dp)
		} else {
			out = append(out, dp, rp)
		}
	}
	return out
}

func phaseName(target string, round, rounds int) string {
	if rounds <= 1 {
		return target
	}
	return fmt.Sprintf("%s #%d", target, round+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// check validates a Config and fills its defaults.
func (c *Config) check() error {
	if c.Mix.total() == 0 {
		return errors.New("no operation mix")
	}
	if len(c.Sizes) == 0 {
		return errors.New("no size mix")
	}
	switch {
	case c.Duration <= 0:
		return errors.New("--duration must be more than 0")
	case c.Concurrency < 1 || c.Concurrency > 10000:
		return errors.New("--concurrency must be from 1 to 10000")
	case c.Rate < 0:
		return errors.New("--rate must be 0 (open loop) or more")
	case c.Count < 0:
		return errors.New("--count must be 0 (no bound) or more")
	case c.Compare != "" && c.Compare != "direct":
		return fmt.Errorf("--compare %q: only \"direct\" is known", c.Compare)
	case c.UploadBody != "raw" && c.UploadBody != "multipart":
		return fmt.Errorf("--upload-body %q: want raw or multipart", c.UploadBody)
	case c.Users < 1:
		return errors.New("--users must be 1 or more")
	case c.Conversations < 1:
		return errors.New("--conversations must be 1 or more")
	case c.Rounds < 1:
		return errors.New("--rounds must be 1 or more")
	case c.RequestTimeout <= 0:
		return errors.New("--request-timeout must be more than 0")
	case c.Relays < 0 || c.Relays > MaxRelays:
		return fmt.Errorf("--relays must be from 1 to %d", MaxRelays)
	}
	if c.Relays > 1 && c.Target != "" {
		return errors.New("--relays starts a fleet of relays: it does not go with --target")
	}
	if c.Target != "" {
		if c.InstanceID == "" || c.ClientKey == "" {
			return errors.New("--target needs --instance-id and --client-key")
		}
		if c.Compare == "direct" && c.JiraURL == "" {
			return errors.New("--target with --compare direct needs --jira-url (the Jira the instance points at)")
		}
		if c.TLS {
			return errors.New("--tls starts a fake Jira over HTTPS: it does not go with --target")
		}
	}
	if c.Compare == "direct" && !c.Mix.Has(OpUpload) {
		return errors.New("--compare direct compares uploads: the mix has none")
	}
	return nil
}

// fetchProfile saves the relay's CPU profile over d (whole seconds, at least
// one) from its admin port's /debug/pprof/profile.
func fetchProfile(ctx context.Context, adminURL string, d time.Duration, path string) error {
	secs := max(int(d/time.Second), 1)
	req, err := http.NewRequestWithContext(ctx, "GET", adminURL+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: d + 30*time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET /debug/pprof/profile: status %d", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fileName makes s safe as a file name.
func fileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, s)
}
