package store

import (
	"errors"
	"strings"
	"testing"
)

const testListing = "/jira-relay/instances/i1/index/conversation/c1/"

func TestCursorRoundTripAndRefusals(t *testing.T) {
	for _, rest := range []string{"a", "conv/\xff\x01/m", strings.Repeat("k", 256)} {
		c := encodeCursor(testListing, []byte(rest))
		got, err := decodeCursor(testListing, c, 256)
		if err != nil || got != rest {
			t.Errorf("decode(encode(%q)) = %q, %v", rest, got, err)
		}
		// Any one character changed: refused.
		for i := range c {
			alt := []byte(c)
			alt[i] = map[bool]byte{true: 'B', false: 'A'}[alt[i] == 'A']
			if got, err := decodeCursor(testListing, string(alt), 256); err == nil && got != rest {
				t.Errorf("altered cursor %q accepted as %q", alt, got)
			}
		}
		// Given out for another listing (another query, another instance): refused.
		for _, other := range []string{"/jira-relay/instances/i1/index/conversation/c2/", "/jira-relay/instances/i2/index/conversation/c1/", "/jira-relay/instances/i1/index/issue/10001/"} {
			if _, err := decodeCursor(other, c, 256); !errors.Is(err, ErrBadCursor) {
				t.Errorf("cursor of %s accepted for %s: %v", testListing, other, err)
			}
		}
	}
	for _, bad := range []string{"", "garbage", "zz", "%FF", "AAAAAAAA", encodeCursor(testListing, []byte(strings.Repeat("k", 257))), encodeCursor(testListing, []byte("a\x00b"))} {
		if _, err := decodeCursor(testListing, bad, 256); !errors.Is(err, ErrBadCursor) {
			t.Errorf("cursor %q: err %v, want ErrBadCursor", bad, err)
		}
	}
}

// FuzzDecodeCursor: no input panics; whatever is accepted is a key suffix
// without NUL within the bound, and encodes back to a cursor naming it.
func FuzzDecodeCursor(f *testing.F) {
	f.Add("garbage")
	f.Add(encodeCursor(testListing, []byte("conv-1/m-2")))
	f.Add("")
	f.Fuzz(func(t *testing.T, c string) {
		rest, err := decodeCursor(testListing, c, 64)
		if err != nil {
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("error %v is not ErrBadCursor", err)
			}
			return
		}
		if rest == "" || len(rest) > 64 || strings.IndexByte(rest, 0) >= 0 {
			t.Fatalf("accepted %q", rest)
		}
		if again, err := decodeCursor(testListing, encodeCursor(testListing, []byte(rest)), 64); err != nil || again != rest {
			t.Fatalf("re-encoded cursor names %q, %v; want %q", again, err, rest)
		}
	})
}
