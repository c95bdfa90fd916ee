package httpx

import (
	"encoding/hex"
	"math/rand/v2"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
)

// User values a request carries from its handler to its access line.
const (
	ridKey            = "jira-relay.request-id"
	upstreamStatusKey = "jira-relay.upstream-status"
	bodyBrokenKey     = "jira-relay.body-broken"
	bodyReadKey       = "jira-relay.body-read"
)

// StampRequestID gives the request its id (the caller's X-Request-Id when it
// is a sane token of at most 128 characters of [A-Za-z0-9._-], else a fresh
// random one), for the access line and the upstream request, and puts it on
// the answer.
func StampRequestID(ctx *fasthttp.RequestCtx) string {
	rid := NewRequestID(ctx)
	ctx.SetUserValue(ridKey, rid)
	ctx.Response.Header.Set("X-Request-Id", rid)
	return rid
}

// RequestID is the id StampRequestID gave the request ("" before).
func RequestID(ctx *fasthttp.RequestCtx) string {
	rid, _ := ctx.UserValue(ridKey).(string)
	return rid
}

// NewRequestID is the caller's X-Request-Id when sane, else a random id. A
// value shaped like one of the relay's keys (jrc_…, jra_…) is never taken:
// the id is logged, and a key pasted into the wrong header must not be.
func NewRequestID(ctx *fasthttp.RequestCtx) string {
	if v := ctx.Request.Header.Peek("X-Request-Id"); len(v) > 0 && len(v) <= 128 && saneToken(v) && !keyShaped(v) {
		return string(v)
	}
	var b [8]byte
	u := rand.Uint64()
	for i := range b {
		b[i] = byte(u >> (8 * i))
	}
	return hex.EncodeToString(b[:])
}

func keyShaped(v []byte) bool {
	return len(v) > 4 && (v[0]|0x20) == 'j' && (v[1]|0x20) == 'r' && ((v[2]|0x20) == 'c' || (v[2]|0x20) == 'a') && v[3] == '_'
}

func saneToken(v []byte) bool {
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// SetUpstreamStatus records Jira's status for the access line.
func SetUpstreamStatus(ctx *fasthttp.RequestCtx, status int) {
	ctx.SetUserValue(upstreamStatusKey, status)
}

// UpstreamStatus is the status SetUpstreamStatus recorded (0 when none).
func UpstreamStatus(ctx *fasthttp.RequestCtx) int {
	n, _ := ctx.UserValue(upstreamStatusKey).(int)
	return n
}

// MarkBodyBroken records that the request's body could not be read (bad
// framing, a reset, a stall) and closes the connection after the answer:
// there is nothing to linger for.
func MarkBodyBroken(ctx *fasthttp.RequestCtx) {
	ctx.SetUserValue(bodyBrokenKey, true)
	ctx.SetConnectionClose()
}

func bodyBroken(ctx *fasthttp.RequestCtx) bool {
	b, _ := ctx.UserValue(bodyBrokenKey).(bool)
	return b
}

// SetRoute records the matched route pattern (for a route matched without
// the router).
func SetRoute(ctx *fasthttp.RequestCtx, pattern string) {
	ctx.SetUserValue(router.MatchedRoutePathParam, pattern)
}

// Route is the matched route pattern, for logs and metrics (never the raw
// path, which holds ids).
func Route(ctx *fasthttp.RequestCtx) string {
	if r, ok := ctx.UserValue(router.MatchedRoutePathParam).(string); ok {
		return r
	}
	return "unmatched"
}
