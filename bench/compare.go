package bench

// Side is one target's upload figures over the rounds of a comparison:
// throughput as the median of the rounds, latency from all rounds' samples.
type Side struct {
	Target     string    `json:"target"`
	Rounds     []float64 `json:"roundsMibPerSec"`
	MiBPerSec  float64   `json:"mibPerSec"`
	ReqPerSec  float64   `json:"reqPerSec"`
	P50Ms      float64   `json:"p50Ms"`
	P99Ms      float64   `json:"p99Ms"`
	Requests   int64     `json:"requests"`
	Errors     int64     `json:"errors"`
	CPUSeconds float64   `json:"proxyCpuSecondsPerRound,omitempty"`
}

// Comparison is the relay against the same upload load sent straight at
// the fake Jira (--compare direct).
type Comparison struct {
	Relay           Side    `json:"relay"`
	Direct          Side    `json:"direct"`
	ThroughputRatio float64 `json:"throughputRatio"` // relay MiB/s ÷ direct MiB/s
	ReqRatio        float64 `json:"reqRatio"`        // relay req/s ÷ direct req/s
	P50Ratio        float64 `json:"p50Ratio"`        // relay p50 ÷ direct p50
	P99Ratio        float64 `json:"p99Ratio"`
	P50AddedMs      float64 `json:"p50AddedMs"` // relay p50 − direct p50
	P99AddedMs      float64 `json:"p99AddedMs"`
}

// side aggregates the upload figures of every upload-only phase against
// target (a mixed phase's uploads compete with other operations, so they do
// not compare); the CPU is the median of the phases' proxy CPU seconds.
func side(runs []*phaseRun, results []PhaseResult, target string) Side {
	s := Side{Target: target}
	var h Histogram
	var reqs []float64
	var cpus []float64
	for i, r := range runs {
		if r.Phase.Target.Name() != target || !r.Phase.Mix.Only(OpUpload) || r.Stats.ops[OpUpload] == nil {
			continue
		}
		o := r.Stats.ops[OpUpload]
		secs := max(r.Elapsed.Seconds(), 1e-9)
		s.Rounds = append(s.Rounds, float64(o.bytes)/secs/(1<<20))
		reqs = append(reqs, float64(o.ok+o.errors)/secs)
		h.Merge(&o.hist)
		s.Requests += o.ok + o.errors
		s.Errors += o.errors
		if results[i].Proxy != nil {
			cpus = append(cpus, results[i].Proxy.CPUSeconds)
		}
	}
	s.MiBPerSec, s.ReqPerSec = median(s.Rounds), median(reqs)
	s.P50Ms, s.P99Ms = ms(h.Percentile(50)), ms(h.Percentile(99))
	s.CPUSeconds = median(cpus)
	return s
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// compare builds the relay/direct comparison from the run's phases.
func compare(runs []*phaseRun, results []PhaseResult) *Comparison {
	c := &Comparison{Relay: side(runs, results, "relay"), Direct: side(runs, results, "direct")}
	if c.Relay.Requests == 0 || c.Direct.Requests == 0 {
		return nil
	}
	c.ThroughputRatio = ratio(c.Relay.MiBPerSec, c.Direct.MiBPerSec)
	c.ReqRatio = ratio(c.Relay.ReqPerSec, c.Direct.ReqPerSec)
	c.P50Ratio = ratio(c.Relay.P50Ms, c.Direct.P50Ms)
	c.P99Ratio = ratio(c.Relay.P99Ms, c.Direct.P99Ms)
	c.P50AddedMs = c.Relay.P50Ms - c.Direct.P50Ms
	c.P99AddedMs = c.Relay.P99Ms - c.Direct.P99Ms
	return c
}
