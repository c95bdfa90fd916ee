package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// smokeArgs are the flags every smoke run shares: small, short, quiet.
// BENCH_SRC, when set, names the repository to build the relay from (for a
// working tree that is mid-edit).
func smokeArgs(dir string, extra ...string) []string {
	args := []string{"--duration", "2s", "--concurrency", "4", "--sizes", "1KiB-64KiB:9,256KiB:1", "--warmup", "200ms",
		"--users", "5", "--conversations", "16",
		"--json", filepath.Join(dir, "out.json"), "--html", filepath.Join(dir, "out.html")}
	if src := os.Getenv("BENCH_SRC"); src != "" {
		args = append(args, "--src", src)
	}
	return append(args, extra...)
}

type smokeResult struct {
	Phases []struct {
		Name   string `json:"name"`
		Target string `json:"target"`
		Ops    []struct {
			Op       string           `json:"op"`
			Requests int64            `json:"requests"`
			Errors   int64            `json:"errors"`
			ByKind   map[string]int64 `json:"errorsByStatus"`
		} `json:"ops"`
		Relay *struct {
			Pid     int   `json:"pid"`
			PeakRSS int64 `json:"peakRssBytes"`
		} `json:"relay"`
	} `json:"phases"`
	RelayIdle int64 `json:"relayIdleRssBytes"`
	Compare   *struct {
		ThroughputRatio float64 `json:"throughputRatio"`
	} `json:"compare"`
	json, html []byte // the files as written
	stderr     string // the run's log
}

// runSmoke runs the harness in-process and checks what every run must
// give: exit 0, JSON and HTML written and well-formed, no process and no
// temp dir left behind.
func runSmoke(t *testing.T, extra ...string) smokeResult {
	t.Helper()
	return runSmokeArgs(t, func(dir string) []string { return smokeArgs(dir, extra...) })
}

// runSmokeArgs is runSmoke with the whole command line from args (given
// the test's dir, where out.json and out.html go).
func runSmokeArgs(t *testing.T, args func(dir string) []string) smokeResult {
	t.Helper()
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args(dir), &stdout, &stderr, false)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	t.Logf("stdout:\n%s", stdout.String())
	if !strings.Contains(stdout.String(), "p99 ms") {
		t.Errorf("no table on stdout")
	}

	b, err := os.ReadFile(filepath.Join(dir, "out.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res smokeResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if len(res.Phases) == 0 {
		t.Fatal("JSON: no phase")
	}
	for _, p := range res.Phases {
		if p.Relay != nil {
			if err := syscall.Kill(p.Relay.Pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("relay pid %d still exists after the run (kill 0: %v)", p.Relay.Pid, err)
			}
		}
	}

	h, err := os.ReadFile(filepath.Join(dir, "out.html"))
	if err != nil {
		t.Fatal(err)
	}
	checkHTML(t, h)
	res.json, res.html, res.stderr = b, h, stderr.String()

	left, _ := os.ReadDir(tmp)
	for _, e := range left {
		if strings.HasPrefix(e.Name(), "jira-relay-") {
			t.Errorf("temp dir %s left behind", e.Name())
		}
	}
	return res
}

// checkHTML: one self-contained page, well-formed (it is written as
// polyglot XHTML), with inline SVG charts and no script or external resource.
func checkHTML(t *testing.T, h []byte) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(h))
	svgs := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("HTML is not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "svg":
				svgs++
			case "script", "link", "img", "iframe":
				t.Errorf("HTML has a <%s>: not self-contained", se.Name.Local)
			}
		}
	}
	if svgs < 2 {
		t.Errorf("HTML has %d charts, want the throughput and latency charts", svgs)
	}
	if strings.Contains(string(h), "https://") || strings.Contains(string(h), "src=") {
		t.Errorf("HTML refers to an external resource")
	}
}

