package proxy

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/ratelimit"
	"github.com/jira-relay/jira-relay/store"
	"github.com/sony/gobreaker/v2"
	"github.com/valyala/fasthttp"
)

// guards are the relay's local protections: token buckets per instance and
// per client IP, concurrent streams per instance, the cool-down after Jira's
// 429, and Jira's per-issue write limit kept locally. Every map is bounded.
type guards struct {
	instance *ratelimit.Keyed
	ip       *ratelimit.Keyed
	streams  *ratelimit.Streams
	cooldown *ratelimit.Cooldown
	writes   *ratelimit.IssueWrites
	// authFails counts failed key checks (unknown instance, wrong key) per
	// client IP; an IP over --ip-rps/--ip-burst of failures is held in
	// authBlock, so a flood of made-up instance ids or keys cannot turn
	// into a flood of etcd reads.
	authFails *ratelimit.Keyed
	authBlock *ratelimit.Cooldown
	trusted   []netip.Prefix
}

func newGuards(cfg configs.Config, clock ratelimit.Clock) (*guards, error) {
	nets, err := cfg.TrustedProxyNets()
	if err != nil {
		return nil, err
	}
	if clock == nil {
		clock = ratelimit.SystemClock{}
	}
	c := ratelimit.WithClock(clock)
	return &guards{
		instance:  ratelimit.New(cfg.InstanceRPS, cfg.InstanceBurst, c),
		ip:        ratelimit.New(cfg.IPRPS, cfg.IPBurst, c, ratelimit.WithMaxKeys(200_000)),
		streams:   ratelimit.NewStreams(cfg.InstanceMaxStreams),
		cooldown:  ratelimit.NewCooldown(c),
		writes:    ratelimit.NewIssueWrites(c),
		authFails: ratelimit.New(cfg.IPRPS, cfg.IPBurst, c, ratelimit.WithMaxKeys(200_000)),
		authBlock: ratelimit.NewCooldown(c),
		trusted:   nets,
	}, nil
}

// sweep drops idle limiter entries; the relay runs it every few seconds.
func (g *guards) sweep() {
	g.instance.Sweep()
	g.ip.Sweep()
	g.cooldown.Sweep()
	g.writes.Sweep()
	g.authFails.Sweep()
	g.authBlock.Sweep()
}

// authBlocked reports whether the caller's IP is held for failed key checks.
func (g *guards) authBlocked(ctx *fasthttp.RequestCtx) (time.Duration, bool) {
	ip := g.clientIP(ctx).As16()
	return g.authBlock.Check(ip[:])
}

// authFailed charges a failed key check to the caller's IP; past the
// budget the IP is held and the refusal is the answer.
func (g *guards) authFailed(ctx *fasthttp.RequestCtx, failure error) error {
	ip := g.clientIP(ctx).As16()
	if d := g.authFails.Allow(ip[:]); !d.OK {
		g.authBlock.Trip(ip[:], d.RetryAfter)
		return &rateLimited{reason: "auth_failures", d: d}
	}
	return failure
}

// clientIP is the socket's peer, or, when the peer is a trusted proxy, the
// right-most address in X-Forwarded-For that is not itself a trusted proxy.
func (g *guards) clientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	peer := addrOf(ctx.RemoteAddr())
	if len(g.trusted) == 0 || !g.isTrusted(peer) {
		return peer
	}
	xff := ctx.Request.Header.Peek("X-Forwarded-For")
	for len(xff) > 0 {
		i := strings.LastIndexByte(string(xff), ',')
		part := strings.TrimSpace(string(xff[i+1:]))
		xff = xff[:max(i, 0)]
		a, err := netip.ParseAddr(part)
		if err != nil {
			return peer // a malformed hop: trust nothing beyond the proxy
		}
		a = a.Unmap()
		if !g.isTrusted(a) {
			return a
		}
		if i < 0 {
			break
		}
	}
	return peer
}

