package fleet

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"runtime/debug"
	"strings"
)

// NewID names a relay that was given no --relay-id: its host name (what a
// pod or container is called) and 8 random hex digits, so that a restarted
// relay never takes the key of the one it replaces while that key's lease
// runs.
func NewID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, host)
	if len(host) > 55 {
		host = host[:55]
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	if host == "" {
		host = "relay"
	}
	return host + "-" + hex.EncodeToString(b[:])
}

// Version is the relay's build (module version and VCS revision when the
// binary carries them), shown in its member key.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}
