package ratelimit

import "time"

// Clock tells the time. Every limiter in this package reads the time only
// through its Clock, so tests can inject a clock they advance by hand. Any
// type with a Now method fits, e.g. clockwork.FakeClock. Now must be safe for
// concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
}

// SystemClock is the real clock: it returns time.Now, whose monotonic reading
// keeps durations right across wall-clock jumps. It is the default Clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }
