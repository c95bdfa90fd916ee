package bench

import (
	"sort"
	"time"
)

// Result is everything one run measured; the table, the JSON (--json) and
// the HTML page (--html) are views of it.
type Result struct {
	Scenario    string          `json:"scenario"`
	Command     string          `json:"command"`
	Started     time.Time       `json:"started"`
	Machine     Machine         `json:"machine"`
	Settings    Settings        `json:"settings"`
	RelayIdle   *int64          `json:"relayIdleRssBytes,omitempty"`
	RelayHWM    int64           `json:"relayHwmBytes,omitempty"` // VmHWM at the end: the peak over the relay's whole life
	Phases      []PhaseResult   `json:"phases"`
	Compare     *Comparison     `json:"compare,omitempty"`
	Peers       []*PeersResult  `json:"peers,omitempty"`   // the proxy comparison, one per mode
	Anchors     *AnchorsResult  `json:"anchors,omitempty"` // the anchors scenario: relay vs nginx and vs the etcd floor
	Interrupted bool            `json:"interrupted,omitempty"`
	Notes       []string        `json:"notes,omitempty"`
	hists       [][]*Histogram  // per phase, per op: for the HTML percentile chart
	runs        []*phaseRun     // raw phases, for aggregation
	procs       map[string]bool // which processes were measured
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"goVersion"`
	Kernel    string `json:"kernel,omitempty"`
	CPUModel  string `json:"cpuModel,omitempty"`
	// LoadAvg is /proc/loadavg when the run started and when it ended: other
	// work on the machine shows here.
	LoadAvg []string `json:"loadAvg,omitempty"`
}

// Settings are the load's parameters after presets and flags.
type Settings struct {
	Target      string   `json:"target"`
	Mix         string   `json:"mix"`
	Sizes       string   `json:"sizes"`
	Duration    string   `json:"duration"`
	Concurrency int      `json:"concurrency"`
	Rate        float64  `json:"rate"`
	Count       int64    `json:"count,omitempty"`
	TLS         bool     `json:"tls"`
	UploadBody  string   `json:"uploadBody"`
	Compare     string   `json:"compare,omitempty"`
	Rounds      int      `json:"rounds"`
	RelayFlags  []string `json:"relayFlags,omitempty"`
	Relays      int      `json:"relays,omitempty"` // a fleet of relays on one etcd; absent: one relay
}

// PhaseResult is one phase: per-operation figures, the per-second
// timeline, and the processes' resources during it.
type PhaseResult struct {
	Name         string              `json:"name"`
	Target       string              `json:"target"`
	Seconds      float64             `json:"seconds"`
	Ops          []OpResult          `json:"ops"`
	Timeline     map[string][]second `json:"timeline"`
	Relay        *ProcResult         `json:"relay,omitempty"`
	FakeJira     *ProcResult         `json:"fakeJira,omitempty"`
	Proxy        *ProcResult         `json:"proxy,omitempty"`
	GeneratorCPU float64             `json:"generatorCpuSeconds"`
}

// OpResult is one operation's figures in one phase. MiBPerSec counts file
// bytes for uploads, request plus response bodies for the other operations.
type OpResult struct {
	Op        string           `json:"op"`
	Requests  int64            `json:"requests"`
	Errors    int64            `json:"errors"`
	ByKind    map[string]int64 `json:"errorsByStatus,omitempty"`
	ReqPerSec float64          `json:"reqPerSec"`
	MiBPerSec float64          `json:"mibPerSec"`
	Bytes     int64            `json:"bytes"`
	Latency   Latency          `json:"latencyMs"`
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// ProcResult is a process's resources during a phase: peak VmRSS sampled
// every 100 ms, and CPU seconds (utime+stime) spent in the phase.
type ProcResult struct {
	Pid        int     `json:"pid"`
	PeakRSS    int64   `json:"peakRssBytes,omitempty"`
	CPUSeconds float64 `json:"cpuSeconds"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func latencyOf(h *Histogram) Latency {
	return Latency{Mean: ms(h.Mean()), P50: ms(h.Percentile(50)), P90: ms(h.Percentile(90)),
		P99: ms(h.Percentile(99)), P999: ms(h.Percentile(99.9)), Max: ms(h.Max())}
}

// summarize turns a phase's raw measurements into its result.
func summarize(run *phaseRun) (PhaseResult, []*Histogram) {
	pr := PhaseResult{Name: run.Phase.Name, Target: run.Phase.Target.Name(), Seconds: run.Elapsed.Seconds(),
		Timeline: map[string][]second{}}
	hists := make([]*Histogram, numOps)
	secs := max(run.Elapsed.Seconds(), 1e-9)
	for _, op := range Ops() {
		s := run.Stats.ops[op]
		if s == nil || !run.Phase.Mix.Has(op) {
			continue
		}
		hists[op] = &s.hist
		r := OpResult{Op: op.String(), Requests: s.ok + s.errors, Errors: s.errors, Bytes: s.bytes,
			ReqPerSec: float64(s.ok+s.errors) / secs, MiBPerSec: float64(s.bytes) / secs / (1 << 20),
			Latency: latencyOf(&s.hist)}
		if len(s.byStatus) > 0 {
			r.ByKind = s.byStatus
		}
		pr.Ops = append(pr.Ops, r)
		tl := make([]second, len(run.Stats.timeline))
		for i, sec := range run.Stats.timeline {
			tl[i] = sec[op]
		}
		pr.Timeline[op.String()] = tl
	}
	return pr, hists
}

// OpFigure finds an operation's result in a phase.
func (p *PhaseResult) OpFigure(op Op) (OpResult, bool) {
	for _, o := range p.Ops {
		if o.Op == op.String() {
			return o, true
		}
	}
	return OpResult{}, false
}

// median of a list (the mean of the middle two for an even count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Errors counts the failed requests of every phase.
func (r *Result) Errors() int64 {
	var n int64
	for _, p := range r.Phases {
		for _, o := range p.Ops {
			n += o.Errors
		}
	}
	return n
}
