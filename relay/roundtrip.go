package relay

import (
	"errors"
	"strconv"
	"time"

	"github.com/jira-relay/jira-relay/internal/fleet"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"github.com/jira-relay/jira-relay/ratelimit"
	"github.com/valyala/fasthttp"
)

// errNotCounted marks an outcome the breaker must ignore (the caller's own
// abort or bad body).
var errNotCounted = errors.New("outcome not counted by the breaker")

// errUpstreamStatus marks a 5xx answer from Jira, a breaker failure.
var errUpstreamStatus = errors.New("upstream answered 5xx")

// roundTrip sends req to the instance's Jira and returns its answer (the
// caller releases it), shared by uploads and downloads: it stamps the
// request id, times the exchange, records Jira's status for the access
// line, and keeps the cool-down Jira asked for, for the scope its
// RateLimit-Reason names (ep is the endpoint called, issue the issue an
// upload writes to, "" for a download). A 429 without Retry-After gets the
// relay's own, so the caller knows when to come back.
//
// body, if not nil, is req's body stream: it is told the exchange's
// Response, through which it learns when Jira stops reading (see upBody).
// When Jira answered before it read the whole request, the connection is
// closed after the answer, never pooled.
func (r *Relay) roundTrip(ctx *fasthttp.RequestCtx, instanceID string, ep fleet.Endpoint, issue string, up *upstream, req *fasthttp.Request, body *upBody) (*fasthttp.Response, error) {
	if rid := httpx.RequestID(ctx); rid != "" {
		req.Header.Set("X-Request-Id", rid)
	}
	resp := fasthttp.AcquireResponse()
	if body != nil {
		body.resp = resp
	}
	t0 := time.Now()
	err := up.hc.Do(req, resp)
	r.metrics.upstream.Update(time.Since(t0).Seconds())
	if body != nil {
		body.resp = nil
	}
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, err
	}
	if peerStopped(resp) {
		// fasthttp checks this again when the answer's body is closed.
		resp.SetConnectionClose()
	}
	status := resp.StatusCode()
	httpx.SetUpstreamStatus(ctx, status)
	switch {
	case status == fasthttp.StatusTooManyRequests:
		given := parseRetryAfter(resp.Header.Peek("Retry-After"), time.Now())
		cool := r.guards.cooldowns.Trip(instanceID, ep, issue, jiraReason(resp), given)
		if given <= 0 {
			resp.Header.Set("Retry-After", strconv.Itoa(max(ratelimit.CeilSeconds(cool), 1)))
		}
	case status < 500:
		r.guards.cooldowns.Succeeded(instanceID, ep, issue)
	}
	return resp, nil
}

// jiraReason is the RateLimit-Reason of Jira's 429 (before enforcement Jira
// sends it as X-Beta-RateLimit-Reason).
func jiraReason(resp *fasthttp.Response) string {
	if v := resp.Header.Peek("RateLimit-Reason"); len(v) > 0 {
		return string(v)
	}
	return string(resp.Header.Peek("X-Beta-RateLimit-Reason"))
}

// outcome is the breaker's view of Jira's status: only 5xx is a failure (a
// 4xx is the caller's or the credential's problem, not Jira's health).
func outcome(status int) error {
	if status >= 500 {
		return errUpstreamStatus
	}
	return nil
}
