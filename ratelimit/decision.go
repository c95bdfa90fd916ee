package ratelimit

import "time"

// Decision is the outcome of one request against a token bucket ([Keyed]) or
// a pair of sliding windows ([IssueWrites]); its fields map onto the
// RateLimit-* and Retry-After response headers.
type Decision struct {
	// OK reports whether the request may proceed. A refused request took no
	// token.
	OK bool
	// Limit is the bucket's burst: the most requests allowed at once (for
	// IssueWrites, the deciding window's Events; see IssueWrites.Allow).
	Limit int
	// Remaining is the number of whole tokens left after this decision
	// (floored, never negative); 0 on refusal.
	Remaining int
	// Reset is the time until the bucket is full again when OK (rounded up to
	// the microsecond); on refusal it equals RetryAfter.
	Reset time.Duration
	// RetryAfter is 0 when OK. On refusal it is exactly how long until the
	// request would be allowed, absent other traffic on the key: the delay
	// rate.Reservation computes, in whole microseconds (rounded up, one
	// nanosecond of float noise forgiven) and checked to suffice.
	RetryAfter time.Duration
}

// RetryAfterSeconds returns RetryAfter rounded up to whole seconds, at least 1
// on refusal, for the Retry-After header; 0 when OK.
func (d Decision) RetryAfterSeconds() int {
	if d.OK {
		return 0
	}
	return max(CeilSeconds(d.RetryAfter), 1)
}

// ResetSeconds returns Reset rounded up to whole seconds, at least 1 on
// refusal, for a RateLimit-Reset header.
func (d Decision) ResetSeconds() int {
	s := CeilSeconds(d.Reset)
	if !d.OK {
		s = max(s, 1)
	}
	return s
}

// CeilSeconds rounds d up to whole seconds (0 for d <= 0), saturating at the
// largest int; use it for a Cooldown's wait in a Retry-After header.
func CeilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	s := d / time.Second
	if d%time.Second != 0 {
		s++
	}
	return int(s)
}
