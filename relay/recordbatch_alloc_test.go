//go:build !race

package relay

import "testing"

// TestUpstreamTLSWriteAllocatesNothing: writing an upload's body to Jira
// over TLS (a 64 KiB flush of the HostClient's buffer through idleConn,
// crypto/tls and recordBatch) makes no heap allocation: the batch buffer
// is pooled.
func TestUpstreamTLSWriteAllocatesNothing(t *testing.T) {
	p := startTLSPair(t, false)
	b := make([]byte, 64<<10)
	write := func() {
		if _, err := p.ic.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	for range 8 {
		write()
	}
	if a := testing.AllocsPerRun(200, write); a != 0 {
		t.Errorf("a 64 KiB write allocates %.1f times, want 0", a)
	}
	p.close()
}
