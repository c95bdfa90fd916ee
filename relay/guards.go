package relay

import (
	"strconv"
	"strings"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fleet"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"github.com/jira-relay/jira-relay/ratelimit"
)

// guards are the protections of Jira itself: the cool-downs after Jira's
// 429, scoped as Jira scopes its limits and shared with the fleet; Jira's
// per-issue write limit (per relay: it counts the writes this relay sends);
// and the uploads and downloads in flight per instance (this relay's share
// of the fleet's --instance-max-streams). (The limits per address and per
// instance, which every route has, are the front door's.) Every map is
// bounded.
type guards struct {
	streams   *ratelimit.Streams
	cooldowns *fleet.Cooldowns
	writes    *ratelimit.IssueWrites
}

func newGuards(cfg configs.Config, clock ratelimit.Clock) *guards {
	if clock == nil {
		clock = ratelimit.SystemClock{}
	}
	c := ratelimit.WithClock(clock)
	return &guards{
		streams:   ratelimit.NewStreams(cfg.InstanceMaxStreams),
		cooldowns: fleet.NewCooldowns(clock, cfg.MaxCooldown),
		writes:    ratelimit.NewIssueWrites(c),
	}
}

// sweep drops idle entries; the relay runs it every few seconds.
func (g *guards) sweep() {
	g.cooldowns.Sweep()
	g.writes.Sweep()
}

// cooling refuses a request while a cool-down Jira asked for holds it back:
// everything's, the tenant's, its endpoint's or (issue not "") its issue's.
// The refusal passes Jira's RateLimit-Reason back.
func (g *guards) cooling(instanceID string, ep fleet.Endpoint, issue string) error {
	if wait, reason, cooling := g.cooldowns.Check(instanceID, ep, issue); cooling {
		rl := httpx.Limited(httpx.ReasonJiraCooldown, httpx.Held(wait))
		rl.JiraReason = reason
		return rl
	}
	return nil
}

// streamsFull refuses a request when the instance's streams are all taken,
// without taking one.
func (g *guards) streamsFull(instanceID string) error {
	if g.streams.InFlight([]byte(instanceID)) >= g.streams.Limit() {
		return httpx.Limited(httpx.ReasonStreams, g.streamsDecision())
	}
	return nil
}

// takeStream takes one of the instance's stream slots; release gives it back.
func (g *guards) takeStream(instanceID string) (release func(), err error) {
	if !g.streams.TryAcquire([]byte(instanceID)) {
		return nil, httpx.Limited(httpx.ReasonStreams, g.streamsDecision())
	}
	return func() { g.streams.Release([]byte(instanceID)) }, nil
}

func (g *guards) streamsDecision() ratelimit.Decision {
	return ratelimit.Decision{OK: false, Limit: g.streams.Limit(), Remaining: 0, Reset: time.Second, RetryAfter: time.Second}
}

// issueRoom refuses a write the issue's window has no room for, without
// charging it (the check step).
func (g *guards) issueRoom(instanceID, issue string) error {
	var buf [320]byte // instance id (26) + "/" + issue key (at most 255)
	if d := g.writes.Check(issueKey(buf[:0], instanceID, issue)); !d.OK {
		return httpx.Limited(httpx.ReasonIssueWrites, d)
	}
	return nil
}

// issueWrite charges one write to the issue against Jira's per-issue limit
// (the acquire step, once nothing else can refuse the upload).
func (g *guards) issueWrite(instanceID, issue string) error {
	var buf [320]byte
	if d := g.writes.Allow(issueKey(buf[:0], instanceID, issue)); !d.OK {
		return httpx.Limited(httpx.ReasonIssueWrites, d)
	}
	return nil
}

// issueKey is the per-issue limiter's key: instance id "/" issue.
func issueKey(dst []byte, instanceID, issue string) []byte {
	return append(append(append(dst, instanceID...), '/'), issue...)
}

// maxRetryAfter bounds a Retry-After read (the cool-down is capped again
// at --max-cooldown).
const maxRetryAfter = 24 * time.Hour

// parseRetryAfter reads Jira's Retry-After (seconds, or an HTTP date).
func parseRetryAfter(v []byte, now time.Time) time.Duration {
	s := strings.TrimSpace(string(v))
	if s == "" {
		return 0
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return 0
		}
		return min(time.Duration(n)*time.Second, maxRetryAfter)
	}
	if t, err := time.Parse(time.RFC1123, s); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter)
	}
	return 0
}
