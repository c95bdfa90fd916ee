package httpx

import (
	"encoding/json"
	"strconv"

	"github.com/valyala/fasthttp"
)

// Error is an answer the relay gives on purpose: a status, a stable
// snake_case code and a sentence for a human. Every error body has the shape
// {"error":{"code":"...","message":"..."}}.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when > 0, is sent as Retry-After (seconds).
	RetryAfter int
	// RateLimit, when set, is sent as RateLimit-Limit, -Remaining, -Reset.
	RateLimit *RateLimitHeaders
	// Reason is the refusal reason of a 429 or 503 refusal ("" for others),
	// the label of relay_ratelimit_refusals_total.
	Reason Reason
	// JiraReason, when set, is sent as RateLimit-Reason: the limit of
	// Jira's that a cool-down waits for.
	JiraReason string
}

// RateLimitHeaders are the RateLimit-* values of a refusal by a limit.
type RateLimitHeaders struct{ Limit, Remaining, Reset int }

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Err builds an Error.
func Err(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

// Errors more than one package answers with.
var (
	ErrUnauthorized    = Err(401, "unauthorized", "missing or wrong X-Relay-Key")
	ErrForbidden       = Err(403, "forbidden", "this route needs the instance's admin key")
	ErrInstanceUnknown = Err(404, "instance_not_found", "no instance with this id")
	ErrRouteNotFound   = Err(404, "route_not_found", "no such route")
	ErrMethod          = Err(405, "method_not_allowed", "this route does not take this method")
	ErrDraining        = Err(503, "draining", "the relay is shutting down")
	ErrInternal        = Err(500, "internal", "internal error")
)

// write puts e on the answer, replacing any body already set.
func (e *Error) write(ctx *fasthttp.RequestCtx) {
	ctx.Response.ResetBody()
	ctx.SetStatusCode(e.Status)
	ctx.SetContentType("application/json")
	h := &ctx.Response.Header
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if rl := e.RateLimit; rl != nil {
		h.Set("RateLimit-Limit", strconv.Itoa(rl.Limit))
		h.Set("RateLimit-Remaining", strconv.Itoa(rl.Remaining))
		h.Set("RateLimit-Reset", strconv.Itoa(rl.Reset))
	}
	if e.JiraReason != "" {
		h.Set("RateLimit-Reason", e.JiraReason)
	}
	body, err := json.Marshal(errorBody{Error: errorDetail{Code: e.Code, Message: e.Message}})
	if err != nil {
		// Two strings cannot fail to encode; keep the shape regardless.
		body = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	ctx.SetBody(body)
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteJSON answers with status and v as JSON.
func WriteJSON(ctx *fasthttp.RequestCtx, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
	return nil
}
