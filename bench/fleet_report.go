package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// FleetReport is what the fleet scenario measured; WriteTable and
// WriteJSON are its views.
type FleetReport struct {
	Scenario    string             `json:"scenario"`
	Command     string             `json:"command"`
	Started     time.Time          `json:"started"`
	Machine     Machine            `json:"machine"`
	Settings    FleetSettings      `json:"settings"`
	Limit       *FleetLimit        `json:"limit"`
	Propagation []FleetPropagation `json:"propagation"`
	Verdicts    map[string]string  `json:"verdicts"` // "met" or "missed"
	Interrupted bool               `json:"interrupted,omitempty"`
	Notes       []string           `json:"notes,omitempty"`
}

// FleetSettings are the run's parameters.
type FleetSettings struct {
	Relays        int      `json:"relays"`
	InstanceRPS   float64  `json:"instanceRps"`
	InstanceBurst int      `json:"instanceBurst"`
	Rate          float64  `json:"offeredRate"`
	Concurrency   int      `json:"concurrency"`
	Duration      string   `json:"duration"`
	Trials        int      `json:"trials"`
	TrialTimeout  string   `json:"trialTimeout"`
	Poll          string   `json:"poll"`
	RelayFlags    []string `json:"relayFlags,omitempty"`
}

// FleetLimit is the limit part: what the fleet admitted of one tenant's
// open-loop load against burst + rate × t.
type FleetLimit struct {
	Seconds       float64          `json:"seconds"`
	Requests      int64            `json:"requests"`
	OfferedPerSec float64          `json:"offeredPerSec"`
	Admitted      int64            `json:"admitted"` // 2xx
	Refused       int64            `json:"refused"`  // 429 rate_limited_instance
	Other         map[string]int64 `json:"other,omitempty"`
	Expected      float64          `json:"expected"` // burst + rate × seconds
	Ratio         float64          `json:"admittedOverExpected"`
	Latency       Latency          `json:"latencyMs"`
	PerRelay      []RelayAdmission `json:"perRelay"`
}

// RelayAdmission is one relay's part of the limit part.
type RelayAdmission struct {
	Relay    int     `json:"relay"`
	Requests int64   `json:"requests"`
	Admitted int64   `json:"admitted"`
	Refused  int64   `json:"refused"`
	Expected float64 `json:"expected"` // burst / N + rate / N × seconds
}

// FleetPropagation is one kind of change: how long after relay 1 answered
// the write every other relay answered accordingly, over the trials.
type FleetPropagation struct {
	Name     string    `json:"name"`
	What     string    `json:"what"`
	Trials   int       `json:"trials"`
	Missed   int       `json:"missed"` // not on every relay within the trial timeout
	P50      float64   `json:"p50Ms"`
	P90      float64   `json:"p90Ms"`
	P99      float64   `json:"p99Ms"`
	Max      float64   `json:"maxMs"`
	Mean     float64   `json:"meanMs"`
	DelaysMs []float64 `json:"delaysMs,omitempty"` // per trial (its slowest relay), sorted
	// PerRelayP50 is each of relays 2…N's median delay.
	PerRelayP50 []float64 `json:"perRelayP50Ms,omitempty"`
}

// Errors counts what went wrong: requests of the limit part answered other
// than 2xx or the tenant limit's 429, and missed propagation trials.
func (r *FleetReport) Errors() int64 {
	var n int64
	if r.Limit != nil {
		for _, v := range r.Limit.Other {
			n += v
		}
	}
	for _, p := range r.Propagation {
		n += int64(p.Missed)
	}
	return n
}

// WriteJSON writes the report, indented, to path.
func (r *FleetReport) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WriteTable prints the limit part and the propagation delays.
func (r *FleetReport) WriteTable(out io.Writer) {
	s := r.Settings
	fmt.Fprintf(out, "scenario fleet · %d relays on one etcd · tenant limit %g/s burst %d fleet-wide · %d CPUs · load %s\n",
		s.Relays, s.InstanceRPS, s.InstanceBurst, r.Machine.CPUs, strings.Join(r.Machine.LoadAvg, " → "))
	if len(s.RelayFlags) > 0 {
		fmt.Fprintf(out, "relay flags: %s\n", strings.Join(s.RelayFlags, " "))
	}
	if r.Interrupted {
		fmt.Fprintln(out, "INTERRUPTED: figures below cover only what ran")
	}
	if l := r.Limit; l != nil {
		fmt.Fprintf(out, "\ntenant limit: open-loop GET config at %g/s (%s, %d workers round-robin over the relays)\n", s.Rate, s.Duration, s.Concurrency)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tseconds\trequests\tadmitted\trefused (429 limit)\texpected\tadmitted / expected\ttarget\t")
		fmt.Fprintf(tw, "fleet\t%.3f\t%d\t%d\t%d\t%.1f\t%.3f\t%s\t\n", l.Seconds, l.Requests, l.Admitted, l.Refused, l.Expected, l.Ratio,
			"0.8–1.2: "+r.Verdicts["admittedVsExpected"])
		for _, p := range l.PerRelay {
			ratio := 0.0
			if p.Expected > 0 {
				ratio = float64(p.Admitted) / p.Expected
			}
			fmt.Fprintf(tw, "relay %d\t\t%d\t%d\t%d\t%.1f\t%.3f\t\t\n", p.Relay, p.Requests, p.Admitted, p.Refused, p.Expected, ratio)
		}
		tw.Flush()
		fmt.Fprintf(out, "expected = burst + rate × seconds (per relay: its even share); latency p50 %.3f ms, p99 %.3f ms\n", l.Latency.P50, l.Latency.P99)
		if len(l.Other) > 0 {
			var kinds []string
			for k, v := range l.Other {
				kinds = append(kinds, fmt.Sprintf("%s ×%d", k, v))
			}
			sort.Strings(kinds)
			fmt.Fprintf(out, "other answers: %s\n", strings.Join(kinds, ", "))
		}
	}
	if len(r.Propagation) > 0 {
		fmt.Fprintf(out, "\npropagation from relay 1 to %s (per trial: the last relay to answer accordingly)\n", otherRelays(s.Relays))
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "change\ttrials\tmissed\tp50 ms\tp90 ms\tp99 ms\tmax ms\tmean ms\tp50 ms by relay\t")
		for _, p := range r.Propagation {
			if p.Trials == p.Missed {
				fmt.Fprintf(tw, "%s\t%d\t%d\t–\t–\t–\t–\t–\t–\t\n", p.Name, p.Trials, p.Missed)
				continue
			}
			var by []string
			for _, v := range p.PerRelayP50 {
				by = append(by, fmt.Sprintf("%.1f", v))
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t\n", p.Name, p.Trials, p.Missed, p.P50, p.P90, p.P99, p.Max, p.Mean,
				strings.Join(by, " / "))
		}
		tw.Flush()
		for _, p := range r.Propagation {
			fmt.Fprintf(out, "  %s: %s\n", p.Name, p.What)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintln(out, "note:", n)
	}
}

// otherRelays names relays 2…n: "relay 2" or "relays 2–5".
func otherRelays(n int) string {
	if n == 2 {
		return "relay 2"
	}
	return fmt.Sprintf("relays 2–%d", n)
}
