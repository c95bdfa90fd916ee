package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"
)

// PeerRow is one target of the proxy comparison: medians over the rounds.
type PeerRow struct {
	Side
	VsDirect float64 `json:"vsDirect"` // MiB/s ÷ direct MiB/s
}

// PeersResult is the proxy comparison behind bench/peers/run.sh: the same
// upload load straight at the fake Jira, through the relay, and through
// nginx, HAProxy and Caddy in front of the same fake Jira.
type PeersResult struct {
	Rounds  int       `json:"rounds"`
	Rows    []PeerRow `json:"rows"`
	Missing []string  `json:"missing,omitempty"`
}

// WriteTable prints the comparison.
func (p *PeersResult) WriteTable(out io.Writer) {
	fmt.Fprintf(out, "uploads through each proxy: medians of %d interleaved round(s)\n", p.Rounds)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tMiB/s\t× direct\treq/s\tp50 ms\tp99 ms\tproxy CPU s/round\terrors\trounds MiB/s\t")
	for _, r := range p.Rows {
		var rounds []string
		for _, v := range r.Rounds {
			rounds = append(rounds, fmt.Sprintf("%.0f", v))
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.3f\t%.2f\t%.1f\t%.1f\t%.2f\t%d\t%s\t\n", r.Target, r.MiBPerSec, r.VsDirect, r.ReqPerSec,
			r.P50Ms, r.P99Ms, r.CPUSeconds, r.Errors, strings.Join(rounds, " "))
	}
	tw.Flush()
	for _, m := range p.Missing {
		fmt.Fprintf(out, "not measured: %s\n", m)
	}
}

// peerSpec is how one proxy is configured and started.
type peerSpec struct {
	name     string
	bin      string   // looked up in PATH, /usr/sbin, /usr/bin
	template string   // file in the peers dir
	args     []string // after the binary; {{conf}} is the rendered config
}

var peerSpecs = map[string]peerSpec{
	"nginx":   {name: "nginx", bin: "nginx", template: "nginx.conf", args: []string{"-p", "{{dir}}", "-c", "{{conf}}", "-e", "stderr"}},
	"haproxy": {name: "haproxy", bin: "haproxy", template: "haproxy.cfg", args: []string{"-db", "-f", "{{conf}}"}},
	"caddy":   {name: "caddy", bin: "caddy", template: "Caddyfile", args: []string{"run", "--config", "{{conf}}", "--adapter", "caddyfile"}},
}

// peerData fills a proxy's config template.
type peerData struct {
	Listen   string // 127.0.0.1:port the proxy listens on
	Upstream string // 127.0.0.1:port of the fake Jira
	Dir      string // the proxy's private temp dir
	Root     bool   // running as root (nginx then needs "user root;")
}

func lookBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (bench/peers/run.sh installs it from Debian)", name)
}

// startPeer renders the proxy's config into its own dir and starts it in
// its own process group, waiting until it accepts connections.
func startPeer(ctx context.Context, cfg *Config, spec peerSpec, dir, upstream string) (*Process, string, error) {
	bin, err := lookBin(spec.bin)
	if err != nil {
		return nil, "", err
	}
	tb, err := os.ReadFile(filepath.Join(cfg.PeersDir, spec.template))
	if err != nil {
		return nil, "", err
	}
	tmpl, err := template.New(spec.template).Option("missingkey=error").Parse(string(tb))
	if err != nil {
		return nil, "", err
	}
	pdir := filepath.Join(dir, spec.name)
	if err := os.MkdirAll(filepath.Join(pdir, "logs"), 0o755); err != nil {
		return nil, "", err
	}
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	conf := filepath.Join(pdir, spec.template)
	f, err := os.Create(conf)
	if err != nil {
		return nil, "", err
	}
	err = tmpl.Execute(f, peerData{Listen: listen, Upstream: upstream, Dir: pdir, Root: os.Geteuid() == 0})
	f.Close()
	if err != nil {
		return nil, "", err
	}
	var args []string
	for _, a := range spec.args {
		args = append(args, strings.NewReplacer("{{conf}}", conf, "{{dir}}", pdir+"/").Replace(a))
	}
	env := append(CleanEnv(), "HOME="+pdir, "XDG_DATA_HOME="+pdir, "XDG_CONFIG_HOME="+pdir)
	p, _, err := StartProcess(spec.name, bin, args, env, false, 0)
	if err != nil {
		return nil, "", err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			return p, "http://" + listen, nil
		}
		select {
		case <-p.Exited():
			tail := strings.TrimSpace(p.LogTail())
			return nil, "", fmt.Errorf("%s exited at start: %s", spec.name, tail[strings.LastIndexByte(tail, '\n')+1:])
		case <-ctx.Done():
			p.Stop()
			return nil, "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, "", fmt.Errorf("%s did not listen on %s within 15 s; log:\n%s", spec.name, listen, p.LogTail())
		}
	}
}

