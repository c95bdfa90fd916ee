package proxy

import (
	"net"
	"net/netip"
	"strings"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"github.com/jira-relay/jira-relay/ratelimit"
	"github.com/valyala/fasthttp"
)

// limits are the front door's token buckets, which every route passes:
// registrations per client address (the tightest: each one writes to etcd
// with no key to hold anyone to), requests per client address and per
// instance on every other route, and failed key checks per address. Each
// bucket decides in memory without allocating; every map is bounded.
type limits struct {
	registration *ratelimit.Keyed
	ip           *ratelimit.Keyed
	instance     *ratelimit.Keyed
	// authFails counts failed key checks (unknown instance, wrong key) per
	// client address; an address over --ip-rps/--ip-burst of failures is
	// held in authBlock, so a flood of made-up instance ids or keys cannot
	// turn into a flood of etcd reads.
	authFails *ratelimit.Keyed
	authBlock *ratelimit.Cooldown
	trusted   []netip.Prefix
}

func newLimits(cfg configs.Config, clock ratelimit.Clock) (*limits, error) {
	nets, err := cfg.TrustedProxyNets()
	if err != nil {
		return nil, err
	}
	if clock == nil {
		clock = ratelimit.SystemClock{}
	}
	c := ratelimit.WithClock(clock)
	return &limits{
		registration: ratelimit.New(cfg.RegistrationRPS, cfg.RegistrationBurst, c, ratelimit.WithMaxKeys(200_000)),
		ip:           ratelimit.New(cfg.IPRPS, cfg.IPBurst, c, ratelimit.WithMaxKeys(200_000)),
		instance:     ratelimit.New(cfg.InstanceRPS, cfg.InstanceBurst, c),
		authFails:    ratelimit.New(cfg.IPRPS, cfg.IPBurst, c, ratelimit.WithMaxKeys(200_000)),
		authBlock:    ratelimit.NewCooldown(c),
		trusted:      nets,
	}, nil
}

// sweep drops idle entries; the front door runs it every few seconds.
func (l *limits) sweep() {
	l.registration.Sweep()
	l.ip.Sweep()
	l.instance.Sweep()
	l.authFails.Sweep()
	l.authBlock.Sweep()
}

// address charges one request to the caller's address.
func (l *limits) address(ctx *fasthttp.RequestCtx) error {
	ip := l.clientIP(ctx).As16()
	if d := l.ip.Allow(ip[:]); !d.OK {
		return httpx.Limited(httpx.ReasonIP, d)
	}
	return nil
}

// register charges one registration to the caller's address.
func (l *limits) register(ctx *fasthttp.RequestCtx) error {
	ip := l.clientIP(ctx).As16()
	if d := l.registration.Allow(ip[:]); !d.OK {
		return httpx.Limited(httpx.ReasonRegistration, d)
	}
	return nil
}

// tenant charges one request to the instance.
func (l *limits) tenant(instanceID string) error {
	if d := l.instance.Allow([]byte(instanceID)); !d.OK {
		return httpx.Limited(httpx.ReasonInstance, d)
	}
	return nil
}

// authBlocked refuses a caller whose address is held for failed key checks.
func (l *limits) authBlocked(ctx *fasthttp.RequestCtx) error {
	ip := l.clientIP(ctx).As16()
	if wait, blocked := l.authBlock.Check(ip[:]); blocked {
		return httpx.Limited(httpx.ReasonAuthFailures, httpx.Held(wait))
	}
	return nil
}

// authFailed charges a failed key check to the caller's address; past the
// budget the address is held and the refusal is the answer.
func (l *limits) authFailed(ctx *fasthttp.RequestCtx, failure error) error {
	ip := l.clientIP(ctx).As16()
	if d := l.authFails.Allow(ip[:]); !d.OK {
		l.authBlock.Trip(ip[:], d.RetryAfter)
		return httpx.Limited(httpx.ReasonAuthFailures, d)
	}
	return failure
}

// clientIP is the socket's peer, or, when the peer is a trusted proxy, the
// right-most address in X-Forwarded-For that is not itself a trusted proxy.
func (l *limits) clientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	peer := addrOf(ctx.RemoteAddr())
	if len(l.trusted) == 0 || !l.isTrusted(peer) {
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
		if !l.isTrusted(a) {
			return a
		}
		if i < 0 {
			break
		}
	}
	return peer
}

func (l *limits) isTrusted(a netip.Addr) bool {
	for _, p := range l.trusted {
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
