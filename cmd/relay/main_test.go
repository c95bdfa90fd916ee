package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
)

var relayBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "relay-bin")
	if err != nil {
		panic(err)
	}
	relayBin = filepath.Join(dir, "relay")
	if out, err := exec.Command("go", "build", "-o", relayBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build relay: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is the process output, written by exec's copier and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a relay process started by a test.
type proc struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	done   chan struct{}
	listen string
}

func startRelay(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(relayBin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: out, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) exitCode(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("relay did not exit within %v; output:\n%s", within, p.out)
		return -1
	}
}

func waitHTTP(t *testing.T, c *http.Client, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready in 30s", url)
}

func TestBadConfigurationExitsTwo(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("listen: :8080\nno-such-key: 1\n"), 0o600)
	looseKeys := filepath.Join(t.TempDir(), "keys.yaml")
	os.WriteFile(looseKeys, []byte("keys:\n  - name: k1\n    secret: c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=\n"), 0o644)
	shortKey := filepath.Join(t.TempDir(), "short.yaml")
	os.WriteFile(shortKey, []byte("keys:\n  - name: k1\n    secret: c2hvcnQtc2VjcmV0\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--listen", "nonsense"}, "--listen"},
		{[]string{"--instance-rps", "-1"}, "--instance-rps"},
		{[]string{"--config", bad}, "no-such-key"},
		{[]string{"--config", "/does/not/exist.yaml"}, "exist.yaml"},
		{[]string{"--tls-cert", "/nope.pem"}, "--tls"},
		{[]string{"positional"}, "positional"},
		{[]string{"--encryption-key-file", "/no/keys.yaml"}, "--encryption-key-file: encryption key file /no/keys.yaml: no such file or directory"},
		{[]string{"--encryption-key-file", looseKeys}, "readable by others (mode 0644)"},
		{[]string{"--encryption-key-file", shortKey}, `key "k1": the secret is 12 bytes, want 32`},
	} {
		p := startRelay(t, tc.args...)
		if code := p.exitCode(t, 10*time.Second); code != 2 {
			t.Errorf("%v: exit %d, want 2; output:\n%s", tc.args, code, p.out)
		}
		if out := p.out.String(); !strings.Contains(out, tc.want) || strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") ||
			strings.Contains(out, "c2VjcmV0") || strings.Contains(out, "c2hvcnQ") {
			t.Errorf("%v: output does not name %q clearly:\n%s", tc.args, tc.want, out)
		}
	}
	p := startRelay(t, "-h")
	if code := p.exitCode(t, 10*time.Second); code != 0 || !strings.Contains(p.out.String(), "--etcd-endpoints") {
		t.Errorf("-h: exit %d, output:\n%s", code, p.out)
	}
}

func relayArgs(t *testing.T, dataDir string) (args []string, base string) {
	port := etcdtest.FreePort(t)
	return []string{
		"--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--data-dir", dataDir,
		"--etcd-listen", fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t)),
		"--etcd-peer-listen", fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t)),
		"--drain-timeout", "5s",
		"--admin-listen", fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t)),
	}, fmt.Sprintf("http://127.0.0.1:%d", port)
}

// TestEmbeddedRelayKeepsDataAcrossRestart runs the binary as an operator
// does: embedded etcd, SIGTERM, start again on the same data dir.
func TestEmbeddedRelayKeepsDataAcrossRestart(t *testing.T) {
	dataDir := t.TempDir()
	args, base := relayArgs(t, dataDir)
	p := startRelay(t, args...)
	waitHTTP(t, http.DefaultClient, base+"/readyz")
	// Log lines are flushed at least every 200 ms.
	for deadline := time.Now().Add(3 * time.Second); !strings.Contains(p.out.String(), "relay listening") && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(p.out.String(), "relay listening") || !strings.Contains(p.out.String(), "embedded etcd started") {
		t.Fatalf("start-up lines missing:\n%s", p.out)
	}
	resp, err := http.Post(base+"/v1/instances", "application/json", strings.NewReader(
		`{"url":"https://acme.atlassian.net","jiraVersion":"1001.0.0-SNAPSHOT","addinVersion":"4.2.0"}`))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("register: %v %v", resp, err)
	}
	var reg struct{ InstanceID, AdminKey string }
	json.NewDecoder(resp.Body).Decode(&reg)
	resp.Body.Close()

	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t, 20*time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, p.out)
	}
	if !strings.Contains(p.out.String(), "relay stopped") {
		t.Fatalf("no clean stop logged:\n%s", p.out)
	}

	p2 := startRelay(t, args...)
	waitHTTP(t, http.DefaultClient, base+"/readyz")
	req, _ := http.NewRequest("GET", base+"/v1/instances/"+reg.InstanceID, nil)
	req.Header.Set("X-Relay-Key", reg.AdminKey)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("instance after restart: %v %v\n%s", resp, err, p2.out)
	}
	resp.Body.Close()
	p2.cmd.Process.Signal(syscall.SIGINT)
	if code := p2.exitCode(t, 20*time.Second); code != 0 {
		t.Fatalf("SIGINT: exit %d", code)
	}
	// Nothing secret reached the log.
	for _, out := range []string{p.out.String(), p2.out.String()} {
		if strings.Contains(out, reg.AdminKey) {
			t.Fatal("the admin key appears in the log")
		}
	}
}

func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	// Write to temp names and rename, as cert managers do.
	os.WriteFile(certFile+".tmp", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile+".tmp", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	os.Rename(keyFile+".tmp", keyFile)
	os.Rename(certFile+".tmp", certFile)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}

func TestHTTPSWithCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool1 := writeCert(t, dir, "first")
	args, base := relayArgs(t, t.TempDir())
	base = strings.Replace(base, "http://127.0.0.1", "https://localhost", 1)
	startRelay(t, append(args, "--tls-cert", certFile, "--tls-key", keyFile)...)
	client := func(pool *x509.CertPool) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	}
	waitHTTP(t, client(pool1), base+"/healthz")

	time.Sleep(1100 * time.Millisecond) // mtimes must differ
	_, _, pool2 := writeCert(t, dir, "second")
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client(pool2).Get(base + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.TLS.PeerCertificates[0].Subject.CommonName == "second" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new certificate was not served: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
