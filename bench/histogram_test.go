package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramPercentiles(t *testing.T) {
	var h Histogram
	r := rand.New(rand.NewPCG(1, 2))
	var all []time.Duration
	for range 100_000 {
		d := time.Duration(r.ExpFloat64() * float64(3*time.Millisecond))
		h.Record(d)
		all = append(all, d)
	}
	slices.Sort(all)
	for _, p := range []float64{0, 50, 90, 99, 99.9, 100} {
		want := all[min(int(p/100*float64(len(all))), len(all)-1)]
		got := h.Percentile(p)
		if diff := float64(got-want) / float64(max(want, 1)); diff > 0.02 || diff < -0.02 {
			t.Errorf("p%v = %v, want %v ±2%%", p, got, want)
		}
	}
	if h.Max() != all[len(all)-1] || h.Count() != int64(len(all)) {
		t.Errorf("max %v count %d, want %v %d", h.Max(), h.Count(), all[len(all)-1], len(all))
	}
}

func TestBucketsAreMonotonic(t *testing.T) {
	prev := -1
	for v := time.Duration(0); v < 1<<40; v = v*9/8 + 1 {
		b := bucketOf(v)
		if b < prev || b >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d after %d", v, b, prev)
		}
		if mid := bucketValue(b); float64(mid-v) > 0.02*float64(v)+1 || float64(v-mid) > 0.02*float64(v)+1 {
			t.Fatalf("bucket %d of %d has middle %d", b, v, mid)
		}
		prev = b
	}
}
