// Package proxy is the relay's front door: the fasthttp server, the routes,
// request framing checks, CORS, the "Expect: 100-continue" phase, caller
// authentication (X-Relay-Key), the limits every route passes, the access
// log, health probes, TLS certificate reloading and the metrics endpoint.
// What a route does lives elsewhere: the data API in api/, the attachment
// relay in relay/; every error becomes an answer in internal/httpx.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/fasthttp/router"
	"github.com/jira-relay/jira-relay/api"
	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fleet"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"github.com/jira-relay/jira-relay/internal/instanceurl"
	"github.com/jira-relay/jira-relay/relay"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// Server is the relay's HTTP front door.
type Server struct {
	cfg      configs.Config
	store    *store.Store
	log      *slog.Logger
	resp     *httpx.Responder
	api      *api.API
	relay    *relay.Relay
	limits   *limits
	cors     *cors
	router   *router.Router
	fast     *fasthttp.Server
	metrics  *frontMetrics
	draining atomic.Bool
	stop     chan struct{}
	stopOnce sync.Once
	// base is the parent of every store call's context. Never the request
	// context: fasthttp reuses a RequestCtx after its handler returns, while
	// a context's timer may still look at its parent.
	base context.Context
}

// New builds the front door, the data API and the attachment relay over a
// store; their metrics go to set. cfg must have passed Validate.
func New(cfg configs.Config, st *store.Store, set *metrics.Set, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	policy := instanceurl.NewPolicy(cfg.AllowedUpstreams, cfg.AllowHTTPUpstream)
	s := &Server{cfg: cfg, store: st, log: log, base: context.Background(), stop: make(chan struct{})}
	s.resp = httpx.NewResponder(log, set)
	s.api = api.New(cfg, st, policy)
	var err error
	if s.relay, err = relay.New(cfg, policy, s.resp, set, log); err != nil {
		return nil, err
	}
	if s.limits, err = newLimits(cfg, nil); err != nil {
		return nil, err
	}
	s.cors = newCORS(cfg.CORSOrigins)
	s.metrics = newFrontMetrics(set, s)
	s.router = s.routes()
	s.fast = &fasthttp.Server{
		Handler:                      s.handle,
		Name:                         "jira-relay",
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		// With streaming on, fasthttp pre-reads min(MaxRequestBodySize, 8 KiB)
		// of a body before the handler runs. One byte keeps refusals decided
		// from the headers (401, 413, 429) from waiting on the body; the
		// handlers enforce their own limits while they read.
		MaxRequestBodySize:    1,
		ReadBufferSize:        16 << 10,
		ReadTimeout:           cfg.HeaderReadTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		NoDefaultServerHeader: true,
		NoDefaultDate:         false,
		CloseOnShutdown:       true,
		Logger:                quietLogger{log: log},
		ErrorHandler:          s.transportError,
		ExpectHandler:         s.expect,
	}
	return s, nil
}

// quietLogger keeps fasthttp's own error lines (which may quote a raw request
// with its headers) out of the log: it logs only the format string.
type quietLogger struct{ log *slog.Logger }

func (q quietLogger) Printf(format string, _ ...any) {
	q.log.Debug("fasthttp", "format", format)
}

// transportError answers requests fasthttp could not parse (bad request
// line, oversized headers, broken chunking) with the JSON error shape.
func (s *Server) transportError(ctx *fasthttp.RequestCtx, err error) {
	// Every answer carries a request id; here the request's own may not
	// have been read.
	defer ctx.Response.Header.Set("X-Request-Id", httpx.NewRequestID(ctx))
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		s.resp.Fail(ctx, httpx.Err(431, "headers_too_large", "request headers are too large"))
	case errors.As(err, &ne) && ne.Timeout():
		s.resp.Fail(ctx, httpx.Err(408, "request_timeout", "the request was not sent in time"))
	default:
		s.resp.Fail(ctx, httpx.Err(400, "bad_request", "the request is not valid HTTP/1.1"))
	}
}

// Cooldowns are the relay's Jira cool-downs, for the fleet to share.
func (s *Server) Cooldowns() *fleet.Cooldowns { return s.relay.Cooldowns() }

// SetShare makes this relay enforce its share of the fleet-wide limits per
// instance: --instance-rps and --instance-burst (the front door's bucket)
// and --instance-max-streams (the relay's streams in flight).
func (s *Server) SetShare(sh fleet.Share) {
	s.limits.instance.SetRate(sh.Rate(s.cfg.InstanceRPS), sh.Of(s.cfg.InstanceBurst))
	s.relay.SetMaxStreams(sh.Of(s.cfg.InstanceMaxStreams))
}

// Handler is the whole front door as a fasthttp handler (for tests and
// embedding).
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	rid := httpx.StampRequestID(ctx)
	var instance []byte // the upload route's, matched by hand
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in handler", "route", httpx.Route(ctx), "panic", fmt.Sprint(r))
			s.resp.Fail(ctx, httpx.ErrInternal)
		}
		if len(ctx.Response.Header.Peek("X-Request-Id")) == 0 {
			ctx.Response.Header.Set("X-Request-Id", rid) // after a handler reset the answer
		}
		s.accessLog(ctx, instance, start)
	}()
	if fe := framingError(ctx); fe != nil {
		ctx.SetConnectionClose()
		s.resp.Fail(ctx, fe)
		return
	}
	if s.cors.handle(ctx, s.resp) {
		return
	}
	// The upload route is matched by hand, once: it is the hot path, and
	// the router's parameters cost allocations.
	if ctx.IsPost() {
		if t, ok := relay.MatchUpload(ctx.Request.URI().PathOriginal()); ok {
			httpx.SetRoute(ctx, relay.UploadRoute)
			instance = t.Instance
			s.upload(ctx, t)
			return
		}
	}
	s.router.Handler(ctx)
}

// Serve answers connections from ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	go s.sweep()
	return s.fast.Serve(ln)
}

// sweep drops idle limiter entries and stale upstreams every few seconds
// until Shutdown.
func (s *Server) sweep() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.limits.sweep()
			s.relay.Sweep(s.upstreamStale)
		}
	}
}

// upstreamStale reports whether an upstream no longer serves a registered
// instance at base. When the store cannot tell (etcd down), it keeps it.
func (s *Server) upstreamStale(id, base string) bool {
	in, err := s.store.Instance(s.base, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return true
	case err != nil:
		return false
	}
	return strings.TrimRight(in.URL, "/") != base
}

// Shutdown stops accepting, marks the relay not ready, and waits for
// in-flight requests until ctx ends.
//
// Uploads still streaming when ctx ends are cut off (relay.Cut): each
// aborts its request to Jira, answers 503 shutting_down (for the log; the
// caller is gone) and writes its access line. Shutdown waits up to
// abortGrace for that.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.stopOnce.Do(func() { close(s.stop) })
	err := s.fast.ShutdownWithContext(ctx)
	if err != nil {
		s.relay.Cut(abortGrace)
	}
	return err
}

// abortGrace bounds how long Shutdown waits for cut-off uploads to end.
const abortGrace = 2 * time.Second
