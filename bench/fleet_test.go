package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestFleet runs the fleet scenario with two relays, a 1 s limit part and
// three trials of each propagation kind: the fleet admits within ±20 % of
// burst + rate × t, every relay takes part, every change reaches the other
// relay within the trial timeout, the table and JSON are written, and no
// temp dir is left behind. BENCH_SRC, when set, names the repository to
// build the relay from.
func TestFleet(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	rep, err := RunFleet(ctx, FleetConfig{Relays: 2, Duration: time.Second, Trials: 3, Concurrency: 4,
		Src: os.Getenv("BENCH_SRC"), Log: &log})
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	var out bytes.Buffer
	rep.WriteTable(&out)
	t.Logf("table:\n%s", out.String())
	for _, want := range []string{"scenario fleet · 2 relays", "admitted / expected", "relay 2", "cool-down", "rotation", "erase", "p99 ms"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table has no %q", want)
		}
	}

	l := rep.Limit
	if l == nil || l.Requests < 200 || l.Admitted+l.Refused != l.Requests || len(l.Other) != 0 {
		t.Fatalf("limit part: %+v", l)
	}
	if l.Ratio < 0.8 || l.Ratio > 1.2 || rep.Verdicts["admittedVsExpected"] != "met" {
		t.Errorf("admitted %d of expected %.1f (%.3f), want within ±20 %%", l.Admitted, l.Expected, l.Ratio)
	}
	if len(l.PerRelay) != 2 {
		t.Fatalf("per relay: %+v", l.PerRelay)
	}
	for _, r := range l.PerRelay {
		if r.Requests == 0 || r.Admitted == 0 || r.Refused == 0 {
			t.Errorf("relay %d took no part: %+v", r.Relay, r)
		}
	}

	var names []string
	for _, p := range rep.Propagation {
		names = append(names, p.Name)
		if p.Trials != 3 || p.Missed != 0 || len(p.DelaysMs) != 3 {
			t.Errorf("%s: %d trials, %d missed, delays %v", p.Name, p.Trials, p.Missed, p.DelaysMs)
		}
		if p.P50 <= 0 || p.P50 > p.P99 || p.P99 > p.Max || p.Max > 2000 || len(p.PerRelayP50) != 1 {
			t.Errorf("%s: p50 %.3f p99 %.3f max %.3f ms", p.Name, p.P50, p.P99, p.Max)
		}
	}
	if !slices.Equal(names, []string{"cool-down", "config", "rotation", "new tenant", "erase"}) {
		t.Errorf("propagation kinds %q", names)
	}
	if rep.Errors() != 0 || rep.Interrupted {
		t.Errorf("errors %d, interrupted %v", rep.Errors(), rep.Interrupted)
	}

	path := filepath.Join(t.TempDir(), "fleet.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || !bytes.Contains(b, []byte(`"admittedOverExpected"`)) || !bytes.Contains(b, []byte(`"p99Ms"`)) {
		t.Errorf("JSON: %v\n%s", err, b)
	}
	left, _ := os.ReadDir(tmp)
	for _, e := range left {
		if strings.HasPrefix(e.Name(), "jira-relay-") {
			t.Errorf("temp dir %s left behind", e.Name())
		}
	}
}

func TestFleetConfigRefused(t *testing.T) {
	for _, c := range []FleetConfig{{Relays: 1}, {Relays: MaxRelays + 1}, {InstanceRPS: -1}, {InstanceBurst: -1},
		{Relays: 4, Concurrency: 3}, {Trials: -1}, {Duration: -time.Second}} {
		if _, err := RunFleet(context.Background(), c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func TestFleetMemberArgs(t *testing.T) {
	in := []string{"--listen", "127.0.0.1:1", "--etcd-listen", "http://127.0.0.1:2", "--etcd-peer-listen", "http://127.0.0.1:3",
		"--data-dir", "/d", "--admin-listen", "127.0.0.1:4"}
	got := fleetMemberArgs(in, "http://127.0.0.1:2")
	want := []string{"--listen", "127.0.0.1:1", "--data-dir", "/d", "--admin-listen", "127.0.0.1:4", "--etcd-endpoints", "http://127.0.0.1:2"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestMetricValue(t *testing.T) {
	page := []byte("# HELP x\nrelay_fleet_members 3\nrelay_fleet_cooldowns{scope=\"issue\"} 12\nrelay_fleet_cooldowns{scope=\"tenant\"} 0\nrelay_fleet_members_x 9")
	for name, want := range map[string]float64{"relay_fleet_members": 3, `relay_fleet_cooldowns{scope="issue"}`: 12, `relay_fleet_cooldowns{scope="tenant"}`: 0} {
		if v, err := metricValue(page, name); err != nil || v != want {
			t.Errorf("%s: %v %v, want %v", name, v, err, want)
		}
	}
	if _, err := metricValue(page, "relay_fleet"); err == nil {
		t.Error("a missing metric was found")
	}
}

// TestPropagationOf: a trial's delay is its slowest relay's; percentiles
// by nearest rank; each relay's median besides.
func TestPropagationOf(t *testing.T) {
	var trials [][]time.Duration
	for i := 100; i >= 1; i-- {
		d := time.Duration(i) * time.Millisecond
		trials = append(trials, []time.Duration{d, d / 2, d / 4})
	}
	p := propagationOf("x", "", trials, 2)
	if p.Trials != 102 || p.Missed != 2 || p.P50 != 50 || p.P90 != 90 || p.P99 != 99 || p.Max != 100 || p.Mean != 50.5 || p.DelaysMs[0] != 1 {
		t.Errorf("%+v", p)
	}
	if !slices.Equal(p.PerRelayP50, []float64{50, 25, 12.5}) {
		t.Errorf("per relay p50 %v", p.PerRelayP50)
	}
	if p := propagationOf("x", "", nil, 3); p.Trials != 3 || p.P50 != 0 {
		t.Errorf("all missed: %+v", p)
	}
}

func TestRelayErrorCode(t *testing.T) {
	for body, want := range map[string]string{`{"error":{"code":"rate_limited_instance","message":"m"}}`: "rate_limited_instance",
		`{"errorMessages":["Rate limit exceeded."]}`: "", `nope`: ""} {
		if got := relayErrorCode([]byte(body)); got != want {
			t.Errorf("%s: %q, want %q", body, got, want)
		}
	}
}

// TestSpread: worker i of a phase sends to relay i mod N.
func TestSpread(t *testing.T) {
	var es []*Endpoint
	for _, u := range []string{"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"} {
		e, err := NewEndpoint(u, 1, "", false)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	r := NewRelayTarget(es[0], &Tenant{ID: "abc"}, nil, "raw", time.Second)
	if e, base := r.pick(&worker{id: 4}); e != es[0] || base != "http://127.0.0.1:1/v1/instances/abc" {
		t.Errorf("without Spread: %s %s", e.Base, base)
	}
	r.Spread(es)
	for id := range 6 {
		e, base := r.pick(&worker{id: id})
		if e != es[id%3] || base != es[id%3].Base+"/v1/instances/abc" {
			t.Errorf("worker %d: %s %s", id, e.Base, base)
		}
	}
}
