package proxy

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"sync"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
)

// frontMetrics are the front door's metrics: requests by route and status,
// the store's cache sizes and the front door's limiter sizes. Labels carry
// route patterns, statuses and limiter names; never keys, credentials,
// paths or bodies.
type frontMetrics struct {
	set      *metrics.Set
	mu       sync.RWMutex
	requests map[routeStatus]*metrics.Counter
}

type routeStatus struct {
	route  string
	status int
}

func newFrontMetrics(set *metrics.Set, s *Server) *frontMetrics {
	m := &frontMetrics{set: set, requests: map[routeStatus]*metrics.Counter{}}
	set.NewGauge("relay_cache_instances", func() float64 { n, _ := s.store.CacheSizes(); return float64(n) })
	set.NewGauge("relay_cache_configs", func() float64 { _, n := s.store.CacheSizes(); return float64(n) })
	set.NewGauge(`relay_limiter_keys{limiter="instance"}`, func() float64 { return float64(s.limits.instance.Len()) })
	set.NewGauge(`relay_limiter_keys{limiter="ip"}`, func() float64 { return float64(s.limits.ip.Len()) })
	set.NewGauge(`relay_limiter_keys{limiter="registration"}`, func() float64 { return float64(s.limits.registration.Len()) })
	// This relay's share of the fleet-wide limits per instance.
	set.NewGauge(`relay_fleet_share{limit="instance_rps"}`, func() float64 { rps, _ := s.limits.instance.Rate(); return rps })
	set.NewGauge(`relay_fleet_share{limit="instance_burst"}`, func() float64 { _, b := s.limits.instance.Rate(); return float64(b) })
	set.NewGauge(`relay_fleet_share{limit="instance_max_streams"}`, func() float64 { return float64(s.relay.MaxStreams()) })
	return m
}

// request counts one answered request.
func (m *frontMetrics) request(route string, status int) {
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
			ctx.Init(&fasthttp.Request{}, nil, nil)
			h(&ctx)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(ctx.Response.StatusCode())
			_, _ = w.Write(ctx.Response.Body())
		}
	}
	mux.HandleFunc("GET /healthz", probe(s.healthz))
	mux.HandleFunc("GET /readyz", probe(func(ctx *fasthttp.RequestCtx) {
		if err := s.readyz(ctx); err != nil {
			s.resp.Fail(ctx, err)
		}
	}))
	return mux
}
