package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestShardCount(t *testing.T) {
	tests := []struct{ want, maxKeys, got int }{
		{64, 100_000, 64},
		{60, 100_000, 64}, // rounded up to a power of two
		{64, 10, 8},       // no shard without room for a key
		{64, 1, 1},
		{0, 100, 1},
		{1 << 20, 1 << 30, maxShards},
	}
	for _, tt := range tests {
		if got := shardCount(tt.want, tt.maxKeys); got != tt.got {
			t.Errorf("shardCount(%d, %d) = %d, want %d", tt.want, tt.maxKeys, got, tt.got)
		}
	}
}

func TestTableCapacitySumsToMaxKeys(t *testing.T) {
	for _, maxKeys := range []int{1, 7, 64, 65, 1000, 100_003} {
		tb := newTable[int](64, maxKeys)
		sum := 0
		for i := range tb.shards {
			if tb.shards[i].lru.limit < 1 {
				t.Fatalf("maxKeys %d: shard %d has room for %d", maxKeys, i, tb.shards[i].lru.limit)
			}
			sum += tb.shards[i].lru.limit
		}
		if sum != maxKeys {
			t.Errorf("maxKeys %d: shards hold %d", maxKeys, sum)
		}
	}
}

func TestRoundMicro(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		0:           0,
		1:           0,
		2:           time.Microsecond,
		999:         time.Microsecond,
		1000:        time.Microsecond,
		1001:        time.Microsecond, // 1ns of float noise forgiven
		1002:        2 * time.Microsecond,
		499_999_999: 500 * time.Millisecond,
		500_000_001: 500 * time.Millisecond,
	} {
		if got := roundMicro(in); got != want {
			t.Errorf("roundMicro(%d) = %v, want %v", in, got, want)
		}
	}
}

func TestLRU(t *testing.T) {
	var l lru[int]
	l.init(3)
	keys := func() string {
		s := ""
		for n := l.root.next; n != &l.root; n = n.next {
			s += n.key
		}
		return s
	}
	for i, k := range []string{"a", "b", "c"} {
		n, evicted := l.add([]byte(k), int64(i))
		n.val = i
		if evicted {
			t.Fatalf("add %s evicted with room left", k)
		}
	}
	if got := keys(); got != "cba" {
		t.Fatalf("order %q, want cba", got)
	}
	l.touch(l.get([]byte("a")), 10)
	if got := keys(); got != "acb" {
		t.Fatalf("after touch(a): %q, want acb", got)
	}
	n, evicted := l.add([]byte("d"), 11)
	if !evicted || n.val != 0 || l.get([]byte("b")) != nil || l.len() != 3 {
		t.Fatalf("add(d) on a full lru: evicted %v, val %d, b present %v, len %d", evicted, n.val, l.get([]byte("b")) != nil, l.len())
	}
	if got := keys(); got != "dac" {
		t.Fatalf("after add(d): %q, want dac", got)
	}
	if got := l.pruneBack(1, func(n *node[int]) bool { return n.touched < 20 }); got != 1 || keys() != "da" {
		t.Fatalf("pruneBack(1) removed %d, left %q; want 1, da", got, keys())
	}
	if got := l.pruneAll(func(n *node[int]) bool { return n.key == "d" }); got != 1 || keys() != "a" {
		t.Fatalf("pruneAll removed %d, left %q; want 1, a", got, keys())
	}
	l.remove(l.get([]byte("a")))
	if l.len() != 0 || l.back() != nil || keys() != "" {
		t.Fatalf("not empty after removing all: len %d", l.len())
	}
}

func TestLRUManyKeys(t *testing.T) {
	var l lru[struct{}]
	l.init(100)
	for i := range 10_000 {
		if l.get(fmt.Appendf(nil, "%d", i)) != nil {
			t.Fatal("found a key never added")
		}
		l.add(fmt.Appendf(nil, "%d", i), int64(i))
	}
	if l.len() != 100 {
		t.Fatalf("len %d, want 100", l.len())
	}
	// The survivors are the 100 most recent, newest at the front.
	i := 9_999
	for n := l.root.next; n != &l.root; n = n.next {
		if n.key != fmt.Sprint(i) {
			t.Fatalf("found %s, want %d", n.key, i)
		}
		i--
	}
}
