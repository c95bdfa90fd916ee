package relaytest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/fakejira"
)

// StartJira starts a fake Jira Cloud with o; it is closed when the test
// ends.
func StartJira(t testing.TB, o fakejira.Options) *fakejira.Server {
	t.Helper()
	fj, err := fakejira.Start(o)
	if err != nil {
		t.Fatalf("relaytest: fake Jira: %v", err)
	}
	t.Cleanup(fj.Close)
	return fj
}

// Eventually polls cond every 20 ms until it holds (true) or within has
// passed (false). cond runs at least once.
func Eventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SHA256 is the hex SHA-256 of b, as the fake Jira reports uploads.
func SHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// LogBuffer collects log lines written from many goroutines.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Logger writes JSON lines of every level into l.
func (l *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
