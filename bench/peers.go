package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"
)

// The modes of the proxy comparison (--peers-mode): which hops speak TLS.
const (
	PeersPlain       = "plain"        // HTTP on both hops
	PeersTLSUpstream = "tls-upstream" // the fake Jira serves HTTPS, every path verifies it against the run's test CA
	PeersTLSBoth     = "tls-both"     // and every front door serves HTTPS too
)

// PeersModes are the modes, in the order "all" runs them.
var PeersModes = []string{PeersPlain, PeersTLSUpstream, PeersTLSBoth}

// ParsePeersModes reads --peers-mode: one mode, a comma list of modes (run
// one after the other, in the order given) or "all".
func ParsePeersModes(s string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		return slices.Clone(PeersModes), nil
	}
	var out []string
	for _, m := range strings.Split(s, ",") {
		m = strings.TrimSpace(m)
		if !slices.Contains(PeersModes, m) {
			return nil, fmt.Errorf("unknown mode %q (want %s, a comma list of them, or all)", m, strings.Join(PeersModes, ", "))
		}
		if slices.Contains(out, m) {
			return nil, fmt.Errorf("mode %s given twice", m)
		}
		out = append(out, m)
	}
	return out, nil
}

// peersModeText says what a mode's hops speak.
func peersModeText(mode string) string {
	switch mode {
	case PeersTLSUpstream:
		return "client → front door HTTP, front door → fake Jira HTTPS (verified against the run's test CA)"
	case PeersTLSBoth:
		return "client → front door HTTPS, front door → fake Jira HTTPS (verified against the run's test CA)"
	}
	return "client → front door HTTP, front door → fake Jira HTTP"
}

// PeerRow is one path of the proxy comparison: medians over the rounds.
type PeerRow struct {
	Side
	Path     string  `json:"path"`     // direct, relay, nginx, haproxy, caddy
	VsDirect float64 `json:"vsDirect"` // MiB/s ÷ direct MiB/s
	// CPUPerGiB is the CPU seconds per GiB uploaded of the path's own
	// processes (the proxy's whole process group: nginx's master and
	// workers; the relay): the median over the rounds. Direct has none.
	CPUPerGiB float64 `json:"cpuSecondsPerGiB,omitempty"`
	// Processes is how many processes the path's group had at the end.
	Processes int `json:"processes,omitempty"`
	// JiraCPUPerGiB is the fake Jira's CPU seconds per GiB on this path.
	JiraCPUPerGiB float64 `json:"fakeJiraCpuSecondsPerGiB"`
}

// PeersResult is one mode of the proxy comparison behind bench/peers/run.sh:
// the same upload load straight at the fake Jira, through the relay, and
// through nginx, HAProxy and Caddy in front of the same fake Jira.
type PeersResult struct {
	Mode     string    `json:"mode"`
	Protocol string    `json:"protocol"` // what the hops speak
	Rounds   int       `json:"rounds"`
	Rows     []PeerRow `json:"rows"`
	Missing  []string  `json:"missing,omitempty"`
}