// TestSmokeAddinMix: the default scenario, shortened; every operation kind
// runs with no error.
func TestSmokeAddinMix(t *testing.T) {
	res := runSmoke(t)
	p := res.Phases[0]
	seen := map[string]bool{}
	for _, o := range p.Ops {
		seen[o.Op] = true
		if o.Requests == 0 || o.Errors != 0 {
			t.Errorf("%s: %d requests, %d errors %v", o.Op, o.Requests, o.Errors, o.ByKind)
		}
	}
	for _, op := range []string{"upload", "config", "map-write", "map-read"} {
		if !seen[op] {
			t.Errorf("operation %s was not exercised", op)
		}
	}
	if p.Relay == nil || p.Relay.PeakRSS == 0 || res.RelayIdle == 0 {
		t.Errorf("no RSS measured: %+v idle %d", p.Relay, res.RelayIdle)
	}
}

// TestSmokeCompareTLS: uploads through the relay and straight at a fake
// Jira over TLS, with the relay/direct ratio.
func TestSmokeCompareTLS(t *testing.T) {
	res := runSmoke(t, "--mix", "upload:1", "--compare", "direct", "--tls", "--duration", "1s")
	checkRelayAndDirect(t, res)
}

// TestSmokeCompareTLSFront: --tls --tls-front puts TLS on every hop: the
// relay's front door serves HTTPS (the generator reached it at an https://
// URL, which a plain-HTTP listener would fail at the handshake), and so does
// the fake Jira that the relay and the direct path reach. Small uploads at
// a rate, as the small-uploads scenario sends them.
func TestSmokeCompareTLSFront(t *testing.T) {
	res := runSmoke(t, "--mix", "upload:1", "--compare", "direct", "--tls", "--tls-front", "--duration", "1s", "--sizes", "1KiB", "--rate", "200")
	checkRelayAndDirect(t, res)
	for _, want := range []string{"bench: relay https://127.0.0.1:", "fake Jira https://127.0.0.1:"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("the log has no %q: a hop is not HTTPS\n%s", want, res.stderr)
		}
	}
}

// TestSmokeRelays: the default mix on a fleet of two relays on one etcd,
// the workers spread over both; every operation runs with no error on
// either relay.
func TestSmokeRelays(t *testing.T) {
	res := runSmoke(t, "--relays", "2", "--duration", "1s", "--mix", "upload:1,config:2,map-write:1,map-read:1")
	for _, o := range res.Phases[0].Ops {
		if o.Requests == 0 || o.Errors != 0 {
			t.Errorf("%s: %d requests, %d errors %v", o.Op, o.Requests, o.Errors, o.ByKind)
		}
	}
}

