package fleet

import "testing"

// The members' parts of a count add up to it exactly (when it is at least
// the number of members), differ by at most one, and are never 0.
func TestShareOfAddsUp(t *testing.T) {
	for members := 1; members <= 7; members++ {
		for _, total := range []int{1, 2, 3, 7, 10, 32, 200, 1001} {
			sum, lo, hi := 0, total, 0
			for rank := range members {
				p := Share{Members: members, Rank: rank}.Of(total)
				if p < 1 {
					t.Fatalf("%d members, total %d: rank %d gets %d", members, total, rank, p)
				}
				sum += p
				lo, hi = min(lo, p), max(hi, p)
			}
			want := max(total, members) // at least one each
			if sum != want || hi-lo > 1 {
				t.Errorf("%d members, total %d: parts add to %d (want %d), spread %d..%d", members, total, sum, want, lo, hi)
			}
		}
	}
	if got := (Share{Members: 3}).Rate(10); got != 10.0/3 {
		t.Errorf("Rate(10) among 3 = %v", got)
	}
	if got := (Share{}).Of(5); got != 5 {
		t.Errorf("a zero Share counts as alone: Of(5) = %d", got)
	}
}