// WriteTable prints the comparison.
func (p *PeersResult) WriteTable(out io.Writer) {
	fmt.Fprintf(out, "peers mode %s: %s; HTTP/1.1 keep-alive; medians of %d interleaved round(s)\n", p.Mode, p.Protocol, p.Rounds)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tMiB/s\t× direct\tCPU s/GiB\tprocesses\tfake Jira CPU s/GiB\treq/s\tp50 ms\tp99 ms\trequests\terrors\trounds MiB/s\t")
	for _, r := range p.Rows {
		var rounds []string
		for _, v := range r.Rounds {
			rounds = append(rounds, fmt.Sprintf("%.0f", v))
		}
		cpu, procs := "-", "-"
		if r.Processes > 0 {
			cpu, procs = fmt.Sprintf("%.2f", r.CPUPerGiB), strconv.Itoa(r.Processes)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.3f\t%s\t%s\t%.2f\t%.2f\t%.1f\t%.1f\t%d\t%d\t%s\t\n", r.Path, r.MiBPerSec, r.VsDirect, cpu, procs,
			r.JiraCPUPerGiB, r.ReqPerSec, r.P50Ms, r.P99Ms, r.Requests, r.Errors, strings.Join(rounds, " "))
	}
	tw.Flush()
	fmt.Fprintln(out, "direct: the client straight at the fake Jira, over the front door → fake Jira protocol; CPU s/GiB: CPU seconds of the path's own\n"+
		"processes (the proxy's process group, master and every worker included; the relay) per GiB uploaded")
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

	// UpstreamTLS: the fake Jira serves HTTPS; verify it against CA, naming
	// it ServerName (the certificate's DNS name, also sent as SNI).
	UpstreamTLS bool
	// FrontTLS: serve HTTPS on Listen with Cert and Key (Bundle: both in one
	// file, for HAProxy).
	FrontTLS   bool
	CA         string
	Cert       string
	Key        string
	Bundle     string
	ServerName string
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
func startPeer(ctx context.Context, cfg *Config, spec peerSpec, dir string, data peerData) (*Process, string, error) {
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
	data.Listen, data.Dir, data.Root = listen, pdir, os.Geteuid() == 0
	err = tmpl.Execute(f, data)
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
			scheme := "http"
			if data.FrontTLS {
				scheme = "https"
			}
			return p, scheme + "://" + listen, nil
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

// named is a target under another name: the relay's, in a run of more than
// one mode.
type named struct {
	Target
	name string
}

func (n named) Name() string { return n.name }

// RunPeers is the proxy comparison: for each of cfg.PeersModes (plain when
// none) in turn, one fake Jira, the relay, and each of cfg.Peers in front of
// the same fake Jira; the upload-only load of cfg runs at every path, for
// cfg.Rounds rounds with the order rotated each round; one table of medians
// per mode. Proxies get Jira-style multipart requests to
// /rest/api/3/issue/KEY/attachments, the relay its own route. The TLS modes
// use a test CA and a certificate for 127.0.0.1 and localhost made for the
// run.
func RunPeers(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if !cfg.Mix.Only(OpUpload) {
		return nil, fmt.Errorf("--peers compares uploads: use an upload-only mix (e.g. --scenario upload-64mib)")
	}
	if cfg.Target != "" || cfg.TLS {
		return nil, fmt.Errorf("--peers starts its own relay and fake Jira: drop --target and --tls (--peers-mode tls-upstream or tls-both puts TLS on the hops)")
	}
	modes := cfg.PeersModes
	if len(modes) == 0 {
		modes = []string{PeersPlain}
	}
	for _, m := range modes {
		if !slices.Contains(PeersModes, m) {
			return nil, fmt.Errorf("--peers-mode: unknown mode %q", m)
		}
	}
	for _, name := range cfg.Peers {
		if _, ok := peerSpecs[name]; !ok {
			return nil, fmt.Errorf("unknown peer %q (want nginx, haproxy, caddy)", name)
		}
	}
	dir, err := os.MkdirTemp("", "jira-relay-peers-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res := &Result{Scenario: cfg.Scenario + " (peers: " + strings.Join(modes, ", ") + ")", Command: cfg.Command, Started: time.Now(), Machine: machine(),
		Settings: Settings{Target: "direct, relay, " + strings.Join(cfg.Peers, ", "), Mix: cfg.Mix.String(), Sizes: cfg.Sizes.String(),
			Duration: cfg.Duration.String(), Concurrency: cfg.Concurrency, Rate: cfg.Rate, Count: cfg.Count,
			UploadBody: cfg.UploadBody, Rounds: cfg.Rounds, RelayFlags: cfg.RelayFlags}}
	// Build once for every mode.
	if cfg.RelayBin, cfg.FakeJiraBin, err = binaries(ctx, &cfg, dir); err != nil {
		return nil, err
	}
	for _, m := range modes {
		if m != PeersPlain {
			res.Settings.TLS = true
			cdir := filepath.Join(dir, "certs")
			if err := os.Mkdir(cdir, 0o700); err != nil {
				return nil, err
			}
			if cfg.certs, err = WriteTestCerts(cdir); err != nil {
				return nil, err
			}
			break
		}
	}
	for i, mode := range modes {
		if ctx.Err() != nil {
			break
		}
		logf(&cfg, "peers mode %s (%d of %d): %s", mode, i+1, len(modes), peersModeText(mode))
		pr, err := runPeersMode(ctx, cfg, res, filepath.Join(dir, mode), mode, len(modes) > 1)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return nil, fmt.Errorf("peers mode %s: %w", mode, err)
		}
		res.Peers = append(res.Peers, pr)
	}
	res.Interrupted = ctx.Err() != nil
	res.Machine.LoadAvg = append(res.Machine.LoadAvg, loadAvg())
	if len(res.Peers) == 0 && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return res, nil
}

// runPeersMode is one mode of RunPeers, in dir (removed at the end): its
// own fake Jira, relay and proxies, stopped when it returns; its phases are
// appended to res. With multi, the paths' names carry the mode.
func runPeersMode(ctx context.Context, cfg Config, res *Result, dir, mode string, multi bool) (*PeersResult, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	upTLS, frontTLS := mode != PeersPlain, mode == PeersTLSBoth
	ca := ""
	if upTLS {
		ca = cfg.certs.CA
	} else {
		cfg.certs = nil
	}
	cfg.frontTLS = frontTLS
	label := func(name string) string {
		if multi {
			return name + " " + mode
		}
		return name
	}

	st, err := StartStack(ctx, &cfg, dir, upTLS)
	if err != nil {
		return nil, err
	}
	defer st.Stop()
	relayE, err := NewEndpoint(st.RelayURL, cfg.Concurrency+8, ca, false)
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
	u, err := url.Parse(st.JiraURL)
	if err != nil {
		return nil, err
	}

	type tgt struct {
		t    Target
		path string
		pid  int // the path's own process group; 0: none
	}
	direct, err := NewEndpoint(st.JiraURL, cfg.Concurrency+8, ca, false)
	if err != nil {
		return nil, err
	}
	defer direct.Close()
	direct.AbortOn(ctx)
	targets := []tgt{
		{&JiraTarget{Label: label("direct"), E: direct, Sizes: cfg.Sizes, Timeout: cfg.RequestTimeout}, "direct", 0},
		{named{NewRelayTarget(relayE, tenant, cfg.Sizes, cfg.UploadBody, cfg.RequestTimeout), label("relay")}, "relay", st.Relay.Pid()},
	}
	pr := &PeersResult{Mode: mode, Protocol: peersModeText(mode), Rounds: cfg.Rounds}
	data := peerData{Upstream: u.Host, UpstreamTLS: upTLS, FrontTLS: frontTLS, ServerName: "localhost"}
	if cfg.certs != nil {
		data.CA, data.Cert, data.Key, data.Bundle = cfg.certs.CA, cfg.certs.Cert, cfg.certs.Key, cfg.certs.Bundle
	}
	for _, name := range cfg.Peers {
		p, addr, err := startPeer(ctx, &cfg, peerSpecs[name], dir, data)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			pr.Missing = append(pr.Missing, name+": "+firstLine(err.Error()))
			logf(&cfg, "skipping %s: %v", name, err)
			continue
		}
		defer p.Stop()
		e, err := NewEndpoint(addr, cfg.Concurrency+8, ca, false)
		if err != nil {
			return nil, err
		}
		defer e.Close()
		e.AbortOn(ctx)
		targets = append(targets, tgt{&JiraTarget{Label: label(name), E: e, Sizes: cfg.Sizes, Timeout: cfg.RequestTimeout}, name, p.Pid()})
		logf(&cfg, "%s listening at %s (pid %d)", name, addr, p.Pid())
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
	first := len(res.runs)
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
	runs, phases := res.runs[first:], res.Phases[first:]
	var directMiB float64
	for i, t := range targets {
		s := side(runs, phases, t.t.Name())
		if i == 0 {
			directMiB = s.MiBPerSec
		}
		row := PeerRow{Side: s, Path: t.path, VsDirect: ratio(s.MiBPerSec, directMiB)}
		var own, jira []float64
		for k, run := range runs {
			o := run.Stats.ops[OpUpload]
			if run.Phase.Target.Name() != t.t.Name() || o == nil || o.bytes == 0 {
				continue
			}
			gib := float64(o.bytes) / (1 << 30)
			if p := phases[k].Proxy; p != nil {
				own = append(own, p.CPUSeconds/gib)
			}
			if p := phases[k].FakeJira; p != nil {
				jira = append(jira, p.CPUSeconds/gib)
			}
		}
		row.CPUPerGiB, row.JiraCPUPerGiB = median(own), median(jira)
		if t.pid > 0 {
			row.Processes = len(GroupPids(t.pid))
		}
		pr.Rows = append(pr.Rows, row)
	}
	return pr, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