// TestSmokePeers: the proxy comparison in its three modes in one run, each
// a short smoke (one round of 300 ms, small bodies): every path of every
// mode moves uploads with no failure, the proxies installed here (nginx,
// HAProxy, Caddy; without them, direct and the relay only) are measured,
// their processes are gone afterwards, and the HTML page has the peers
// charts. No speed is checked.
func TestSmokePeers(t *testing.T) {
	var installed []string
	for _, p := range []string{"nginx", "haproxy", "caddy"} {
		if _, err := exec.LookPath(p); err == nil {
			installed = append(installed, p)
		} else if _, err := os.Stat("/usr/sbin/" + p); err == nil {
			installed = append(installed, p)
		}
	}
	t.Logf("proxies installed: %v", installed)
	smoke := runSmoke(t, "--peers", "../../bench/peers", "--peers-mode", "all", "--scenario", "upload-64mib",
		"--sizes", "64KiB-256KiB:1", "--duration", "300ms", "--warmup", "100ms", "--rounds", "1", "--concurrency", "2")
	var res struct {
		Phases []struct {
			Name  string `json:"name"`
			Proxy *struct {
				Pid int `json:"pid"`
			} `json:"proxy"`
		} `json:"phases"`
		Peers []struct {
			Mode string `json:"mode"`
			Rows []struct {
				Path      string  `json:"path"`
				Requests  int64   `json:"requests"`
				Errors    int64   `json:"errors"`
				MiBPerSec float64 `json:"mibPerSec"`
				CPUPerGiB float64 `json:"cpuSecondsPerGiB"`
				Processes int     `json:"processes"`
			} `json:"rows"`
			Missing []string `json:"missing"`
		} `json:"peers"`
	}
	if err := json.Unmarshal(smoke.json, &res); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	var modes []string
	for _, m := range res.Peers {
		modes = append(modes, m.Mode)
		paths := map[string]bool{}
		for _, r := range m.Rows {
			paths[r.Path] = true
			if r.Requests == 0 || r.Errors != 0 || r.MiBPerSec <= 0 {
				t.Errorf("%s %s: %d requests, %d errors, %.1f MiB/s", m.Mode, r.Path, r.Requests, r.Errors, r.MiBPerSec)
			}
			if r.Path != "direct" && (r.Processes < 1 || r.CPUPerGiB <= 0) {
				t.Errorf("%s %s: %d processes, %.3f CPU s/GiB", m.Mode, r.Path, r.Processes, r.CPUPerGiB)
			}
		}
		for _, want := range append([]string{"direct", "relay"}, installed...) {
			if !paths[want] {
				t.Errorf("%s: no row for %s (missing: %v)", m.Mode, want, m.Missing)
			}
		}
	}
	if strings.Join(modes, ",") != "plain,tls-upstream,tls-both" {
		t.Errorf("modes %v, want plain, tls-upstream, tls-both", modes)
	}
	for _, p := range res.Phases {
		if p.Proxy != nil {
			if err := syscall.Kill(p.Proxy.Pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("%s: pid %d still exists after the run (kill 0: %v)", p.Name, p.Proxy.Pid, err)
			}
		}
	}
	for _, want := range []string{`id="peers"`, "Upload throughput per path and mode", "CPU seconds per GiB of each path", "tls-both"} {
		if !strings.Contains(string(smoke.html), want) {
			t.Errorf("the HTML has no %q", want)
		}
	}
}

