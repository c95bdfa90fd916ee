package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Stack is the relay and fake Jira a run started (or found), with their
// processes when it started them. With Config.Relays > 1 it is a fleet:
// relay 1 embeds etcd and the others use it, under one --etcd-prefix.
type Stack struct {
	RelayURL string
	AdminURL string // the relay's --admin-listen (/debug/pprof), with Config.ProfileDir
	JiraURL  string
	CAFile   string // the fake Jira's CA, with TLS
	Relay    *Process
	FakeJira *Process
	// Relays, RelayURLs and AdminURLs (their --admin-listen: /metrics) are
	// every relay, relay 1 first.
	Relays    []*Process
	RelayURLs []string
	AdminURLs []string
	// EtcdURL is relay 1's embedded etcd client URL.
	EtcdURL string
	procs   []*Process
}

// Stop ends every process the stack started, last started first.
func (s *Stack) Stop() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].Stop()
	}
	s.procs = nil
}

// binaries builds cmd/relay and cmd/fakejira into dir unless cfg names
// prebuilt ones.
func binaries(ctx context.Context, cfg *Config, dir string) (relay, fake string, err error) {
	if cfg.RelayBin != "" && cfg.FakeJiraBin != "" {
		return cfg.RelayBin, cfg.FakeJiraBin, nil
	}
	src := cfg.Src
	if src == "" {
		if src, err = ModuleRoot("."); err != nil {
			return "", "", err
		}
	}
	logf(cfg, "building ./cmd/relay and ./cmd/fakejira from %s", src)
	bins, err := Build(ctx, src, dir, "./cmd/relay", "./cmd/fakejira")
	if err != nil {
		return "", "", err
	}
	relay, fake = bins[0], bins[1]
	if cfg.RelayBin != "" {
		relay = cfg.RelayBin
	}
	if cfg.FakeJiraBin != "" {
		fake = cfg.FakeJiraBin
	}
	return relay, fake, nil
}

// StartStack builds (or takes) the binaries and starts the fake Jira and the
// relay with embedded etcd on free loopback ports, data under dir; with tls
// the fake Jira serves HTTPS and the relay trusts its CA via --upstream-ca;
// with cfg.TLSFront too, the relay's front door serves HTTPS (Stack.CAFile
// is then the one CA both certificates chain to).
// The relay's limiter is opened wide so that the bench measures throughput.
func StartStack(ctx context.Context, cfg *Config, dir string, tls bool) (_ *Stack, err error) {
	relayBin, fakeBin, err := binaries(ctx, cfg, dir)
	if err != nil {
		return nil, err
	}
	if cfg.TLSFront && cfg.certs == nil {
		if !tls {
			return nil, errors.New("--tls-front needs --tls (TLS on both hops)")
		}
		cdir := filepath.Join(dir, "certs")
		if err := os.Mkdir(cdir, 0o700); err != nil {
			return nil, err
		}
		if cfg.certs, err = WriteTestCerts(cdir); err != nil {
			return nil, err
		}
	}
	s := &Stack{}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	env := CleanEnv()
	fargs := []string{"--listen", "127.0.0.1:0", "--no-hash", "--max-records", "64"}
	switch {
	case tls && cfg.certs != nil:
		s.CAFile = cfg.certs.CA
		fargs = append(fargs, "--tls", "--tls-cert", cfg.certs.Cert, "--tls-key", cfg.certs.Key)
	case tls:
		s.CAFile = filepath.Join(dir, "fakejira-ca.pem")
		fargs = append(fargs, "--tls", "--ca-out", s.CAFile)
	}
	fj, url, err := StartProcess("fakejira", fakeBin, fargs, env, true, 30*time.Second)
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, fj)
	s.FakeJira, s.JiraURL = fj, url

	n := max(cfg.Relays, 1)
	for i := range n {
		r, err := startRelay(ctx, cfg, relayBin, env, dir, i, s.EtcdURL, s.CAFile, tls)
		if err != nil {
			return nil, err
		}
		s.procs = append(s.procs, r.proc)
		s.Relays, s.RelayURLs, s.AdminURLs = append(s.Relays, r.proc), append(s.RelayURLs, r.url), append(s.AdminURLs, r.admin)
		if i == 0 {
			s.Relay, s.RelayURL, s.EtcdURL = r.proc, r.url, r.etcd
			if cfg.ProfileDir != "" {
				s.AdminURL = r.admin
			}
		}
	}
	if n > 1 {
		if err := waitMembers(ctx, s, n, 90*time.Second); err != nil {
			return nil, err
		}
		logf(cfg, "%d relays on one etcd (%s) · fake Jira %s (pid %d)", n, s.EtcdURL, s.JiraURL, fj.Pid())
		for i, p := range s.Relays {
			logf(cfg, "relay %d: %s (pid %d, admin %s)", i+1, s.RelayURLs[i], p.Pid(), s.AdminURLs[i])
		}
		return s, nil
	}
	logf(cfg, "relay %s (pid %d) · fake Jira %s (pid %d)", s.RelayURL, s.Relay.Pid(), s.JiraURL, fj.Pid())
	return s, nil
}

// frontHTTPS reports whether the relay's front door serves HTTPS, with
// cfg.certs: in the peers comparison's tls-both mode, or with TLSFront.
func (c *Config) frontHTTPS() bool {
	return (c.frontTLS || c.TLSFront) && c.certs != nil
}

