package relay

import (
	"fmt"
	"io"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// relayMetrics are the relay's own metrics. Labels carry instance ids at
// most; never keys, credentials, paths or bodies.
type relayMetrics struct {
	bytesUp, bytesDown *metrics.Counter
	inFlight           atomic.Int64
	upstream           *metrics.PrometheusHistogram
}

func newRelayMetrics(set *metrics.Set, r *Relay) *relayMetrics {
	m := &relayMetrics{}
	m.bytesUp = set.NewCounter("relay_attachment_bytes_up_total")
	m.bytesDown = set.NewCounter("relay_attachment_bytes_down_total")
	set.NewGauge("relay_streams_in_flight", func() float64 { return float64(m.inFlight.Load()) })
	m.upstream = set.NewPrometheusHistogramExt("relay_upstream_duration_seconds",
		[]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120})
	set.NewGauge(`relay_limiter_keys{limiter="issue_writes"}`, func() float64 { return float64(r.guards.writes.Len()) })
	set.NewGauge(`relay_limiter_keys{limiter="cooldown"}`, func() float64 { return float64(r.guards.cooldowns.Len()) })
	set.RegisterMetricsWriter(r.ups.writeBreakerStates)
	return m
}

// writeBreakerStates writes one gauge per instance upstream: 0 closed,
// 1 half-open, 2 open.
func (u *upstreams) writeBreakerStates(w io.Writer) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.byID) == 0 {
		return
	}
	fmt.Fprintln(w, "# TYPE relay_breaker_state gauge")
	for id, up := range u.byID {
		fmt.Fprintf(w, "relay_breaker_state{instance=%q} %d\n", id, int(up.cb.State()))
	}
}