func (g *guards) isTrusted(a netip.Addr) bool {
	for _, p := range g.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.IPv6Unspecified()
}

// rateLimited is a refusal by a local limit: 429 with an exact Retry-After
// and the RateLimit-* headers.
type rateLimited struct {
	reason string // "instance", "ip", "streams", "jira_cooldown", "issue_writes"
	d      ratelimit.Decision
}

func (e *rateLimited) Error() string { return "rate limited: " + e.reason }

// writeRateLimited answers a local refusal.
func writeRateLimited(ctx *fasthttp.RequestCtx, rl *rateLimited) {
	msg := map[string]string{
		"instance":      "too many requests for this instance; retry after Retry-After seconds",
		"ip":            "too many requests from this address; retry after Retry-After seconds",
		"streams":       "too many uploads in flight for this instance; retry after Retry-After seconds",
		"jira_cooldown": "Jira Cloud rate-limited this instance; the relay holds further requests until Retry-After passes",
		"issue_writes":  "Jira's per-issue write limit (20 per 2 s, 100 per 30 s) would be exceeded; retry after Retry-After seconds",
		"auth_failures": "too many failed key checks from this address; retry after Retry-After seconds",
	}[rl.reason]
	ae := &apiError{Status: 429, Code: "rate_limited_" + rl.reason, Message: msg, RetryAfter: max(rl.d.RetryAfterSeconds(), 1)}
	writeAPIError(ctx, ae)
	h := &ctx.Response.Header
	h.Set("RateLimit-Limit", strconv.Itoa(rl.d.Limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(rl.d.Remaining))
	h.Set("RateLimit-Reset", strconv.Itoa(max(rl.d.ResetSeconds(), 1)))
}

// admit runs the limits that apply before any byte goes to Jira: per client
// IP, per instance, the Jira cool-down, and (for uploads) the per-issue write
// limit. A nil answer admits the request.
func (g *guards) admit(ctx *fasthttp.RequestCtx, instanceID string, issueKey []byte) *rateLimited {
	ip := g.clientIP(ctx)
	ipKey := ip.As16()
	if d := g.ip.Allow(ipKey[:]); !d.OK {
		return &rateLimited{reason: "ip", d: d}
	}
	if d := g.instance.Allow([]byte(instanceID)); !d.OK {
		return &rateLimited{reason: "instance", d: d}
	}
	if wait, cooling := g.cooldown.Check([]byte(instanceID)); cooling {
		return &rateLimited{reason: "jira_cooldown", d: cooldownDecision(wait)}
	}
	if len(issueKey) > 0 {
		var buf [320]byte // instance id (26) + "/" + issue key (at most 255)
		key := append(append(append(buf[:0], instanceID...), '/'), issueKey...)
		if d := g.writes.Allow(key); !d.OK {
			return &rateLimited{reason: "issue_writes", d: d}
		}
	}
	return nil
}

func cooldownDecision(wait time.Duration) ratelimit.Decision {
	return ratelimit.Decision{OK: false, Limit: 0, Remaining: 0, Reset: wait, RetryAfter: wait}
}

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
		return min(time.Duration(n)*time.Second, time.Hour)
	}
	if t, err := time.Parse(time.RFC1123, s); err == nil {
		return min(max(t.Sub(now), 0), time.Hour)
	}
	return 0
}

// decide is the per-request decision of an upload, as a unit the
// zero-allocation test measures: key check from the cache, the limiters and
// the breaker state. (planUpload adds the body shaping and takes the slots.)
func (s *Server) decide(ctx *fasthttp.RequestCtx) bool {
	id, issue, ok := matchUploadPath(ctx.Request.URI().PathOriginal())
	if !ok {
		return false
	}
	in, err := s.authenticate(ctx, id, store.RoleClient)
	if err != nil {
		return false
	}
	if s.guards.admit(ctx, in.ID, issue) != nil {
		return false
	}
	up := s.ups.lookup(in.ID)
	return up == nil || up.cb.State() != gobreaker.StateOpen
}