// startedRelay is one relay process and its addresses.
type startedRelay struct {
	proc             *Process
	url, admin, etcd string
}

// startRelay starts relay i (0 is relay 1) on free loopback ports and waits
// until it is ready: relay 1 with its embedded etcd, the others with
// --etcd-endpoints etcdURL. The ports were free a moment ago; if another
// process took one in between, the relay exits at once and gets fresh
// ports (3 tries).
func startRelay(ctx context.Context, cfg *Config, bin string, env []string, dir string, i int, etcdURL, caFile string, tls bool) (*startedRelay, error) {
	name := "relay"
	if cfg.Relays > 1 {
		name = "relay " + strconv.Itoa(i+1)
	}
	scheme, ready := "http", &http.Client{Timeout: time.Second}
	if cfg.frontHTTPS() {
		var err error
		scheme = "https"
		if ready, err = caClient(cfg.certs.CA); err != nil {
			return nil, err
		}
	}
	for try := 1; ; try++ {
		var ports [4]int
		for k := range ports {
			p, err := FreePort()
			if err != nil {
				return nil, err
			}
			ports[k] = p
		}
		dataDir := filepath.Join(dir, "relay-data-"+strconv.Itoa(try))
		if i > 0 {
			dataDir = filepath.Join(dir, "relay"+strconv.Itoa(i+1)+"-data-"+strconv.Itoa(try))
		}
		rargs := relayArgs(cfg, dataDir, ports, caFile, tls)
		if i > 0 {
			rargs = fleetMemberArgs(rargs, etcdURL)
		}
		r := &startedRelay{url: scheme + "://127.0.0.1:" + strconv.Itoa(ports[0])}
		if i == 0 {
			r.etcd = "http://127.0.0.1:" + strconv.Itoa(ports[1])
		}
		r.admin = "http://127.0.0.1:" + strconv.Itoa(ports[3])
		proc, _, err := StartProcess(name, bin, rargs, env, false, 0)
		if err != nil {
			return nil, err
		}
		r.proc = proc
		err = waitReady(ctx, proc, ready, r.url+"/readyz", 90*time.Second)
		if err == nil {
			return r, nil
		}
		proc.Stop()
		if try == 3 || !strings.Contains(proc.LogTail(), "address already in use") {
			return nil, err
		}
	}
}

// caClient is an HTTP client that trusts only the CA in caFile.
func caClient(caFile string) (*http.Client, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	return &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil,
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

// waitReady polls url with c until it answers 200, the process exits, or
// timeout.
func waitReady(ctx context.Context, p *Process, c *http.Client, url string, timeout time.Duration) error {
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.Exited():
			return fmt.Errorf("%s exited before it was ready; log:\n%s", p.Name, p.LogTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s within %v; log:\n%s", p.Name, url, timeout, p.LogTail())
		}
	}
}

// logf writes one line to cfg.Log.
func logf(cfg *Config, format string, args ...any) {
	if cfg.Log != nil {
		fmt.Fprintf(cfg.Log, "bench: "+strings.TrimSuffix(format, "\n")+"\n", args...)
	}
}

// machine describes this computer.
func machine() Machine {
	m := Machine{CPUs: numCPU(), GoVersion: goVersion()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.LoadAvg = []string{loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// relayArgs is the relay's command line: loopback ports, embedded etcd under
// dataDir, plain-HTTP loopback upstreams allowed, the limiter opened wide
// (or the tenant limit of the fleet scenario).
func relayArgs(cfg *Config, dataDir string, ports [4]int, caFile string, tls bool) []string {
	largest := int64(1 << 30)
	if cfg.Sizes != nil {
		largest = max(largest, cfg.Sizes.Largest())
	}
	conns := strconv.Itoa(max(64, 2*cfg.Concurrency))
	rps, burst := "1000000", "1000000"
	if cfg.instanceRPS > 0 {
		rps, burst = strconv.FormatFloat(cfg.instanceRPS, 'g', -1, 64), strconv.Itoa(cfg.instanceBurst)
	}
	args := []string{
		"--listen", "127.0.0.1:" + strconv.Itoa(ports[0]),
		"--etcd-listen", "http://127.0.0.1:" + strconv.Itoa(ports[1]),
		"--etcd-peer-listen", "http://127.0.0.1:" + strconv.Itoa(ports[2]),
		"--data-dir", dataDir,
		"--allow-http-upstream", "--allowed-upstreams", "127.0.0.1",
		"--instance-rps", rps, "--instance-burst", burst,
		"--ip-rps", "1000000", "--ip-burst", "1000000",
		"--registration-rps", "1000000", "--registration-burst", "1000000",
		"--instance-max-streams", "4096", "--upstream-max-conns", conns,
		"--max-attachment-bytes", strconv.FormatInt(largest, 10),
		"--drain-timeout", "5s",
	}
	if tls {
		args = append(args, "--upstream-ca", caFile)
	}
	if cfg.frontHTTPS() {
		args = append(args, "--tls-cert", cfg.certs.Cert, "--tls-key", cfg.certs.Key)
	}
	// Always a free port: the relay's default, 127.0.0.1:9090, would make
	// two runs at once (or a relay already on the machine) collide.
	args = append(args, "--admin-listen", "127.0.0.1:"+strconv.Itoa(ports[3]))
	return append(args, cfg.RelayFlags...)
}
