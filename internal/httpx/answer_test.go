package httpx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/ratelimit"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// TestAnswer: every kind of error a handler returns becomes one status and
// code, wrapped or not, and anything unknown is a 500 internal that says
// nothing of the cause.
func TestAnswer(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("somewhere: %w", err) }
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{Err(418, "teapot", "no"), 418, "teapot"},
		{Limited(ReasonIP, ratelimit.Decision{Limit: 5, RetryAfter: 2 * time.Second, Reset: 2 * time.Second}), 429, "rate_limited_ip"},
		{wrap(Limited(ReasonRegistration, Held(time.Minute))), 429, "rate_limited_registration"},
		{&BreakerOpen{RetryAfter: 3 * time.Second}, 503, "upstream_circuit_open"},
		{&BodyFailure{Fault: BodyTooLarge, Limit: 10, Err: io.ErrShortBuffer}, 413, "attachment_too_large"},
		{&BodyFailure{Fault: BodyBadBase64, Err: io.ErrShortBuffer}, 400, "invalid_base64"},
		{&BodyFailure{Fault: BodyIncomplete, Err: io.ErrUnexpectedEOF}, 400, "incomplete_body"},
		{&BodyFailure{Fault: BodyTimeout, Err: io.ErrShortBuffer}, 408, "body_timeout"},
		{&BodyFailure{Fault: BodyGone, Err: io.ErrClosedPipe}, 499, "client_closed"},
		{&UpstreamFailure{Err: fasthttp.ErrTimeout}, 504, "upstream_timeout"},
		{&UpstreamFailure{Err: &net.OpError{Op: "dial", Err: errors.New("refused")}}, 502, "upstream_unreachable"},
		{wrap(&store.InvalidError{Field: "name", Reason: "is required"}), 400, "invalid_field"},
		{wrap(store.ErrNotFound), 404, "not_found"},
		{wrap(store.ErrURLTaken), 409, "url_taken"},
		{wrap(store.ErrCloudIDTaken), 409, "cloud_id_taken"},
		{wrap(store.ErrExists), 409, "conflict"},
		{wrap(store.ErrPrecondition), 412, "precondition_failed"},
		{wrap(store.ErrCorrupt), 500, "record_corrupt"},
		{wrap(store.ErrUnavailable), 503, "store_unavailable"},
		{wrap(store.ErrStoreFull), 507, "store_full"},
		{wrap(&store.QuotaError{What: "mappings", Held: 10, Quota: 10}), 507, "tenant_quota_exceeded"},
		{wrap(&store.QuotaError{What: "users", Held: 5, Quota: 5}), 507, "tenant_quota_exceeded"},
		{wrap(store.ErrTokenCollision), 409, "conflict"},
		{context.Canceled, 500, "internal"},
	}
	for _, c := range cases {
		a := Answer(c.err)
		if a.Status != c.status || a.Code != c.code || a.Message == "" {
			t.Errorf("%v → %d %s %q, want %d %s", c.err, a.Status, a.Code, a.Message, c.status, c.code)
		}
		if a.Status == 429 && (a.RetryAfter < 1 || a.RateLimit == nil || a.Reason == "") {
			t.Errorf("%v: a 429 without Retry-After, RateLimit-* or reason: %+v", c.err, a)
		}
	}
	if a := Answer(errors.New("secret token abc")); a.Message != "internal error" {
		t.Errorf("an unknown error's cause reached the answer: %q", a.Message)
	}
}
