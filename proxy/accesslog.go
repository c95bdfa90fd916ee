package proxy

import (
	"context"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// User values the handlers leave for the access line.
const (
	ridKey            = "jira-relay.request-id"
	upstreamStatusKey = "jira-relay.upstream-status"
)

// requestID is the caller's X-Request-Id when it is a sane token (at most
// 128 characters of [A-Za-z0-9._-]), else a fresh random one. It goes to
// Jira and back to the caller.
// stampRequestID gives the request its id (the caller's or a new one), for
// the access line and the upstream request, and puts it on the answer.
func stampRequestID(ctx *fasthttp.RequestCtx) string {
	rid := requestID(ctx)
	ctx.SetUserValue(ridKey, rid)
	ctx.Response.Header.Set("X-Request-Id", rid)
	return rid
}

func requestID(ctx *fasthttp.RequestCtx) string {
	if v := ctx.Request.Header.Peek("X-Request-Id"); len(v) > 0 && len(v) <= 128 && saneToken(v) {
		return string(v)
	}
	var b [8]byte
	u := rand.Uint64()
	for i := range b {
		b[i] = byte(u >> (8 * i))
	}
	return hex.EncodeToString(b[:])
}

func saneToken(v []byte) bool {
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// accessLog writes one line per request: route pattern, instance, status,
// bytes, duration, upstream status and request id. Never a path, a query, a
// header value or a body: ids in paths may be e-mail-like, and headers carry
// credentials.
func (s *Server) accessLog(ctx *fasthttp.RequestCtx, route string, start time.Time) {
	status := ctx.Response.StatusCode()
	s.metrics.request(route, status)
	if !s.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	inst := "-"
	if id, _ := ctx.UserValue("id").(string); store.ValidInstanceID(id) {
		inst = id
	} else if id, _, ok := matchUploadPath(ctx.Request.URI().PathOriginal()); route == uploadRoute && ok && store.ValidInstanceID(string(id)) {
		// The upload route is matched by hand, without user values.
		inst = string(id)
	}
	up, _ := ctx.UserValue(upstreamStatusKey).(int)
	rid, _ := ctx.UserValue(ridKey).(string)
	bytesIn := max(ctx.Request.Header.ContentLength(), 0)
	// Never Body() on a streamed answer: it would read the stream whole.
	bytesOut := max(ctx.Response.Header.ContentLength(), 0)
	if !ctx.Response.IsBodyStream() {
		bytesOut = len(ctx.Response.Body())
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "request",
		slog.String("method", string(ctx.Method())),
		slog.String("route", route),
		slog.String("instance", inst),
		slog.Int("status", status),
		slog.Int("bytes_in", bytesIn),
		slog.Int("bytes_out", bytesOut),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		slog.Int("upstream_status", up),
		slog.String("request_id", rid),
	)
}
