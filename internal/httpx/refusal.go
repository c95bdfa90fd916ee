package httpx

import (
	"time"

	"github.com/jira-relay/jira-relay/ratelimit"
)

// Reason names why a guard refused a request. One list drives the answer's
// code and message, the metric label and the log.
type Reason string

// The refusal reasons.
const (
	ReasonIP           Reason = "ip"            // per client address, data routes
	ReasonRegistration Reason = "registration"  // per client address, POST /v1/instances
	ReasonInstance     Reason = "instance"      // per instance
	ReasonStreams      Reason = "streams"       // uploads and downloads in flight per instance
	ReasonJiraCooldown Reason = "jira_cooldown" // Jira answered 429 for this instance
	ReasonIssueWrites  Reason = "issue_writes"  // Jira's per-issue write limit
	ReasonAuthFailures Reason = "auth_failures" // failed key checks per client address
	ReasonBreakerOpen  Reason = "breaker_open"  // the instance's circuit breaker is open
)

// Reasons lists every reason, for metrics that must exist before the first
// refusal.
var Reasons = []Reason{ReasonIP, ReasonRegistration, ReasonInstance, ReasonStreams,
	ReasonJiraCooldown, ReasonIssueWrites, ReasonAuthFailures, ReasonBreakerOpen}

// message is the sentence a caller reads for a refusal.
func (r Reason) message() string {
	switch r {
	case ReasonIP:
		return "too many requests from this address; retry after Retry-After seconds"
	case ReasonRegistration:
		return "too many registrations from this address; retry after Retry-After seconds"
	case ReasonInstance:
		return "too many requests for this instance; retry after Retry-After seconds"
	case ReasonStreams:
		return "too many uploads and downloads in flight for this instance; retry after Retry-After seconds"
	case ReasonJiraCooldown:
		return "Jira Cloud rate-limited these requests (RateLimit-Reason says which limit); the relay holds them until Retry-After passes"
	case ReasonIssueWrites:
		return "Jira's per-issue write limit (20 per 2 s, 100 per 30 s) would be exceeded; retry after Retry-After seconds"
	case ReasonAuthFailures:
		return "too many failed key checks from this address; retry after Retry-After seconds"
	case ReasonBreakerOpen:
		return "Jira for this instance is failing; the relay holds requests until it recovers"
	}
	return "request refused; retry after Retry-After seconds"
}

// RateLimited is a refusal by a local limit: 429 with an exact Retry-After
// and the RateLimit-* headers.
type RateLimited struct {
	Reason   Reason
	Decision ratelimit.Decision
	// JiraReason is Jira's RateLimit-Reason for a cool-down it asked for,
	// passed back to the caller ("" for none).
	JiraReason string
}

func (e *RateLimited) Error() string { return "rate limited: " + string(e.Reason) }

// Limited builds the refusal of reason with the limiter's decision.
func Limited(reason Reason, d ratelimit.Decision) *RateLimited {
	return &RateLimited{Reason: reason, Decision: d}
}

// Held is the decision of a hold that lasts wait (a cool-down, a blocked
// address): no budget, nothing remaining.
func Held(wait time.Duration) ratelimit.Decision {
	return ratelimit.Decision{OK: false, Limit: 0, Remaining: 0, Reset: wait, RetryAfter: wait}
}

// BreakerOpen is a refusal by an open circuit breaker: 503 with the time
// until it lets a probe through.
type BreakerOpen struct{ RetryAfter time.Duration }

func (e *BreakerOpen) Error() string { return "upstream circuit open" }
