//go:build !race

package seal

import "testing"

// A token costs no allocation once the tokenizer's pool is warm (the race
// detector's sync.Pool drops items at random, so not under -race).
func TestTokenAllocatesNothing(t *testing.T) {
	tk, err := keyring(t, "k1").Tokens("k1", "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = tk.Append(buf[:0], "<CAFE@outlook.com>") }); n != 0 {
		t.Errorf("Append allocates %v times", n)
	}
}