// TestSmokeAnchors: the anchors scenario, one round of 300 ms per path at
// concurrency 4: every row (the relay and its reference for config 304s,
// mapping writes and lookups, nginx's only when installed; the in-process
// etcd floor besides for mappings) has requests and
// no failure, the checks that the references do what the relay does ran,
// nginx is gone afterwards, and the HTML page has the anchors' charts. No
// speed is checked.
func TestSmokeAnchors(t *testing.T) {
	_, err := exec.LookPath("nginx")
	if err != nil {
		_, err = os.Stat("/usr/sbin/nginx")
	}
	nginx := err == nil
	smoke := runSmokeArgs(t, func(dir string) []string {
		args := []string{"--scenario", "anchors", "--anchors", "config=4,map-write=4,map-read=4", "--duration", "300ms", "--rounds", "1",
			"--warmup", "100ms", "--users", "5", "--conversations", "16",
			"--json", filepath.Join(dir, "out.json"), "--html", filepath.Join(dir, "out.html")}
		if src := os.Getenv("BENCH_SRC"); src != "" {
			args = append(args, "--src", src)
		}
		return args
	})
	var res struct {
		Phases []struct {
			Name  string `json:"name"`
			Proxy *struct {
				Pid int `json:"pid"`
			} `json:"proxy"`
		} `json:"phases"`
		Anchors *struct {
			Rows []struct {
				Anchor      string  `json:"anchor"`
				Concurrency int     `json:"concurrency"`
				Path        string  `json:"path"`
				Reference   bool    `json:"reference"`
				ReqPerSec   float64 `json:"reqPerSec"`
				Requests    int64   `json:"requests"`
				Errors      int64   `json:"errors"`
				VsReference float64 `json:"vsReference"`
			} `json:"rows"`
			Verdicts []struct {
				Anchor  string `json:"anchor"`
				Verdict string `json:"verdict"`
			} `json:"verdicts"`
			Checks  []string `json:"checks"`
			Missing []string `json:"missing"`
		} `json:"anchors"`
	}
	if err := json.Unmarshal(smoke.json, &res); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if res.Anchors == nil {
		t.Fatal("JSON: no anchors")
	}
	want := map[string]bool{"config relay": true, "map-write relay": true, "map-write etcd floor": true, "map-write etcd floor in-process": true,
		"map-read relay": true, "map-read etcd floor": true, "map-read etcd floor in-process": true}
	if nginx {
		want["config nginx"] = true
	}
	for _, r := range res.Anchors.Rows {
		name := r.Anchor + " " + r.Path
		if !want[name] {
			t.Errorf("unexpected row %s", name)
		}
		delete(want, name)
		if r.Concurrency != 4 || r.Requests == 0 || r.Errors != 0 || r.ReqPerSec <= 0 {
			t.Errorf("%s: concurrency %d, %d requests, %d errors, %.0f req/s", name, r.Concurrency, r.Requests, r.Errors, r.ReqPerSec)
		}
		if r.Reference && r.VsReference != 1 || !r.Reference && (nginx || r.Anchor != "config") && r.VsReference <= 0 {
			t.Errorf("%s: × reference %v", name, r.VsReference)
		}
	}
	for name := range want {
		t.Errorf("no row %s (missing: %v)", name, res.Anchors.Missing)
	}
	if !nginx && len(res.Anchors.Missing) == 0 {
		t.Error("nginx is not installed and the report does not say so")
	}
	if n := len(res.Anchors.Checks); n != 1+btoi(nginx) {
		t.Errorf("checks %q", res.Anchors.Checks)
	}
	for _, v := range res.Anchors.Verdicts {
		if !strings.HasPrefix(v.Verdict, "met") && !strings.HasPrefix(v.Verdict, "missed") && !strings.HasPrefix(v.Verdict, "measured") &&
			(nginx || v.Anchor != "config") {
			t.Errorf("verdict of %s: %q", v.Anchor, v.Verdict)
		}
	}
	for _, p := range res.Phases {
		if p.Proxy != nil {
			if err := syscall.Kill(p.Proxy.Pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("%s: pid %d still exists after the run (kill 0: %v)", p.Name, p.Proxy.Pid, err)
			}
		}
	}
	for _, want := range []string{`id="anchors"`, "Requests per second: the relay and its reference", "CPU µs per request"} {
		if !strings.Contains(string(smoke.html), want) {
			t.Errorf("the HTML has no %q", want)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &out, &errb, false); code != exitOK {
		t.Fatalf("-h: exit %d", code)
	}
	for _, want := range []string{"upload-64mib", "small-uploads", "config-304", "map-writes", "map-reads", "capacity", "--readers", "--compare", "--tls",
		"fleet", "--relays", "--trials", "--instance-rps", "-peers-mode", "-tls-front", "anchors", "-anchors"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("-h does not mention %s", want)
		}
	}
	for _, bad := range [][]string{{"--mix", "nope:1"}, {"--sizes", "1XB"}, {"--scenario", "nope"}, {"--compare", "nginx"}, {"--target", "http://127.0.0.1:1"},
		{"--readers", "4"}, {"--scenario", "capacity", "--target", "http://127.0.0.1:1"}, {"--scenario", "capacity", "--mix", "upload:1"},
		{"--scenario", "capacity", "--count", "-1"}, {"--scenario", "capacity", "--concurrency", "0"}, {"--scenario", "capacity", "--readers", "0"},
		{"--relays", "0"}, {"--relays", "17"}, {"--relays", "2", "--target", "http://127.0.0.1:1", "--instance-id", "i", "--client-key", "k"},
		{"--relays", "2", "--peers", "bench/peers"}, {"--trials", "3"}, {"--instance-rps", "5"}, {"--scenario", "capacity", "--relays", "2"},
		{"--scenario", "fleet", "--relays", "1"}, {"--scenario", "fleet", "--mix", "upload:1"}, {"--scenario", "fleet", "--trials", "0"},
		{"--scenario", "fleet", "--instance-rps", "0"}, {"--scenario", "fleet", "--instance-burst", "0"}, {"--scenario", "fleet", "--rate", "-1"},
		{"--scenario", "fleet", "--relays", "5", "--concurrency", "4"}, {"--scenario", "fleet", "--target", "http://127.0.0.1:1"},
		{"--peers-mode", "tls-both"}, {"--peers", "bench/peers", "--peers-mode", "tls"}, {"--peers", "bench/peers", "--peers-mode", "plain,plain"},
		{"--scenario", "capacity", "--peers-mode", "plain"}, {"--scenario", "fleet", "--peers-mode", "plain"},
		{"--tls-front"}, {"--scenario", "small-uploads", "--tls-front"}, {"--tls", "--tls-front", "--peers", "bench/peers"},
		{"--tls", "--tls-front", "--target", "http://127.0.0.1:1", "--instance-id", "i", "--client-key", "k"},
		{"--scenario", "capacity", "--tls", "--tls-front"}, {"--scenario", "fleet", "--tls", "--tls-front"},
		{"--anchors", "config"}, {"--scenario", "anchors", "--target", "http://127.0.0.1:1"}, {"--scenario", "anchors", "--mix", "config:1"},
		{"--scenario", "anchors", "--sizes", "1KiB"}, {"--scenario", "anchors", "--tls"}, {"--scenario", "anchors", "--relays", "2"},
		{"--scenario", "anchors", "--rate", "100"}, {"--scenario", "anchors", "--peers", "bench/peers"}, {"--scenario", "anchors", "--anchors", "upload"},
		{"--scenario", "anchors", "--anchors", "config=0"}, {"--scenario", "anchors", "--anchors", "config,config=32"},
		{"--scenario", "anchors", "--concurrency", "0"}, {"--scenario", "anchors", "--duration", "0s"}, {"--scenario", "anchors", "--rounds", "0"}} {
		errb.Reset()
		if code := run(context.Background(), bad, &out, &errb, false); code != exitUsage {
			t.Errorf("%q: exit %d, want %d (%s)", bad, code, exitUsage, errb.String())
		}
	}
}

