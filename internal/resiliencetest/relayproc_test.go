package resiliencetest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
)

// relayProc is the relay binary (./cmd/relay) running in its own process,
// so that its memory, goroutines and file descriptors are measured alone:
// not mixed with the embedded etcd, the fake Jiras and the simulated
// clients that share the test process.
type relayProc struct {
	URL   string // public port, http://127.0.0.1:port
	admin string // --admin-listen, http://127.0.0.1:port
	cmd   *exec.Cmd
}

// startRelayProc builds ./cmd/relay and runs it over the etcd at endpoints
// with plain-HTTP upstreams on loopback allowed and 127.0.0.1 as a trusted
// proxy; extra flags come last. It is killed at the end of the test.
func startRelayProc(t *testing.T, endpoints []string, extra ...string) *relayProc {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "relay")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/relay").CombinedOutput(); err != nil {
		t.Fatalf("build relay: %v\n%s", err, out)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	args := append([]string{
		"--listen", listen,
		"--admin-listen", admin,
		"--etcd-endpoints", strings.Join(endpoints, ","),
		"--allow-http-upstream",
		"--allowed-upstreams", "127.0.0.1",
		"--trusted-proxies", "127.0.0.1/32",
		// The soak registers its tenants from one address in a burst.
		"--registration-rps", "1000", "--registration-burst", "1000",
	}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	stderr := &limitedBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	p := &relayProc{URL: "http://" + listen, admin: "http://" + admin, cmd: cmd}
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("relay exited at start: %s", stderr.String())
		default:
		}
		if resp, err := hc.Get(p.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay not ready in 30 s: %s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// relaySample is one look at the relay process.
type relaySample struct {
	rss, heapInuse  uint64
	fds, goroutines int
}

// sample reads the process's resident set and open fds from /proc, and its
// goroutines and heap in use from its /metrics, as an operator would.
func (p *relayProc) sample() (relaySample, error) {
	var s relaySample
	pid := p.cmd.Process.Pid
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	s.rss = statusKB(b, "VmRSS:") << 10
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = len(ents)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(p.admin + "/metrics")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	s.goroutines = -1
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			s.goroutines, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			s.heapInuse, _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	if s.goroutines < 0 || s.heapInuse == 0 {
		return s, fmt.Errorf("no go_goroutines or go_memstats_heap_inuse_bytes on %s/metrics", p.admin)
	}
	return s, nil
}

// statusKB is the value in kB of a /proc/<pid>/status line ("VmRSS:").
func statusKB(status []byte, key string) uint64 {
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

// limitedBuffer keeps the first max bytes written to it (the relay's
// stderr, for a failure message) and drops the rest.
type limitedBuffer struct {
	mu  sync.Mutex
	b   bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
