package resiliencetest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
)

// The connections of TestTenThousandConnections are held by a child process
// (this test binary, re-run with holderEnv set), so that the relay's process
// needs file descriptors only for its own ends: RLIMIT_NOFILE here is 20,000
// and cannot be raised, which is too few for both ends of 10,000 connections.
const holderEnv = "JIRA_RELAY_TEST_HOLD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(holderEnv); spec != "" {
		os.Exit(holdConnections(spec))
	}
	os.Exit(etcdtest.Main(m))
}

// holdConnections opens n connections to addr ("addr n"), sends GET /healthz
// on every other one and reads the answer, prints "ready <failures>", then
// holds them until its stdin closes.
func holdConnections(spec string) int {
	var addr string
	var n int
	if _, err := fmt.Sscan(spec, &addr, &n); err != nil {
		fmt.Println("bad spec", err)
		return 2
	}
	conns := make([]net.Conn, n)
	var failed atomic.Int32
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					failed.Add(1)
					continue
				}
				conns[i] = c
				if i%2 == 1 {
					_ = c.SetDeadline(time.Now().Add(20 * time.Second))
					if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n"); err != nil {
						failed.Add(1)
						continue
					}
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					if err != nil || resp.StatusCode != 200 {
						failed.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = c.SetDeadline(time.Time{})
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("ready %d\n", failed.Load())
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
	return 0
}

// holder is a child process holding connections to the relay.
type holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startHolder holds n connections to addr from a child process and returns
// once they are open (and every other one served), with the failures counted.
func startHolder(t *testing.T, addr string, n int) (*holder, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"="+addr+" "+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, stdin: stdin}
	t.Cleanup(h.release)
	var failed int
	line, err := bufio.NewReader(out).ReadString('\n')
	if _, serr := fmt.Sscanf(line, "ready %d", &failed); err != nil || serr != nil {
		t.Fatalf("holder: %q %v", line, err)
	}
	return h, failed
}

// release closes the held connections and waits for the child to exit.
func (h *holder) release() {
	if h.stdin != nil {
		_ = h.stdin.Close()
		h.stdin = nil
		_ = h.cmd.Wait()
	}
}
