// Package proxy is the relay's front door: the JSON API over the store, and
// the attachment stream between the Outlook add-in and Jira Cloud. It runs on
// fasthttp with request bodies streamed, never buffered whole.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/router"
	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// Server is the relay's HTTP front door.
type Server struct {
	cfg      configs.Config
	store    *store.Store
	log      *slog.Logger
	urls     urlPolicy
	router   *router.Router
	fast     *fasthttp.Server
	draining atomic.Bool
	guards   *guards
	ups      *upstreams
	cors     *cors
	stop     chan struct{}
	stopOnce sync.Once
	metrics  *relayMetrics
	// streams holds the client connection of every upload in flight, so
	// that Shutdown can cut them off at the drain deadline; cut is set then.
	streams sync.Map // *clientBody → net.Conn
	cut     atomic.Bool
	// base is the parent of every store call's context. Never the request
	// context: fasthttp reuses a RequestCtx after its handler returns, while
	// a context's timer may still look at its parent.
	base context.Context
}

// New builds the front door over a store. cfg must have passed Validate.
func New(cfg configs.Config, st *store.Store, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, store: st, log: log, base: context.Background(),
		urls: urlPolicy{patterns: lowerAll(cfg.AllowedUpstreams), allowHTTP: cfg.AllowHTTPUpstream},
	}
	var err error
	if s.guards, err = newGuards(cfg, nil); err != nil {
		return nil, err
	}
	if s.ups, err = newUpstreams(cfg); err != nil {
		return nil, err
	}
	s.cors = newCORS(cfg.CORSOrigins)
	s.metrics = newRelayMetrics(s)
	s.stop = make(chan struct{})
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

func lowerAll(in []string) []string {
	out := make([]string, 0, len(in))
	for _, v := range in {
		out = append(out, strings.ToLower(strings.TrimSpace(v)))
	}
	return out
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
	defer ctx.Response.Header.Set("X-Request-Id", requestID(ctx))
	var small *fasthttp.ErrSmallBuffer
	if errors.As(err, &small) {
		writeAPIError(ctx, newErr(431, "headers_too_large", "request headers are too large"))
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		writeAPIError(ctx, newErr(408, "request_timeout", "the request was not sent in time"))
		return
	}
	writeAPIError(ctx, newErr(400, "bad_request", "the request is not valid HTTP/1.1"))
}