// TestCapacity: the capacity scenario with 300 mappings per layout. Both
// layouts write five keys per mapping; layout 2 holds fewer bytes and less
// of the database per mapping; every rate is positive and every lookup
// finds its conversation's three mappings; no member dir and no goroutine
// is left behind.
func TestCapacity(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // every member, client and store stopped
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := filepath.Join(dir, "capacity.json")
	var stdout, stderr bytes.Buffer
	args := []string{"--scenario", "capacity", "--count", "300", "--concurrency", "16", "--readers", "8",
		"--duration", "300ms", "--warmup", "0", "--rounds", "2", "--json", out}
	if code := run(ctx, args, &stdout, &stderr, false); code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	t.Logf("stdout:\n%s", stdout.String())
	for _, want := range []string{"layout 1 (old)", "layout 3 (current)", "DB in use B per mapping", "lookups/s by conversation", "mappings in 8 GiB"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the table has no %q", want)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Scenario string `json:"scenario"`
		Layouts  []struct {
			Layout            int     `json:"layout"`
			Mappings          int     `json:"mappings"`
			KeysPerMapping    float64 `json:"keysPerMapping"`
			KVBytesPerMapping float64 `json:"kvBytesPerMapping"`
			InUsePerMapping   float64 `json:"dbInUseBytesPerMapping"`
			WritesPerSec      float64 `json:"writesPerSec"`
			LookupsPerSec     float64 `json:"lookupsPerSec"`
			Lookups           int64   `json:"lookups"`
			LookupErrors      int64   `json:"lookupErrors"`
			MappingsPerLookup float64 `json:"mappingsPerLookup"`
			Fit2GiB           int64   `json:"mappingsIn2GiB"`
			Fit8GiB           int64   `json:"mappingsIn8GiB"`
		} `json:"layouts"`
		Verdicts     map[string]string `json:"verdicts"`
		SealedRounds []struct {
			SealedFirst               bool
			WritesRatio, LookupsRatio float64
		} `json:"sealedRounds"`
		SealedWritesRatio float64 `json:"sealedWritesRatio"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if rep.Scenario != "capacity" || len(rep.Layouts) != 3 || rep.Layouts[0].Layout != 1 || rep.Layouts[1].Layout != 3 || rep.Layouts[2].Layout != 3 {
		t.Fatalf("report: %s", b)
	}
	for _, l := range rep.Layouts {
		if l.Mappings != 300 || l.KeysPerMapping != 5 || l.KVBytesPerMapping <= 0 || l.InUsePerMapping <= 0 {
			t.Errorf("layout %d: %d mappings, %.2f keys, %.0f B key+value, %.0f B in use per mapping", l.Layout, l.Mappings,
				l.KeysPerMapping, l.KVBytesPerMapping, l.InUsePerMapping)
		}
		if l.WritesPerSec <= 0 || l.LookupsPerSec <= 0 || l.Lookups == 0 || l.LookupErrors != 0 || l.MappingsPerLookup != 3 {
			t.Errorf("layout %d: %.0f writes/s, %.0f lookups/s (%d, %d wrong), %.2f mappings per lookup", l.Layout,
				l.WritesPerSec, l.LookupsPerSec, l.Lookups, l.LookupErrors, l.MappingsPerLookup)
		}
		if l.Fit2GiB <= 0 || l.Fit8GiB != 0 && (l.Fit8GiB < 4*l.Fit2GiB-4 || l.Fit8GiB > 4*l.Fit2GiB+4) {
			t.Errorf("layout %d: %d in 2 GiB, %d in 8 GiB", l.Layout, l.Fit2GiB, l.Fit8GiB)
		}
	}
	// Two rounds of the plaintext and sealed pair, the second sealed first;
	// the verdict's ratio is their median.
	if len(rep.SealedRounds) != 2 || rep.SealedRounds[0].SealedFirst || !rep.SealedRounds[1].SealedFirst ||
		rep.SealedWritesRatio != (rep.SealedRounds[0].WritesRatio+rep.SealedRounds[1].WritesRatio)/2 || rep.SealedWritesRatio <= 0 {
		t.Errorf("sealed rounds: %+v, median writes ratio %v", rep.SealedRounds, rep.SealedWritesRatio)
	}
	if !strings.Contains(stdout.String(), "round 2 (sealed first)") {
		t.Error("the table does not show the rounds")
	}
	old, cur := rep.Layouts[0], rep.Layouts[1]
	if cur.KVBytesPerMapping >= old.KVBytesPerMapping || cur.InUsePerMapping >= old.InUsePerMapping {
		t.Errorf("layout 3 is not smaller: %.0f vs %.0f B key+value, %.0f vs %.0f B in use per mapping",
			cur.KVBytesPerMapping, old.KVBytesPerMapping, cur.InUsePerMapping, old.InUsePerMapping)
	}
	if sealed := rep.Layouts[2]; sealed.KVBytesPerMapping <= cur.KVBytesPerMapping {
		t.Errorf("sealed records are not larger than plaintext: %.0f vs %.0f B key+value per mapping", sealed.KVBytesPerMapping, cur.KVBytesPerMapping)
	}
	for _, k := range []string{"inUsePerMapping", "lookupsPerSec", "writesPerSec", "sealedWrites", "sealedLookups"} {
		if v := rep.Verdicts[k]; v != "met" && v != "missed" {
			t.Errorf("verdict %s = %q", k, v)
		}
	}
	left, _ := os.ReadDir(tmp)
	for _, e := range left {
		t.Errorf("temp dir %s left behind", e.Name())
	}
}

// checkRelayAndDirect: a --compare direct run has phases of both targets,
// every operation with requests and no errors, and a relay/direct ratio.
func checkRelayAndDirect(t *testing.T, res smokeResult) {
	t.Helper()
	targets := map[string]bool{}
	for _, p := range res.Phases {
		targets[p.Target] = true
		for _, o := range p.Ops {
			if o.Requests == 0 || o.Errors != 0 {
				t.Errorf("%s %s: %d requests, %d errors %v", p.Name, o.Op, o.Requests, o.Errors, o.ByKind)
			}
		}
	}
	if !targets["relay"] || !targets["direct"] {
		t.Errorf("targets %v, want relay and direct", targets)
	}
	if res.Compare == nil || res.Compare.ThroughputRatio <= 0 {
		t.Errorf("no comparison: %+v", res.Compare)
	}
}
