package ratelimit

import (
	"math/rand/v2"
	"time"
)

// Defaults used when an Option is not given (or given an invalid value).
const (
	// DefaultMaxKeys bounds the entries of a Keyed, Cooldown or IssueWrites.
	DefaultMaxKeys = 100_000
	// DefaultShards is the number of independently locked shards.
	DefaultShards = 64
	// DefaultBackoffBase is the Cooldown after a first 429 without Retry-After.
	DefaultBackoffBase = time.Second
	// DefaultBackoffCap caps the Cooldown's exponential backoff (before jitter).
	DefaultBackoffCap = 60 * time.Second
	// DefaultGrace is how long a Cooldown entry outlives its cool-down, so that
	// a 429 soon after still counts as consecutive.
	DefaultGrace = 60 * time.Second
)

const maxShards = 1 << 12

// Option configures a Keyed, Streams, Cooldown or IssueWrites. Each option
// says which of them it applies to; the others ignore it.
type Option func(*config)

type config struct {
	clock   Clock
	maxKeys int
	ttl     time.Duration
	shards  int
	base    time.Duration
	cap     time.Duration
	grace   time.Duration
	rand    func() float64
	short   Window
	long    Window
}

func newConfig(opts []Option) config {
	c := config{
		clock:   SystemClock{},
		maxKeys: DefaultMaxKeys,
		shards:  DefaultShards,
		base:    DefaultBackoffBase,
		cap:     DefaultBackoffCap,
		grace:   DefaultGrace,
		rand:    rand.Float64,
		short:   jiraIssueShort,
		long:    jiraIssueLong,
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.cap < c.base {
		c.cap = c.base
	}
	return c
}

// WithClock sets the clock (all types; Streams does not read the time).
// A nil clock keeps the default SystemClock.
func WithClock(c Clock) Option {
	return func(cfg *config) {
		if c != nil {
			cfg.clock = c
		}
	}
}

// WithMaxKeys bounds the number of keys kept (Keyed, Cooldown, IssueWrites).
// When full, inserting a key evicts the least recently used one of its
// shard; Len never exceeds n. n <= 0 keeps DefaultMaxKeys.
func WithMaxKeys(n int) Option {
	return func(cfg *config) {
		if n > 0 {
			cfg.maxKeys = n
		}
	}
}

// WithTTL drops entries idle for longer than d (Keyed, IssueWrites). A TTL
// shorter than the time an empty bucket takes to fill up again is raised to
// that time, so dropping an idle entry never hands out tokens the bucket would
// not have had. d <= 0 keeps that minimum, which is the default.
func WithTTL(d time.Duration) Option {
	return func(cfg *config) { cfg.ttl = d }
}

// WithShards sets the number of independently locked shards (all types),
// rounded up to a power of two, at most 4096, and lowered so that no shard of
// a bounded type has room for less than one key. n <= 0 keeps DefaultShards.
func WithShards(n int) Option {
	return func(cfg *config) {
		if n > 0 {
			cfg.shards = n
		}
	}
}

// WithBackoff sets the Cooldown's backoff when Jira sends no Retry-After:
// base after the first 429, doubling per consecutive 429 up to max, before
// jitter. Values <= 0 keep the defaults (1s, 60s); max < base means base.
func WithBackoff(base, max time.Duration) Option {
	return func(cfg *config) {
		if base > 0 {
			cfg.base = base
		}
		if max > 0 {
			cfg.cap = max
		}
	}
}

// WithGrace sets how long a Cooldown entry, and so its streak of consecutive
// 429s, outlives its cool-down. d < 0 keeps DefaultGrace.
func WithGrace(d time.Duration) Option {
	return func(cfg *config) {
		if d >= 0 {
			cfg.grace = d
		}
	}
}

// WithJitterSource sets the Cooldown's random source: f returns a number in
// [0, 1) (values outside are clamped), mapped to a jitter factor in
// [0.7, 1.3). f must be safe for concurrent use; tests pass a deterministic
// one. Nil keeps math/rand/v2's Float64.
func WithJitterSource(f func() float64) Option {
	return func(cfg *config) {
		if f != nil {
			cfg.rand = f
		}
	}
}

// WithWindows replaces IssueWrites' two windows (default 20 writes per 2 s
// and 100 writes per 30 s). A window with Events <= 0 or Per <= 0 keeps its
// default.
func WithWindows(short, long Window) Option {
	return func(cfg *config) {
		if short.valid() {
			cfg.short = short
		}
		if long.valid() {
			cfg.long = long
		}
	}
}
