// Command hopcost measures what one extra loopback hop costs on this
// machine, without the relay: bytes written straight to a sink, and
// through a bare Go hop that moves them on, in each of the relay's modes:
//
//   - direct: the sender writes plain TCP to the sink;
//   - copy: a hop that copies in user space (what any reverse proxy does);
//   - splice: a hop that splices (Go's (*net.TCPConn).ReadFrom between two
//     plain TCP sockets);
//   - direct-tls: the sender speaks TLS to a TLS sink;
//   - tls-upstream: plain to the hop, which re-encrypts toward a TLS sink
//     (verifying it against the test CA): the relay with --upstream-ca;
//   - tls-both: TLS to the hop, which terminates it and re-encrypts toward
//     the TLS sink: the relay with --tls-cert and an HTTPS upstream.
//
// The hop runs in a process of its own (this binary, re-run with -hop), so
// its CPU per GiB is measured alone: that is the floor a proxy of the same
// mode cannot go below (bench/peers compares the relay's against it). Its
// TLS client toward the sink sends each write's records in one system call
// (as the relay does), with full-size records from the first byte. The
// throughput bounds the proxy-vs-direct ratio the machine allows. TLS is
// 1.3 with AES-128-GCM or ChaCha20 as Go picks, HTTP/1.1 not involved.
//
//	go run ./bench/hopcost -rounds 5 -bytes 4294967296
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jira-relay/jira-relay/bench"
)

type writerOnly struct{ io.Writer }
type readerOnly struct{ io.Reader }

// modes in the order they are printed; hopped modes run a hop process.
var modes = []string{"direct", "copy", "splice", "direct-tls", "tls-upstream", "tls-both"}

func hopped(mode string) bool { return mode != "direct" && mode != "direct-tls" }

// tlsToHop: the sender speaks TLS to whatever it dials.
func tlsToHop(mode string) bool { return mode == "direct-tls" || mode == "tls-both" }

// tlsSink: the sink the mode ends at speaks TLS.
func tlsSink(mode string) bool { return strings.Contains(mode, "tls") }

func main() {
	rounds := flag.Int("rounds", 5, "rounds; each runs every mode once, order rotated")
	total := flag.Int64("bytes", 2<<30, "bytes sent per mode per round")
	only := flag.String("modes", strings.Join(modes, ","), "the modes to run, comma-separated")
	hopMode := flag.String("hop", "", "internal: run as the hop of this mode")
	sinkAddr := flag.String("sink", "", "internal: the hop's sink")
	dir := flag.String("certs", "", "internal: the directory of ca.pem, cert.pem, key.pem")
	flag.Parse()
	if *hopMode != "" {
		if err := runHop(*hopMode, *sinkAddr, *dir); err != nil {
			fmt.Fprintln(os.Stderr, "hopcost hop:", err)
			os.Exit(1)
		}
		return
	}
	want := strings.Split(*only, ",")
	for _, m := range want {
		if !slices.Contains(modes, m) {
			fmt.Fprintf(os.Stderr, "hopcost: unknown mode %q (modes: %s)\n", m, strings.Join(modes, ", "))
			os.Exit(2)
		}
	}
	if *rounds < 1 || *total < 1<<20 {
		fmt.Fprintln(os.Stderr, "hopcost: -rounds ≥ 1 and -bytes ≥ 1 MiB")
		os.Exit(2)
	}
	if err := run(*rounds, *total, want); err != nil {
		fmt.Fprintln(os.Stderr, "hopcost:", err)
		os.Exit(1)
	}
}

// result is one mode's run: throughput, the hop process's CPU per GiB
// (0 without a hop) and the whole run's (sender, sink and hop).
type result struct{ mibs, hopCPUPerGiB, allCPUPerGiB float64 }

func run(rounds int, total int64, want []string) error {
	certs, err := writeCerts()
	if err != nil {
		return err
	}
	defer os.RemoveAll(certs)
	tc, err := loadTLS(certs)
	if err != nil {
		return err
	}
	plain, err := startSink(nil)
	if err != nil {
		return err
	}
	defer plain.Close()
	secure, err := startSink(tc.server)
	if err != nil {
		return err
	}
	defer secure.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	got := map[string][]result{}
	for r := range rounds {
		for i := range want {
			m := want[(i+r)%len(want)]
			sink := plain.Addr().String()
			if tlsSink(m) {
				sink = secure.Addr().String()
			}
			res, err := measure(self, m, sink, certs, tc, total)
			if err != nil {
				return fmt.Errorf("%s: %w", m, err)
			}
			got[m] = append(got[m], res)
		}
	}
	fmt.Printf("%-13s %9s %10s %14s %18s\n", "mode", "MiB/s", "× direct", "hop CPU s/GiB", "all CPU s/GiB")
	for _, m := range modes {
		if len(got[m]) == 0 {
			continue
		}
		md := median(got[m])
		ratio := "-"
		base := "direct"
		if tlsToHop(m) || m == "tls-upstream" {
			base = "direct-tls"
		}
		if b := got[base]; len(b) > 0 && m != base {
			ratio = fmt.Sprintf("%.3f", md.mibs/median(b).mibs)
		}
		hop := "-"
		if hopped(m) {
			hop = fmt.Sprintf("%.3f", md.hopCPUPerGiB)
		}
		fmt.Printf("%-13s %9.0f %10s %14s %18.3f\n", m, md.mibs, ratio, hop, md.allCPUPerGiB)
	}
	fmt.Println("× direct: of direct for copy and splice, of direct-tls for the TLS modes; medians of the rounds")
	return nil
}

// startSink reads and drops everything sent to it, 64 KiB at a time; over
// TLS when tc is set.
func startSink(tc *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln, nil
}

