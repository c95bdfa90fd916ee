package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// SizeRange is one band of attachment sizes with its weight.
type SizeRange struct {
	Min, Max int64 // bytes, Min ≤ Max
	Weight   int
}

// SizeMix is the distribution of upload sizes: a band is drawn by weight,
// then a size within it log-uniformly (small files are more common than
// large ones inside a band, as in real mailboxes).
type SizeMix []SizeRange

// ParseSizes reads "20KiB-2MiB:90,10MiB-25MiB:10" or "64MiB". Units: B,
// KiB/K/KB, MiB/M/MB, GiB/G/GB, all binary (1 KiB = 1024 B).
func ParseSizes(s string) (SizeMix, error) {
	var out SizeMix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		band, w, ok := strings.Cut(part, ":")
		weight := 1
		if ok {
			n, err := strconv.Atoi(strings.TrimSpace(w))
			if err != nil || n < 0 || n > 1_000_000 {
				return nil, fmt.Errorf("size band %q: weight must be a whole number from 0 to 1000000", part)
			}
			weight = n
		}
		lo, hi, isRange := strings.Cut(band, "-")
		min, err := ParseBytes(lo)
		if err != nil {
			return nil, fmt.Errorf("size band %q: %w", part, err)
		}
		max := min
		if isRange {
			if max, err = ParseBytes(hi); err != nil {
				return nil, fmt.Errorf("size band %q: %w", part, err)
			}
		}
		if max < min {
			return nil, fmt.Errorf("size band %q: the upper bound is below the lower", part)
		}
		if weight > 0 {
			out = append(out, SizeRange{Min: min, Max: max, Weight: weight})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sizes %q have no band with a positive weight", s)
	}
	return out, nil
}

// ParseBytes reads a size such as "1KiB", "25MiB", "1GiB" or "512".
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') {
		i--
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	mult := map[string]int64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || mult == 0 || n < 0 || n > (4<<40)/mult {
		return 0, fmt.Errorf("%q is not a size like 20KiB, 25MiB or 1GiB", s)
	}
	return n * mult, nil
}

// FormatBytes writes n with a binary unit (exact when it divides evenly).
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

// Pick draws one size.
func (m SizeMix) Pick(r *rand.Rand) int64 {
	total := 0
	for _, b := range m {
		total += b.Weight
	}
	n := r.IntN(total)
	for _, b := range m {
		if n >= b.Weight {
			n -= b.Weight
			continue
		}
		if b.Min == b.Max {
			return b.Min
		}
		lo := math.Log(float64(max(b.Min, 1)))
		hi := math.Log(float64(b.Max))
		v := int64(math.Exp(lo + r.Float64()*(hi-lo)))
		return min(max(v, b.Min), b.Max)
	}
	return m[0].Min
}

// Largest is the biggest size the mix can draw.
func (m SizeMix) Largest() int64 {
	var l int64
	for _, b := range m {
		l = max(l, b.Max)
	}
	return l
}

// String is the mix in --sizes syntax.
func (m SizeMix) String() string {
	var parts []string
	for _, b := range m {
		band := FormatBytes(b.Min)
		if b.Max != b.Min {
			band += "-" + FormatBytes(b.Max)
		}
		parts = append(parts, band+":"+strconv.Itoa(b.Weight))
	}
	return strings.Join(parts, ",")
}
