package ratelimit_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jira-relay/jira-relay/ratelimit"
)

func TestStreamsLimitPerKey(t *testing.T) {
	for _, n := range []int{1, 3, 32} {
		s := ratelimit.NewStreams(n)
		key := []byte("instance-1")
		for i := 1; i <= n; i++ {
			if !s.TryAcquire(key) {
				t.Fatalf("limit %d: stream %d refused", n, i)
			}
			if got := s.InFlight(key); got != i {
				t.Fatalf("limit %d: InFlight = %d, want %d", n, got, i)
			}
		}
		if s.TryAcquire(key) {
			t.Fatalf("limit %d: stream %d allowed", n, n+1)
		}
		if !s.TryAcquire([]byte("instance-2")) {
			t.Fatalf("limit %d: another key refused", n)
		}
		if !s.Release(key) || !s.TryAcquire(key) {
			t.Fatalf("limit %d: a released stream did not free a slot", n)
		}
		for range n {
			s.Release(key)
		}
		s.Release([]byte("instance-2"))
		if s.InFlight(key) != 0 || s.Len() != 0 {
			t.Fatalf("limit %d: after releasing all: InFlight %d, Len %d; want 0, 0", n, s.InFlight(key), s.Len())
		}
	}
}

func TestStreamsUnmatchedReleaseIsIgnored(t *testing.T) {
	s := ratelimit.NewStreams(2)
	key := []byte("k")
	if s.Release(key) {
		t.Fatal("Release without Acquire reported a release")
	}
	s.TryAcquire(key)
	if !s.Release(key) {
		t.Fatal("matched Release reported none")
	}
	if s.Release(key) {
		t.Fatal("second Release reported a release")
	}
	if s.InFlight(key) != 0 || s.Len() != 0 {
		t.Fatalf("InFlight %d, Len %d after unmatched releases; want 0, 0", s.InFlight(key), s.Len())
	}
	// Nothing went negative: the full limit is still available.
	if !s.TryAcquire(key) || !s.TryAcquire(key) || s.TryAcquire(key) {
		t.Fatal("limit changed by unmatched releases")
	}
}

func TestStreamsZeroLimitAllowsNone(t *testing.T) {
	s := ratelimit.NewStreams(0)
	if s.TryAcquire([]byte("k")) || s.Len() != 0 {
		t.Fatal("a limit of 0 allowed a stream or kept a key")
	}
}

func TestStreamsConcurrentAcquireRelease(t *testing.T) {
	const limit, keys, workers, rounds = 4, 8, 32, 2000
	s := ratelimit.NewStreams(limit, ratelimit.WithShards(4))
	var inFlight [keys]atomic.Int32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				k := (w + i) % keys
				key := []byte{byte('a' + k)}
				if !s.TryAcquire(key) {
					continue
				}
				if n := inFlight[k].Add(1); n > limit {
					t.Errorf("key %c: %d streams in flight, limit %d", 'a'+k, n, limit)
				}
				inFlight[k].Add(-1)
				s.Release(key)
			}
		})
	}
	wg.Wait()
	if n := s.Len(); n != 0 {
		t.Fatalf("Len = %d after every stream was released, want 0", n)
	}
}
