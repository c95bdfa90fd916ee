package proxy

import (
	"context"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"log/slog"
	"time"

	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// accessLog writes one line per request: route pattern, instance, status,
// bytes, duration, upstream status and request id. Never a path, a query, a
// header value or a body: ids in paths may be e-mail-like, and headers carry
// credentials.
func (s *Server) accessLog(ctx *fasthttp.RequestCtx, upload []byte, start time.Time) {
	route := httpx.Route(ctx)
	status := ctx.Response.StatusCode()
	s.metrics.request(route, status)
	if !s.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	inst := "-"
	if id, _ := ctx.UserValue("id").(string); store.ValidInstanceID(id) {
		inst = id
	} else if store.ValidInstanceID(string(upload)) {
		// The upload route is matched by hand, without user values.
		inst = string(upload)
	}
	bytesIn := max(ctx.Request.Header.ContentLength(), 0)
	// Never Body() on a streamed answer: it would read the stream whole.
	bytesOut := max(ctx.Response.Header.ContentLength(), 0)
	if !ctx.Response.IsBodyStream() {
		bytesOut = len(ctx.Response.Body())
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "request",
		slog.String("method", methodToken(ctx.Method())),
		slog.String("route", route),
		slog.String("instance", inst),
		slog.Int("status", status),
		slog.Int("bytes_in", bytesIn),
		slog.Int("bytes_out", bytesOut),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		slog.Int("upstream_status", httpx.UpstreamStatus(ctx)),
		slog.String("request_id", httpx.RequestID(ctx)),
	)
}

// methodToken is the method as logged: a known method as it is, anything
// else as one fixed token. A method is whatever the caller put before the
// first space; a client that puts a key there must not see it in the log.
func methodToken(m []byte) string {
	switch string(m) {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
		return string(m)
	}
	return "OTHER"
}
