package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ModuleRoot finds the directory of the relay's go.mod, from dir upwards.
func ModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/jira-relay/jira-relay\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of github.com/jira-relay/jira-relay here or above; run from the repository or give --src")
		}
		dir = parent
	}
}

// Build compiles the named main packages (e.g. "./cmd/relay") of the module
// at src into dir, one binary each, with one `go build` so that shared
// packages compile once. It returns the binaries' paths in order.
func Build(ctx context.Context, src, dir string, pkgs ...string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go build %s: %v\n%s", strings.Join(pkgs, " "), err, out)
	}
	var bins []string
	for _, p := range pkgs {
		bins = append(bins, filepath.Join(dir, filepath.Base(p)))
	}
	return bins, nil
}

// FreePort is a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Process is a child started in its own process group, so that Stop ends it
// and everything it started. Its standard error (and standard output, after
// what Start read of it) is kept as a 64 KiB tail for error messages, never
// on disk: a relay logging every request at 50,000 req/s would fill /tmp.
type Process struct {
	Name    string
	cmd     *exec.Cmd
	log     *tailBuffer
	done    chan struct{}
	waitErr error
	once    sync.Once
}

// StartProcess starts bin with args in its own process group. When
// firstLine is true it returns the first line of standard output too
// (waiting up to timeout for it); the rest goes to the log tail.
func StartProcess(name, bin string, args []string, env []string, firstLine bool, timeout time.Duration) (*Process, string, error) {
	tail := &tailBuffer{max: 64 << 10}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stderr = tail
	// Setpgid: Stop signals the whole group. Pdeathsig: if the harness is
	// killed outright, the kernel ends its children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stdout io.ReadCloser
	var err error
	if firstLine {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, "", err
		}
	} else {
		cmd.Stdout = tail
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, log: tail, done: make(chan struct{})}
	line := ""
	lineErr := make(chan error, 1)
	copied := make(chan struct{})
	if firstLine {
		go func() {
			defer close(copied)
			br := bufio.NewReader(stdout)
			l, err := br.ReadString('\n')
			line = strings.TrimSpace(l)
			lineErr <- err
			io.Copy(tail, br)
		}()
	} else {
		close(copied)
	}
	go func() {
		<-copied // StdoutPipe: read everything before Wait closes it
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	if firstLine {
		select {
		case err := <-lineErr:
			if err != nil || line == "" {
				p.Stop()
				return nil, "", fmt.Errorf("%s printed no first line (%v); log:\n%s", name, err, p.LogTail())
			}
		case <-p.done:
			return nil, "", fmt.Errorf("%s exited: %v; log:\n%s", name, p.waitErr, p.LogTail())
		case <-time.After(timeout):
			p.Stop()
			return nil, "", fmt.Errorf("%s printed nothing within %v; log:\n%s", name, timeout, p.LogTail())
		}
	}
	return p, line, nil
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the child has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// LogTail is the last 4 KiB of the child's output.
func (p *Process) LogTail() string {
	b := p.log.Bytes()
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

// Write implements io.Writer.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2*t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// Bytes is a copy of the last max bytes.
func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.b
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	return append([]byte(nil), b...)
}

// Stop sends SIGTERM to the child's process group, waits up to 10 s, then
// sends SIGKILL, and waits for the child to be reaped.
func (p *Process) Stop() {
	p.once.Do(func() {
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
		// Anything the child left in its group goes too.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
}

// CleanEnv is the harness's environment without RELAY_* variables, so that
// a tester's shell cannot change the relay the harness starts.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RELAY_") {
			env = append(env, kv)
		}
	}
	return env
}
