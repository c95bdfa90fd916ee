package ratelimit

import (
	"math"
	"time"

	"golang.org/x/time/rate"
)

// This file holds the token-bucket arithmetic of Keyed on top of
// rate.Limiter.

// tokenSlack forgives float noise when counting whole tokens: rate.Limiter
// itself lets a request through when the missing fraction of a token is
// worth less than a nanosecond.
const tokenSlack = 1e-9

// bucketRate turns events per second into a rate.Limit, refusing what would
// make a bucket that never refills or never allows anything.
func bucketRate(rps float64, burst int, who string) rate.Limit {
	if !(rps > 0) || math.IsInf(rps, 0) || burst < 1 {
		panic("ratelimit: " + who + " needs a finite rate > 0 per second and a burst >= 1")
	}
	return rate.Limit(rps)
}

// fillTime is how long an empty bucket takes to fill up.
func fillTime(limit rate.Limit, burst int) time.Duration {
	return tokensDuration(limit, float64(burst))
}

// tokensDuration is how long limit takes to accumulate tokens, rounded up to
// the microsecond (see roundMicro) and saturating.
func tokensDuration(limit rate.Limit, tokens float64) time.Duration {
	if tokens <= 0 {
		return 0
	}
	ns := tokens / float64(limit) * float64(time.Second)
	if ns >= math.MaxInt64/2 {
		return math.MaxInt64
	}
	return roundMicro(time.Duration(ns))
}

// roundMicro rounds d up to the microsecond, forgiving one nanosecond of
// float noise above a whole microsecond, so that 499999999ns and 500000001ns
// both read 500ms.
func roundMicro(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	if d > math.MaxInt64-time.Microsecond {
		return math.MaxInt64
	}
	return (d + time.Microsecond - 2) / time.Microsecond * time.Microsecond
}

// wholeTokens is the number of whole tokens in a bucket holding tokens,
// never negative.
func wholeTokens(tokens float64) int {
	tokens += tokenSlack
	if tokens < 1 {
		return 0
	}
	return int(tokens) // floor for tokens > 0
}

// untilFull is how long a bucket holding tokens needs to be full again.
func untilFull(limit rate.Limit, burst int, tokens float64) time.Duration {
	return tokensDuration(limit, float64(burst)-tokens)
}

// ready reports whether lim, refilling at limit, would grant one token at t,
// deciding as rate.Limiter.ReserveN does. A nil lim is always ready.
func ready(lim *rate.Limiter, limit rate.Limit, t time.Time) bool {
	if lim == nil {
		return true
	}
	missing := 1 - lim.TokensAt(t)
	return missing <= 0 || time.Duration(missing/float64(limit)*float64(time.Second)) <= 0
}

// exactWait turns the delay of a cancelled reservation into the wait
// reported as Decision.RetryAfter: rounded to the microsecond (see
// roundMicro), at least one, and checked against the limiters, a and b
// (b may be nil), so that a request made exactly that long after now is
// allowed by both, absent other traffic.
func exactWait(d time.Duration, now time.Time, a *rate.Limiter, al rate.Limit, b *rate.Limiter, bl rate.Limit) time.Duration {
	d = max(roundMicro(d), time.Microsecond)
	step := time.Microsecond
	for i := 0; i < 40; i++ { // 2^40 µs is 12 days: far past any sane wait
		at := now.Add(d)
		if ready(a, al, at) && ready(b, bl, at) {
			break
		}
		if d > math.MaxInt64-step {
			return math.MaxInt64
		}
		d += step
		if i >= 4 {
			step *= 2
		}
	}
	return d
}
