package fleet

// Share is this relay's place in the fleet: how many members there are and
// its rank among them (by relay id). A fleet-wide limit is divided by it,
// as Envoy's local_cluster_rate_limit divides one bucket among the members
// of the local cluster: with load spread evenly over the members, the
// fleet admits what one relay with the whole limit would.
type Share struct {
	Members int // at least 1: this relay
	Rank    int // 0 ≤ Rank < Members
}

// Solo is the share of a relay alone.
var Solo = Share{Members: 1}

// Of is this relay's part of a whole count (a burst, a number of streams):
// total divided by the members, the remainder going one each to the lowest
// ranks, so that the parts add up to total exactly; never below 1, so that
// no relay refuses everything (a total smaller than the fleet then admits
// one per member).
func (s Share) Of(total int) int {
	n := max(s.Members, 1)
	part := total / n
	if s.Rank < total%n {
		part++
	}
	return max(part, 1)
}

// Rate is this relay's part of a fleet-wide rate.
func (s Share) Rate(total float64) float64 { return total / float64(max(s.Members, 1)) }
