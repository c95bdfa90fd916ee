package proxy

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// apiError is an answer the relay gives on purpose: a status, a stable
// snake_case code and a sentence for a human. Every error body has the shape
// {"error":{"code":"...","message":"..."}}.
type apiError struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when > 0, is sent as Retry-After (seconds).
	RetryAfter int
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func newErr(status int, code, msg string) *apiError {
	return &apiError{Status: status, Code: code, Message: msg}
}

// Errors the handlers share.
var (
	errUnauthorized    = newErr(401, "unauthorized", "missing or wrong X-Relay-Key")
	errForbidden       = newErr(403, "forbidden", "this route needs the instance's admin key")
	errInstanceUnknown = newErr(404, "instance_not_found", "no instance with this id")
	errRouteNotFound   = newErr(404, "route_not_found", "no such route")
	errMethod          = newErr(405, "method_not_allowed", "this route does not take this method")
	errDraining        = newErr(503, "draining", "the relay is shutting down")
)

// errorFor maps any error to the answer the caller sees. This is the only
// place where errors become statuses.
func errorFor(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var inv *store.InvalidError
	switch {
	case errors.As(err, &inv):
		return newErr(400, "invalid_field", inv.Error())
	case errors.Is(err, store.ErrNotFound):
		return newErr(404, "not_found", "no such record")
	case errors.Is(err, store.ErrExists):
		return newErr(409, "conflict", "a record with this identity exists already")
	case errors.Is(err, store.ErrPrecondition):
		return newErr(412, "precondition_failed", "the record changed since the ETag given in If-Match")
	case errors.Is(err, store.ErrNoLeases):
		return newErr(503, "error_reports_unavailable", "this relay cannot store error reports")
	case errors.Is(err, store.ErrUnavailable):
		return &apiError{Status: 503, Code: "store_unavailable", Message: "the store (etcd) does not answer; try again", RetryAfter: 1}
	}
	if ue := upstreamError(err); ue != nil {
		return ue
	}
	return newErr(500, "internal", "internal error")
}

// writeError answers with err's status and the JSON error shape. Unexpected
// errors (500) are logged; the message never carries request data.
func (s *Server) writeError(ctx *fasthttp.RequestCtx, err error) {
	ae := errorFor(err)
	if ae.Status >= 500 && ae.Code == "internal" {
		s.log.Error("internal error", "route", routeOf(ctx), "err", err)
	}
	writeAPIError(ctx, ae)
}

func writeAPIError(ctx *fasthttp.RequestCtx, ae *apiError) {
	ctx.Response.ResetBody()
	ctx.SetStatusCode(ae.Status)
	ctx.SetContentType("application/json")
	if ae.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(ae.RetryAfter))
	}
	body, _ := json.Marshal(errorBody{Error: errorDetail{Code: ae.Code, Message: ae.Message}})
	ctx.SetBody(body)
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