// measure sends total bytes through the mode's path: straight to the sink,
// or through a hop process started for this run.
func measure(self, mode, sinkAddr, certs string, tc *tlsConfigs, total int64) (result, error) {
	target := sinkAddr
	var hop *exec.Cmd
	if hopped(mode) {
		hop = exec.Command(self, "-hop", mode, "-sink", sinkAddr, "-certs", certs)
		hop.Stderr = os.Stderr
		out, err := hop.StdoutPipe()
		if err != nil {
			return result{}, err
		}
		if err := hop.Start(); err != nil {
			return result{}, err
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			_ = hop.Process.Kill()
			_ = hop.Wait()
			return result{}, fmt.Errorf("the hop did not say where it listens: %v", err)
		}
		target = strings.TrimSpace(line)
	}
	var c net.Conn
	var err error
	if tlsToHop(mode) {
		c, err = tls.Dial("tcp", target, tc.client)
	} else {
		c, err = net.Dial("tcp", target)
	}
	if err != nil {
		if hop != nil {
			_ = hop.Process.Kill()
			_ = hop.Wait()
		}
		return result{}, err
	}
	buf := make([]byte, 256<<10)
	cpu0, t0 := cpuTime(), time.Now()
	var sent int64
	for sent < total {
		n, err := c.Write(buf[:min(int64(len(buf)), total-sent)])
		sent += int64(n)
		if err != nil {
			c.Close()
			return result{}, err
		}
	}
	_ = c.Close()
	gib := float64(sent) / (1 << 30)
	var hopCPU time.Duration
	if hop != nil {
		if err := hop.Wait(); err != nil {
			return result{}, fmt.Errorf("the hop: %w", err)
		}
		if ru, ok := hop.ProcessState.SysUsage().(*syscall.Rusage); ok {
			hopCPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	// The sink may still hold the last bytes: direct runs end when the
	// sender's writes return, as they always did (a hopped run ends when
	// the hop has written everything on).
	took, cpu := time.Since(t0), cpuTime()-cpu0
	return result{mibs: float64(sent) / (1 << 20) / took.Seconds(), hopCPUPerGiB: hopCPU.Seconds() / gib,
		allCPUPerGiB: (cpu + hopCPU).Seconds() / gib}, nil
}

// runHop is the hop process: it listens, says where on stdout, accepts one
// connection and moves its bytes to the sink, then exits.
func runHop(mode, sinkAddr, certs string) error {
	if !hopped(mode) || sinkAddr == "" {
		return errors.New("-hop needs a hopped mode and -sink")
	}
	tc, err := loadTLS(certs)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println(ln.Addr().String())
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	var up net.Conn
	if tlsSink(mode) {
		up, err = dialBatchedTLS(sinkAddr, tc.client)
	} else {
		up, err = net.Dial("tcp", sinkAddr)
	}
	if err != nil {
		return err
	}
	defer up.Close()
	switch mode {
	case "splice":
		_, err = up.(*net.TCPConn).ReadFrom(&io.LimitedReader{R: c.(*net.TCPConn), N: 1 << 62})
	case "tls-both":
		_, err = io.CopyBuffer(writerOnly{up}, readerOnly{tls.Server(c, tc.server)}, make([]byte, 256<<10))
	default: // copy, tls-upstream
		_, err = io.CopyBuffer(writerOnly{up}, readerOnly{c}, make([]byte, 256<<10))
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// tlsConfigs are the sink's and hop's server side and every client's
// (trusting the test CA only).
type tlsConfigs struct{ server, client *tls.Config }

func loadTLS(dir string) (*tlsConfigs, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("ca.pem holds no certificate")
	}
	return &tlsConfigs{
		server: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		client: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12},
	}, nil
}

// writeCerts makes a test CA and a certificate for 127.0.0.1 it signed
// (bench.WriteTestCerts: ca.pem, cert.pem, key.pem), in a temporary
// directory.
func writeCerts() (string, error) {
	dir, err := os.MkdirTemp("", "hopcost-certs-")
	if err != nil {
		return "", err
	}
	if _, err := bench.WriteTestCerts(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(rs []result) result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int {
		switch {
		case a.mibs < b.mibs:
			return -1
		case a.mibs > b.mibs:
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}

// batchedTLS is the hop's TLS client connection toward the sink, with the
// records of each write gathered into one write to the socket: crypto/tls
// writes every record (16 KiB at most) with a system call of its own, and
// a hop that does not batch them is no floor for one that does (the relay
// does: relay/recordbatch.go). Records are full-size from the first byte.
type batchedTLS struct {
	*tls.Conn
	raw *recordGather
}

type recordGather struct {
	net.Conn
	buf      []byte
	batching bool
}

func (g *recordGather) Write(p []byte) (int, error) {
	if !g.batching {
		return g.Conn.Write(p)
	}
	g.buf = append(g.buf, p...)
	return len(p), nil
}

func dialBatchedTLS(addr string, conf *tls.Config) (net.Conn, error) {
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	conf = conf.Clone()
	conf.DynamicRecordSizingDisabled = true
	g := &recordGather{Conn: raw, buf: make([]byte, 0, 272<<10)}
	tc := tls.Client(g, conf)
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	return &batchedTLS{Conn: tc, raw: g}, nil
}

func (b *batchedTLS) Write(p []byte) (int, error) {
	b.raw.batching = true
	n, err := b.Conn.Write(p)
	b.raw.batching = false
	if len(b.raw.buf) > 0 {
		_, werr := b.raw.Conn.Write(b.raw.buf)
		b.raw.buf = b.raw.buf[:0]
		if err == nil {
			err = werr
		}
	}
	return n, err
}
