package bench

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Op is one kind of request the add-in makes.
type Op int

// The operations, in report order.
const (
	OpUpload   Op = iota // POST an attachment (through the relay or straight at Jira)
	OpConfig             // GET the admin's configuration with If-None-Match (304)
	OpMapWrite           // POST /v1/instances/{id}/mappings
	OpMapRead            // GET /v1/instances/{id}/mappings?conversationId=
	numOps
)

var opNames = [numOps]string{"upload", "config", "map-write", "map-read"}

// String is the operation's name as --mix spells it.
func (o Op) String() string {
	if o < 0 || o >= numOps {
		return "op(" + strconv.Itoa(int(o)) + ")"
	}
	return opNames[o]
}

// Ops lists every operation in report order.
func Ops() []Op { return []Op{OpUpload, OpConfig, OpMapWrite, OpMapRead} }

// ParseOp reads an operation name.
func ParseOp(s string) (Op, error) {
	for i, n := range opNames {
		if n == s {
			return Op(i), nil
		}
	}
	return 0, fmt.Errorf("unknown operation %q (want one of %s)", s, strings.Join(opNames[:], ", "))
}

// Mix is the share of each operation, as integer weights.
type Mix [numOps]int

// ParseMix reads "upload:20,config:40,map-write:20,map-read:20". Missing
// operations get weight 0; at least one weight must be positive.
func ParseMix(s string) (Mix, error) {
	var m Mix
	seen := map[Op]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, ok := strings.Cut(part, ":")
		if !ok {
			w = "1"
		}
		op, err := ParseOp(strings.TrimSpace(name))
		if err != nil {
			return m, err
		}
		if seen[op] {
			return m, fmt.Errorf("operation %q is given twice", name)
		}
		seen[op] = true
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 0 || n > 1_000_000 {
			return m, fmt.Errorf("weight of %q must be a whole number from 0 to 1000000", name)
		}
		m[op] = n
	}
	if m.total() == 0 {
		return m, fmt.Errorf("mix %q has no operation with a positive weight", s)
	}
	return m, nil
}

func (m Mix) total() int {
	t := 0
	for _, w := range m {
		t += w
	}
	return t
}

// Has reports whether op has a positive weight.
func (m Mix) Has(op Op) bool { return m[op] > 0 }

// Only reports whether op is the only operation with a positive weight.
func (m Mix) Only(op Op) bool { return m[op] > 0 && m[op] == m.total() }

// Pick draws an operation by weight.
func (m Mix) Pick(r *rand.Rand) Op {
	n := r.IntN(m.total())
	for i, w := range m {
		if n < w {
			return Op(i)
		}
		n -= w
	}
	return OpUpload // unreachable for a parsed mix
}

// String is the mix in --mix syntax.
func (m Mix) String() string {
	var parts []string
	for i, w := range m {
		if w > 0 {
			parts = append(parts, opNames[i]+":"+strconv.Itoa(w))
		}
	}
	return strings.Join(parts, ",")
}
