package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jira-relay/jira-relay/ratelimit"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// BodyFault says how the caller's body failed.
type BodyFault int

// The ways a caller's body fails.
const (
	BodyGone       BodyFault = iota // the caller went away mid-body: 499
	BodyTooLarge                    // over the route's limit: 413
	BodyBadBase64                   // not base64: 400
	BodyIncomplete                  // ended before its Content-Length: 400
	BodyTimeout                     // stalled past the idle timeout: 408
	BodyUnreadable                  // framing broke (bad chunking): 400
)

// BodyFailure is a failure of the caller's body; Limit is the route's limit
// in bytes, for the 413 message.
type BodyFailure struct {
	Fault BodyFault
	Limit int64
	Err   error
}

func (e *BodyFailure) Error() string { return "request body: " + e.Err.Error() }
func (e *BodyFailure) Unwrap() error { return e.Err }

// UpstreamFailure is a failure of the connection to Jira.
type UpstreamFailure struct{ Err error }

func (e *UpstreamFailure) Error() string { return "upstream: " + e.Err.Error() }
func (e *UpstreamFailure) Unwrap() error { return e.Err }

// Answer maps any error to the answer the caller sees. This is the only
// place where errors become statuses.
func Answer(err error) *Error {
	var (
		ae  *Error
		rl  *RateLimited
		bo  *BreakerOpen
		bf  *BodyFailure
		uf  *UpstreamFailure
		inv *store.InvalidError
		qe  *store.QuotaError
	)
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &rl):
		return &Error{Status: 429, Code: "rate_limited_" + string(rl.Reason), Message: rl.Reason.message(),
			RetryAfter: max(rl.Decision.RetryAfterSeconds(), 1), Reason: rl.Reason, JiraReason: rl.JiraReason,
			RateLimit: &RateLimitHeaders{Limit: rl.Decision.Limit, Remaining: rl.Decision.Remaining, Reset: max(rl.Decision.ResetSeconds(), 1)}}
	case errors.As(err, &bo):
		return &Error{Status: 503, Code: "upstream_circuit_open", Message: ReasonBreakerOpen.message(),
			RetryAfter: max(ratelimit.CeilSeconds(bo.RetryAfter), 1), Reason: ReasonBreakerOpen}
	case errors.As(err, &bf):
		return bodyAnswer(bf)
	case errors.As(err, &uf):
		var ne net.Error
		if errors.Is(uf.Err, fasthttp.ErrTimeout) || errors.Is(uf.Err, fasthttp.ErrDialTimeout) || (errors.As(uf.Err, &ne) && ne.Timeout()) {
			return Err(504, "upstream_timeout", "Jira did not answer in time")
		}
		return Err(502, "upstream_unreachable", "the connection to Jira failed")
	case errors.As(err, &inv):
		return Err(400, "invalid_field", inv.Error())
	case errors.As(err, &qe):
		return Err(507, "tenant_quota_exceeded", fmt.Sprintf("this tenant holds %d %s, as many as its quota allows (--tenant-max-%s); nothing was written", qe.Held, qe.What, qe.What))
	case errors.Is(err, store.ErrStoreFull):
		return Err(507, "store_full", "the store (etcd) is at its quota and takes no writes; nothing was written, reads go on")
	case errors.Is(err, store.ErrEncryptionKeyMissing):
		return errKeyMissing
	case errors.Is(err, store.ErrCorrupt):
		return errCorrupt
	case errors.Is(err, store.ErrNotFound):
		return Err(404, "not_found", "no such record")
	case errors.Is(err, store.ErrURLTaken):
		return Err(409, "url_taken", "another instance is registered at this URL; nothing was changed")
	case errors.Is(err, store.ErrCloudIDTaken):
		return Err(409, "cloud_id_taken", "another instance is registered with this cloudId")
	case errors.Is(err, store.ErrExists):
		return Err(409, "conflict", "a record with this identity exists already")
	case errors.Is(err, store.ErrPrecondition):
		return Err(412, "precondition_failed", "the record changed since the ETag given in If-Match")
	case errors.Is(err, store.ErrNoLeases):
		return Err(503, "error_reports_unavailable", "this relay cannot store error reports")
	case errors.Is(err, store.ErrUnavailable):
		return &Error{Status: 503, Code: "store_unavailable", Message: "the store (etcd) does not answer; try again", RetryAfter: 1}
	}
	return ErrInternal
}

func bodyAnswer(bf *BodyFailure) *Error {
	switch bf.Fault {
	case BodyTooLarge:
		return Err(413, "attachment_too_large", "the attachment is larger than --max-attachment-bytes ("+strconv.FormatInt(bf.Limit, 10)+" bytes)")
	case BodyBadBase64:
		return Err(400, "invalid_base64", "the body is not valid base64")
	case BodyIncomplete:
		return Err(400, "incomplete_body", "the body ended before its Content-Length; nothing was uploaded")
	case BodyTimeout:
		return Err(408, "body_timeout", "the body stalled longer than the stream idle timeout; nothing was uploaded")
	case BodyUnreadable:
		return Err(400, "bad_body", "the request body could not be read")
	}
	return Err(499, "client_closed", "the caller's body broke off; nothing was uploaded")
}

// errKeyMissing answers a record sealed with a key the relay's key file
// does not list: logged (with the key's name), the operator's to fix.
var errKeyMissing = Err(500, "encryption_key_missing",
	"this record is sealed with an encryption key the relay's key file does not list; the operator must put that key back in --encryption-key-file (docs/operations.md)")

// errCorrupt answers a record the store cannot decode: the relay did not
// mean it, so it is logged, but it is not the caller's fault either.
var errCorrupt = Err(500, "record_corrupt",
	"this instance's record in the store does not decode; the admin can still erase the instance (DELETE /v1/instances/{id}) and the operator can repair or erase it (docs/operations.md)")

// Responder writes error answers: it maps the error (Answer), counts a
// refusal under its reason, and logs what the relay did not mean to answer
// (500) without any request data.
type Responder struct {
	log      *slog.Logger
	refusals map[Reason]*metrics.Counter
}

// NewResponder registers relay_ratelimit_refusals_total{reason} in set.
func NewResponder(log *slog.Logger, set *metrics.Set) *Responder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Responder{log: log, refusals: map[Reason]*metrics.Counter{}}
	for _, reason := range Reasons {
		r.refusals[reason] = set.NewCounter(`relay_ratelimit_refusals_total{reason="` + string(reason) + `"}`)
	}
	return r
}

// Fail answers ctx with err's status and the JSON error shape.
func (r *Responder) Fail(ctx *fasthttp.RequestCtx, err error) {
	ae := Answer(err)
	switch {
	case ae.Reason != "":
		r.refusals[ae.Reason].Inc()
		if r.log.Enabled(context.Background(), slog.LevelDebug) {
			r.log.Debug("refused", "route", Route(ctx), "reason", string(ae.Reason), "status", ae.Status)
		}
	case ae == ErrInternal, ae == errCorrupt, ae == errKeyMissing:
		r.log.Error("internal error", "route", Route(ctx), "code", ae.Code, "err", err)
	}
	ae.write(ctx)
}
