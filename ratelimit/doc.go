// Package ratelimit is the relay's local protection, decided on every request
// before its body is read:
//
//   - [Keyed]: a token bucket per key (client IP, instance), built on
//     golang.org/x/time/rate;
//   - [Streams]: at most N concurrent attachment streams per key;
//   - [Cooldown]: after Jira answered 429 for an instance, answer 429 locally
//     until the cool-down has passed;
//   - [IssueWrites]: Jira Cloud's per-issue write limit (at most 20 writes in
//     any 2 s and 100 in any 30 s) kept locally, as sliding windows over a
//     log of each issue's recent writes.
//
// Every type is safe for concurrent use. State is split over shards, each
// with its own mutex, chosen by a non-allocating hash of the key bytes, and
// looking up a key already present makes no allocation. Memory is bounded:
// [Keyed], [Cooldown] and [IssueWrites] keep at most MaxKeys entries
// (evicting the least recently used one when full) and drop idle entries,
// lazily and in [Keyed.Sweep] and friends, which the caller may run
// periodically; [Streams] only holds keys with streams in flight. No type
// starts a goroutine.
//
// Time comes from a [Clock] given with [WithClock], so tests advance a fake
// clock by hand instead of sleeping.
package ratelimit