// Handler is the whole front door as a fasthttp handler (for tests and
// embedding).
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	rid := stampRequestID(ctx)
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in handler", "route", routeOf(ctx), "panic", fmt.Sprint(r))
			writeAPIError(ctx, newErr(500, "internal", "internal error"))
		}
		if len(ctx.Response.Header.Peek("X-Request-Id")) == 0 {
			ctx.Response.Header.Set("X-Request-Id", rid) // after a handler reset the answer
		}
		s.accessLog(ctx, routeOf(ctx), start)
	}()
	if fe := framingError(ctx); fe != nil {
		ctx.SetConnectionClose()
		writeAPIError(ctx, fe)
		return
	}
	if s.cors.handle(ctx) {
		return
	}
	// The upload route is matched by hand: it is the hot path, and the
	// router's parameters cost allocations.
	if ctx.IsPost() {
		if id, issue, ok := matchUploadPath(ctx.Request.URI().PathOriginal()); ok {
			ctx.SetUserValue(router.MatchedRoutePathParam, uploadRoute)
			s.uploadAttachment(ctx, id, issue)
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

// sweep drops idle limiter entries every few seconds until Shutdown.
func (s *Server) sweep() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.guards.sweep()
			s.ups.prune(s.upstreamStale)
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
// Uploads still streaming when ctx ends are cut off: their callers'
// connections are closed, so each one aborts its request to Jira (Jira
// never completes a truncated file), answers 503 shutting_down (for the
// log; the caller is gone) and writes its access line. Shutdown waits up to
// abortGrace for that.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.stopOnce.Do(func() { close(s.stop) })
	err := s.fast.ShutdownWithContext(ctx)
	if err != nil {
		s.cut.Store(true)
		s.streams.Range(func(_, c any) bool {
			_ = c.(net.Conn).Close()
			return true
		})
		for end := time.Now().Add(abortGrace); s.metrics.inFlight.Load() > 0 && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	return err
}

// abortGrace bounds how long Shutdown waits for cut-off uploads to end.
const abortGrace = 2 * time.Second

// routeOf is the matched route pattern, for logs (never the raw path, which
// holds ids).
func routeOf(ctx *fasthttp.RequestCtx) string {
	if r, ok := ctx.UserValue(router.MatchedRoutePathParam).(string); ok {
		return r
	}
	return "unmatched"
}

func (s *Server) routes() *router.Router {
	r := router.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleOPTIONS = false
	r.SaveMatchedRoutePath = true
	r.NotFound = func(ctx *fasthttp.RequestCtx) { writeAPIError(ctx, errRouteNotFound) }
	r.MethodNotAllowed = func(ctx *fasthttp.RequestCtx) { writeAPIError(ctx, errMethod) }

	r.GET("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)

	r.POST("/v1/instances", s.registerInstance)
	r.GET("/v1/instances/{id}", s.admin(s.getInstance))
	r.PATCH("/v1/instances/{id}", s.admin(s.patchInstance))
	r.DELETE("/v1/instances/{id}", s.admin(s.deleteInstance))
	r.POST("/v1/instances/{id}/keys/rotate", s.admin(s.rotateKey))

	r.PUT("/v1/instances/{id}/users/{userId}", s.client(s.putUser))
	r.GET("/v1/instances/{id}/users/{userId}", s.client(s.getUser))
	r.DELETE("/v1/instances/{id}/users/{userId}", s.admin(s.deleteUser))
	r.GET("/v1/instances/{id}/users/{userId}/export", s.admin(s.exportUser))

	r.GET("/v1/instances/{id}/config", s.client(s.getConfig))
	r.PUT("/v1/instances/{id}/config", s.admin(s.putConfig))

	r.POST("/v1/instances/{id}/mappings", s.client(s.linkMapping))
	r.GET("/v1/instances/{id}/mappings", s.client(s.findMappings))
	r.DELETE("/v1/instances/{id}/mappings", s.client(s.unlinkMappings))

	r.POST("/v1/instances/{id}/error-reports", s.client(s.addErrorReport))
	r.GET("/v1/instances/{id}/error-reports", s.admin(s.listErrorReports))

	r.POST(uploadRoute, s.uploadAttachmentRouted)
	r.GET("/v1/instances/{id}/attachments/{attachmentId}/content", s.downloadAttachment)
	return r
}

// instanceHandler is a handler that runs after the caller's key was checked.
type instanceHandler func(ctx *fasthttp.RequestCtx, in *store.Instance) error

func (s *Server) client(h instanceHandler) fasthttp.RequestHandler {
	return s.withRole(store.RoleClient, h)
}

func (s *Server) admin(h instanceHandler) fasthttp.RequestHandler {
	return s.withRole(store.RoleAdmin, h)
}

func (s *Server) withRole(need store.Role, h instanceHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		id, _ := ctx.UserValue("id").(string)
		in, err := s.authenticate(ctx, []byte(id), need)
		if err == nil {
			err = h(ctx, in)
		}
		if err != nil {
			s.writeRefusal(ctx, err)
			lingerIfBodyUnread(ctx)
		}
	}
}

// authenticate finds the instance named in the path and checks X-Relay-Key:
// unknown instance → 404, missing or wrong key → 401, a client key where the
// admin key is needed → 403.
func (s *Server) authenticate(ctx *fasthttp.RequestCtx, id []byte, need store.Role) (*store.Instance, error) {
	if wait, blocked := s.guards.authBlocked(ctx); blocked {
		return nil, &rateLimited{reason: "auth_failures", d: cooldownDecision(wait)}
	}
	in, role, err := s.store.Authenticate(s.base, id, ctx.Request.Header.Peek("X-Relay-Key"))
	if err != nil {
		if isNotFound(err) {
			return nil, s.guards.authFailed(ctx, errInstanceUnknown)
		}
		return nil, err
	}
	switch {
	case role == store.RoleNone:
		return nil, s.guards.authFailed(ctx, errUnauthorized)
	case role < need:
		return nil, errForbidden
	}
	return in, nil
}

// pathID decodes a path parameter (the router hands it over still
// percent-encoded) and checks it is an acceptable opaque id.
func pathID(ctx *fasthttp.RequestCtx, name string) (string, error) {
	raw, _ := ctx.UserValue(name).(string)
	v, err := url.PathUnescape(raw)
	if err != nil {
		return "", newErr(400, "invalid_id", name+" is not validly percent-encoded")
	}
	if !store.ValidOpaqueID(v) || v == "." || v == ".." {
		return "", newErr(400, "invalid_id", name+" must be 1 to 1024 bytes of printable UTF-8")
	}
	return v, nil
}

// Routes lists the API's routes, method → path patterns (for the OpenAPI
// document's test).
func (s *Server) Routes() map[string][]string { return s.router.List() }
