package bench

import (
	"math/rand/v2"
	"testing"
)

func TestParseMix(t *testing.T) {
	m, err := ParseMix("upload:20, config:40,map-write:20,map-read:20")
	if err != nil || m != (Mix{20, 40, 20, 20}) || m.String() != "upload:20,config:40,map-write:20,map-read:20" {
		t.Fatalf("got %v %v", m, err)
	}
	if m, err := ParseMix("config"); err != nil || !m.Only(OpConfig) {
		t.Fatalf("config alone: %v %v", m, err)
	}
	for _, bad := range []string{"", "upload:0", "upload:x", "delete:1", "upload:1,upload:2", "upload:-1"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	var n [numOps]int
	for range 10_000 {
		n[m.Pick(r)]++
	}
	if n[OpConfig] < 3500 || n[OpConfig] > 4500 || n[OpUpload] < 1500 || n[OpUpload] > 2500 {
		t.Errorf("picks %v do not follow 20/40/20/20", n)
	}
}

func TestParseSizes(t *testing.T) {
	s, err := ParseSizes("20KiB-2MiB:90,10MiB-25MiB:10")
	if err != nil || len(s) != 2 || s[0].Min != 20<<10 || s[0].Max != 2<<20 || s[1].Weight != 10 {
		t.Fatalf("got %+v %v", s, err)
	}
	if s.String() != "20KiB-2MiB:90,10MiB-25MiB:10" || s.Largest() != 25<<20 {
		t.Errorf("String %q Largest %d", s.String(), s.Largest())
	}
	one, err := ParseSizes("64MiB")
	if err != nil || one.Pick(rand.New(rand.NewPCG(1, 1))) != 64<<20 {
		t.Fatalf("64MiB: %v %v", one, err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	big := 0
	for range 10_000 {
		v := s.Pick(r)
		if v < 20<<10 || v > 25<<20 || (v > 2<<20 && v < 10<<20) {
			t.Fatalf("picked %d outside the bands", v)
		}
		if v >= 10<<20 {
			big++
		}
	}
	if big < 800 || big > 1200 {
		t.Errorf("%d of 10000 in the 10%% band", big)
	}
	for _, bad := range []string{"", "2MiB-1MiB", "1XB", "1KiB:-1", "-5"} {
		if _, err := ParseSizes(bad); err == nil {
			t.Errorf("ParseSizes(%q) accepted", bad)
		}
	}
}
