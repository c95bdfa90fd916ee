package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
)

// relayMetrics are the relay's Prometheus metrics, in a Set of their own
// (no package-level state). Labels carry routes, statuses, reasons and
// instance ids; never keys, credentials, paths or bodies.
type relayMetrics struct {
	set *metrics.Set

	mu       sync.RWMutex
	requests map[routeStatus]*metrics.Counter

	bytesUp, bytesDown *metrics.Counter
	inFlight           atomic.Int64
	upstream           *metrics.PrometheusHistogram
	refusals           map[string]*metrics.Counter
}

type routeStatus struct {
	route  string
	status int
}

var refusalReasons = []string{"instance", "ip", "streams", "jira_cooldown", "issue_writes", "breaker_open", "auth_failures"}

func newRelayMetrics(s *Server) *relayMetrics {
	m := &relayMetrics{set: metrics.NewSet(), requests: map[routeStatus]*metrics.Counter{}, refusals: map[string]*metrics.Counter{}}
	m.bytesUp = m.set.NewCounter("relay_attachment_bytes_up_total")
	m.bytesDown = m.set.NewCounter("relay_attachment_bytes_down_total")
	m.set.NewGauge("relay_streams_in_flight", func() float64 { return float64(m.inFlight.Load()) })
	m.upstream = m.set.NewPrometheusHistogramExt("relay_upstream_duration_seconds",
		[]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120})
	for _, r := range refusalReasons {
		m.refusals[r] = m.set.NewCounter(`relay_ratelimit_refusals_total{reason="` + r + `"}`)
	}
	m.set.NewGauge("relay_cache_instances", func() float64 { n, _ := s.store.CacheSizes(); return float64(n) })
	m.set.NewGauge("relay_cache_configs", func() float64 { _, n := s.store.CacheSizes(); return float64(n) })
	m.set.NewGauge(`relay_limiter_keys{limiter="instance"}`, func() float64 { return float64(s.guards.instance.Len()) })
	m.set.NewGauge(`relay_limiter_keys{limiter="ip"}`, func() float64 { return float64(s.guards.ip.Len()) })
	m.set.NewGauge(`relay_limiter_keys{limiter="issue_writes"}`, func() float64 { return float64(s.guards.writes.Len()) })
	m.set.NewGauge(`relay_limiter_keys{limiter="cooldown"}`, func() float64 { return float64(s.guards.cooldown.Len()) })
	m.set.RegisterMetricsWriter(s.ups.writeBreakerStates)
	return m
}

// request counts one answered request.
func (m *relayMetrics) request(route string, status int) {
	k := routeStatus{route, status}
	m.mu.RLock()
	c := m.requests[k]
	m.mu.RUnlock()
	if c == nil {
		m.mu.Lock()
		if c = m.requests[k]; c == nil {
			c = m.set.GetOrCreateCounter(fmt.Sprintf(`relay_requests_total{route=%q,status="%d"}`, route, status))
			m.requests[k] = c
		}
		m.mu.Unlock()
	}
	c.Inc()
}

func (m *relayMetrics) refused(reason string) {
	if c := m.refusals[reason]; c != nil {
		c.Inc()
	}
}

func (m *relayMetrics) upstreamTook(d time.Duration) { m.upstream.Update(d.Seconds()) }

// ObserveEtcd records one etcd operation's latency (store.ObservedKV calls it).
func (s *Server) ObserveEtcd(op string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.metrics.set.GetOrCreatePrometheusHistogramExt(`relay_etcd_op_duration_seconds{op="`+op+`",result="`+result+`"}`,
		[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5}).Update(d.Seconds())
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

// AdminHandler serves /metrics, /debug/pprof/, /healthz and /readyz for the
// admin listener (--admin-listen), never on the public port.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.metrics.set.WritePrometheus(w)
		// go_* (goroutines, heap, GC) and process_* (resident memory, open
		// fds, CPU): what an operator watches for leaks. Counting open fds
		// lists /proc/self/fd, a few milliseconds at 10,000 connections.
		metrics.WriteProcessMetrics(w)
		metrics.WriteFDMetrics(w)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	probe := func(h fasthttp.RequestHandler) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			var ctx fasthttp.RequestCtx
			h(&ctx)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(ctx.Response.StatusCode())
			_, _ = w.Write(ctx.Response.Body())
		}
	}
	mux.HandleFunc("GET /healthz", probe(s.healthz))
	mux.HandleFunc("GET /readyz", probe(s.readyz))
	return mux
}
