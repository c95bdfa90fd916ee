package proxy

import (
	"github.com/jira-relay/jira-relay/internal/httpx"
	"github.com/valyala/fasthttp"
)

// CORS: the add-in runs in a browser webview, so the relay answers
// preflights itself for the origins in --cors-origins. Other origins get no
// CORS headers at all, so the browser blocks them.
const (
	corsAllowMethods  = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
	corsAllowHeaders  = "Authorization, X-Relay-Key, Content-Type, Content-Disposition, If-Match, If-None-Match, X-Request-Id, X-Registration-Token, Range"
	corsExposeHeaders = "Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, X-RateLimit-NearLimit, RateLimit-Reason, ETag, X-Request-Id, Content-Disposition, Content-Length, Content-Range"
)

type cors struct {
	origins map[string]struct{}
}

func newCORS(origins []string) *cors {
	c := &cors{origins: map[string]struct{}{}}
	for _, o := range origins {
		c.origins[o] = struct{}{}
	}
	return c
}

func (c *cors) allowed(origin []byte) bool {
	if len(origin) == 0 {
		return false
	}
	_, ok := c.origins[string(origin)]
	return ok
}

// handle adds CORS headers for an allowed origin and answers a preflight.
// It reports whether the request was answered (a preflight).
func (c *cors) handle(ctx *fasthttp.RequestCtx, resp *httpx.Responder) bool {
	origin := ctx.Request.Header.Peek("Origin")
	preflight := ctx.IsOptions() && len(ctx.Request.Header.Peek("Access-Control-Request-Method")) > 0
	if !c.allowed(origin) {
		if preflight {
			resp.Fail(ctx, httpx.Err(403, "cors_origin_not_allowed", "this origin is not in --cors-origins"))
			return true
		}
		return false
	}
	h := &ctx.Response.Header
	h.SetBytesV("Access-Control-Allow-Origin", origin)
	// Set, not Add: the Expect phase and the handler both pass here.
	h.Set("Vary", "Origin")
	if preflight {
		h.Set("Access-Control-Allow-Methods", corsAllowMethods)
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Max-Age", "600")
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return true
	}
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	return false
}
