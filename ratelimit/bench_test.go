package ratelimit_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/ratelimit"
)

// A high rate keeps the keys allowing, so the benchmarks measure the common
// path; the real clock is used, as in production. A long TTL keeps the tiny
// fill time of such a bucket from expiring keys between two rounds.

func BenchmarkKeyedAllowHotKey(b *testing.B) {
	k := ratelimit.New(1e9, 1_000_000)
	key := []byte("203.0.113.7")
	b.ReportAllocs()
	for b.Loop() {
		k.Allow(key)
	}
}

func BenchmarkKeyedAllowRefused(b *testing.B) {
	k := ratelimit.New(1e-6, 1)
	key := []byte("203.0.113.7")
	k.Allow(key)
	b.ReportAllocs()
	for b.Loop() {
		k.Allow(key)
	}
}

func BenchmarkKeyedAllow10kKeys(b *testing.B) {
	k := ratelimit.New(1e9, 1_000_000, ratelimit.WithTTL(time.Hour))
	keys := make([][]byte, 10_000)
	for i := range keys {
		keys[i] = []byte("198.51.100." + strconv.Itoa(i))
		k.Allow(keys[i])
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k.Allow(keys[i])
		if i++; i == len(keys) {
			i = 0
		}
	}
}

func BenchmarkKeyedAllowParallel(b *testing.B) {
	k := ratelimit.New(1e9, 1_000_000, ratelimit.WithTTL(time.Hour))
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = []byte("instance-" + strconv.Itoa(i))
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(97))
		for pb.Next() {
			k.Allow(keys[i%len(keys)])
			i++
		}
	})
}

func BenchmarkKeyedAllowParallelOneKey(b *testing.B) {
	k := ratelimit.New(1e9, 1_000_000)
	key := []byte("the-one-instance")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k.Allow(key)
		}
	})
}

// BenchmarkKeyedFloodDistinctKeys inserts a new key per operation: memory
// stays bounded by MaxKeys, reported as the keys metric.
func BenchmarkKeyedFloodDistinctKeys(b *testing.B) {
	const maxKeys = 10_000
	k := ratelimit.New(10, 20, ratelimit.WithMaxKeys(maxKeys))
	buf := make([]byte, 0, 32)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		buf = strconv.AppendInt(append(buf[:0], "flood-"...), int64(i), 10)
		k.Allow(buf)
		i++
	}
	if n := k.Len(); n > maxKeys {
		b.Fatalf("Len = %d, want <= %d", n, maxKeys)
	}
	b.ReportMetric(float64(k.Len()), "keys")
}

func BenchmarkIssueWritesAllow(b *testing.B) {
	w := ratelimit.NewIssueWrites(ratelimit.WithWindows(
		ratelimit.Window{Events: 1_000_000, Per: time.Millisecond},
		ratelimit.Window{Events: 1_000_000, Per: time.Millisecond},
	))
	key := []byte("8f2c1f0e-instance/PROJ-123")
	b.ReportAllocs()
	for b.Loop() {
		w.Allow(key)
	}
}

func BenchmarkCooldownCheck(b *testing.B) {
	c := ratelimit.NewCooldown()
	key := []byte("8f2c1f0e-instance")
	c.Trip(key, time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		c.Check(key)
	}
}

func BenchmarkCooldownCheckAbsent(b *testing.B) {
	c := ratelimit.NewCooldown()
	key := []byte("8f2c1f0e-instance")
	b.ReportAllocs()
	for b.Loop() {
		c.Check(key)
	}
}

func BenchmarkStreamsAcquireRelease(b *testing.B) {
	s := ratelimit.NewStreams(32)
	key := []byte("8f2c1f0e-instance")
	s.TryAcquire(key)
	b.ReportAllocs()
	for b.Loop() {
		s.TryAcquire(key)
		s.Release(key)
	}
}