// RunPeers is the proxy comparison: one fake Jira, the relay, and each of
// cfg.Peers in front of the same fake Jira; the upload-only load of cfg runs
// at every target in turn, for cfg.Rounds rounds with the order rotated each
// round; the table reports medians. Proxies get Jira-style multipart
// requests to /rest/api/3/issue/KEY/attachments, the relay its own route.
func RunPeers(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if !cfg.Mix.Only(OpUpload) {
		return nil, fmt.Errorf("--peers compares uploads: use an upload-only mix (e.g. --scenario upload-64mib)")
	}
	if cfg.Target != "" || cfg.TLS {
		return nil, fmt.Errorf("--peers starts its own relay and plain-HTTP fake Jira: drop --target and --tls")
	}
	dir, err := os.MkdirTemp("", "jira-relay-peers-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res := &Result{Scenario: cfg.Scenario + " (peers)", Command: cfg.Command, Started: time.Now(), Machine: machine(),
		Settings: Settings{Target: "direct, relay, " + strings.Join(cfg.Peers, ", "), Mix: cfg.Mix.String(), Sizes: cfg.Sizes.String(),
			Duration: cfg.Duration.String(), Concurrency: cfg.Concurrency, Rate: cfg.Rate, Count: cfg.Count,
			UploadBody: cfg.UploadBody, Rounds: cfg.Rounds}}

	st, err := StartStack(ctx, &cfg, dir, false)
	if err != nil {
		return nil, err
	}
	defer st.Stop()
	relayE, err := NewEndpoint(st.RelayURL, cfg.Concurrency+8, "", false)
	if err != nil {
		return nil, err
	}
	defer relayE.Close()
	relayE.AbortOn(ctx)
	tenant, err := Register(relayE, st.JiraURL)
	if err != nil {
		return nil, err
	}
	if err := Prepare(ctx, relayE, tenant, 1, 1); err != nil {
		return nil, err
	}
	upstream := strings.TrimPrefix(st.JiraURL, "http://")

	type tgt struct {
		t   Target
		pid int
	}
	direct, err := NewEndpoint(st.JiraURL, cfg.Concurrency+8, "", false)
	if err != nil {
		return nil, err
	}
	defer direct.Close()
	direct.AbortOn(ctx)
	targets := []tgt{
		{&JiraTarget{Label: "direct", E: direct, Sizes: cfg.Sizes, Timeout: cfg.RequestTimeout}, 0},
		{NewRelayTarget(relayE, tenant, cfg.Sizes, cfg.UploadBody, cfg.RequestTimeout), st.Relay.Pid()},
	}
	var peersResult PeersResult
	for _, name := range cfg.Peers {
		spec, ok := peerSpecs[name]
		if !ok {
			return nil, fmt.Errorf("unknown peer %q (want nginx, haproxy, caddy)", name)
		}
		p, url, err := startPeer(ctx, &cfg, spec, dir, upstream)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			peersResult.Missing = append(peersResult.Missing, name+": "+firstLine(err.Error()))
			logf(&cfg, "skipping %s: %v", name, err)
			continue
		}
		defer p.Stop()
		e, err := NewEndpoint(url, cfg.Concurrency+8, "", false)
		if err != nil {
			return nil, err
		}
		defer e.Close()
		e.AbortOn(ctx)
		targets = append(targets, tgt{&JiraTarget{Label: name, E: e, Sizes: cfg.Sizes, Timeout: cfg.RequestTimeout}, p.Pid()})
		logf(&cfg, "%s listening at %s (pid %d)", name, url, p.Pid())
	}
	fj := &procWatch{pid: st.FakeJira.Pid()}
	base := Phase{Mix: cfg.Mix, Duration: cfg.Duration, Concurrency: cfg.Concurrency, Rate: cfg.Rate, Count: cfg.Count}
	if cfg.Warmup > 0 {
		for _, t := range targets {
			w := base
			w.Target, w.Name, w.Duration = t.t, "warm-up "+t.t.Name(), cfg.Warmup
			logf(&cfg, "%s for %v", w.Name, cfg.Warmup)
			RunPhase(ctx, w, &Live{})
		}
	}
	for r := 0; r < cfg.Rounds && ctx.Err() == nil; r++ {
		for i := range targets {
			t := targets[(i+r)%len(targets)]
			if ctx.Err() != nil {
				break
			}
			p := base
			p.Target, p.Name = t.t, phaseName(t.t.Name(), r, cfg.Rounds)
			var proxy *procWatch
			if t.pid > 0 {
				proxy = &procWatch{pid: t.pid}
			}
			m := runMeasured(ctx, &cfg, p, watches{jira: fj, proxy: proxy})
			res.runs = append(res.runs, m.run)
			res.Phases = append(res.Phases, m.result)
			res.hists = append(res.hists, m.hists)
		}
	}
	res.Interrupted = ctx.Err() != nil
	res.Machine.LoadAvg = append(res.Machine.LoadAvg, loadAvg())
	peersResult.Rounds = cfg.Rounds
	var directMiB float64
	for i, t := range targets {
		name := t.t.Name()
		s := side(res.runs, res.Phases, name)
		if i == 0 {
			directMiB = s.MiBPerSec
		}
		peersResult.Rows = append(peersResult.Rows, PeerRow{Side: s, VsDirect: ratio(s.MiBPerSec, directMiB)})
	}
	res.Peers = &peersResult
	return res, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
