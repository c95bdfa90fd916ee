package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Stack is the relay and fake Jira a run started (or found), with their
// processes when it started them.
type Stack struct {
	RelayURL string
	AdminURL string // the relay's --admin-listen (/debug/pprof), with Config.ProfileDir
	JiraURL  string
	CAFile   string // the fake Jira's CA, with TLS
	Relay    *Process
	FakeJira *Process
	procs    []*Process
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
// the fake Jira serves HTTPS and the relay trusts its CA via --upstream-ca.
// The relay's limiter is opened wide so that the bench measures throughput.
func StartStack(ctx context.Context, cfg *Config, dir string, tls bool) (_ *Stack, err error) {
	relayBin, fakeBin, err := binaries(ctx, cfg, dir)
	if err != nil {
		return nil, err
	}
	s := &Stack{}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	env := CleanEnv()
	fargs := []string{"--listen", "127.0.0.1:0", "--no-hash", "--max-records", "64"}
	if tls {
		s.CAFile = filepath.Join(dir, "fakejira-ca.pem")
		fargs = append(fargs, "--tls", "--ca-out", s.CAFile)
	}
	fj, url, err := StartProcess("fakejira", fakeBin, fargs, env, true, 30*time.Second)
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, fj)
	s.FakeJira, s.JiraURL = fj, url

	var ports [4]int
	for i := range ports {
		if ports[i], err = FreePort(); err != nil {
			return nil, err
		}
	}
	rargs := relayArgs(cfg, filepath.Join(dir, "relay-data-1"), ports, s.CAFile, tls)
	// The ports were free a moment ago; if another process took one in
	// between, the relay exits at once and gets fresh ports (3 tries).
	for try := 1; ; try++ {
		relay, _, err := StartProcess("relay", relayBin, rargs, env, false, 0)
		if err != nil {
			return nil, err
		}
		s.procs = append(s.procs, relay)
		s.Relay, s.RelayURL = relay, "http://127.0.0.1:"+strconv.Itoa(ports[0])
		err = waitReady(ctx, relay, s.RelayURL+"/readyz", 90*time.Second)
		if err == nil {
			break
		}
		if try == 3 || !strings.Contains(relay.LogTail(), "address already in use") {
			return nil, err
		}
		relay.Stop()
		s.procs = s.procs[:len(s.procs)-1]
		for i := range ports {
			if ports[i], err = FreePort(); err != nil {
				return nil, err
			}
		}
		rargs = relayArgs(cfg, filepath.Join(dir, "relay-data-"+strconv.Itoa(try+1)), ports, s.CAFile, tls)
	}
	relay := s.Relay
	if cfg.ProfileDir != "" {
		s.AdminURL = "http://127.0.0.1:" + strconv.Itoa(ports[3])
	}
	logf(cfg, "relay %s (pid %d) · fake Jira %s (pid %d)", s.RelayURL, relay.Pid(), s.JiraURL, fj.Pid())
	return s, nil
}

// waitReady polls url until it answers 200, the process exits, or timeout.
func waitReady(ctx context.Context, p *Process, url string, timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second}
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
// dataDir, plain-HTTP loopback upstreams allowed, the limiter opened wide.
func relayArgs(cfg *Config, dataDir string, ports [4]int, caFile string, tls bool) []string {
	largest := int64(1 << 30)
	if cfg.Sizes != nil {
		largest = max(largest, cfg.Sizes.Largest())
	}
	conns := strconv.Itoa(max(64, 2*cfg.Concurrency))
	args := []string{
		"--listen", "127.0.0.1:" + strconv.Itoa(ports[0]),
		"--etcd-listen", "http://127.0.0.1:" + strconv.Itoa(ports[1]),
		"--etcd-peer-listen", "http://127.0.0.1:" + strconv.Itoa(ports[2]),
		"--data-dir", dataDir,
		"--allow-http-upstream", "--allowed-upstreams", "127.0.0.1",
		"--instance-rps", "1000000", "--instance-burst", "1000000",
		"--ip-rps", "1000000", "--ip-burst", "1000000",
		"--registration-rps", "1000000", "--registration-burst", "1000000",
		"--instance-max-streams", "4096", "--upstream-max-conns", conns,
		"--max-attachment-bytes", strconv.FormatInt(largest, 10),
		"--drain-timeout", "5s",
	}
	if tls {
		args = append(args, "--upstream-ca", caFile)
	}
	if cfg.ProfileDir != "" {
		args = append(args, "--admin-listen", "127.0.0.1:"+strconv.Itoa(ports[3]))
	}
	return append(args, cfg.RelayFlags...)
}
