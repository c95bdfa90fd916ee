package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/sony/gobreaker/v2"
	"github.com/valyala/fasthttp"
)

// upstream is one instance's Jira: a pooled connection client to its host
// and the circuit breaker that guards it.
type upstream struct {
	base     string // the registered base URL, e.g. https://api.atlassian.com/ex/jira/x
	hc       *fasthttp.HostClient
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	openedAt atomic.Int64 // unix nanos of the last move to open
}

// urlPolicy decides whether a stored instance URL may still be reached: the
// allowed upstreams may have been narrowed since the instance registered.
type urlPolicy interface {
	Allowed(normalized string) error
}

// upstreams holds one upstream per instance, made on first use.
type upstreams struct {
	cfg     configs.Config
	policy  urlPolicy
	log     *slog.Logger
	tlsConf *tls.Config
	mu      sync.Mutex
	byID    map[string]*upstream
}

func newUpstreams(cfg configs.Config, policy urlPolicy, log *slog.Logger) (*upstreams, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if cfg.UpstreamCA != "" {
		pem, err := os.ReadFile(cfg.UpstreamCA)
		if err != nil {
			return nil, fmt.Errorf("relay: --upstream-ca: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, errors.New("relay: --upstream-ca holds no PEM certificate")
		}
	}
	tlsConf := &tls.Config{
		RootCAs:    roots,
		MinVersion: tls.VersionTLS12,
		// One session cache for every upstream (each upstream's clone
		// shares it; an entry is keyed by the server name): a new
		// connection to a Jira host seen before resumes a session with an
		// abbreviated handshake instead of a full one (no certificate
		// chain to send and verify, no signature). Bounded, LRU.
		ClientSessionCache: tls.NewLRUClientSessionCache(sessionCacheSize),
		// Records are full-size from the first byte: dynamic record
		// sizing (small records for a new connection's first 128 KiB)
		// speeds up a browser's first paint, not an upload to Jira; each
		// record costs its own encryption call and header.
		DynamicRecordSizingDisabled: true,
	}
	return &upstreams{cfg: cfg, policy: policy, log: log, tlsConf: tlsConf, byID: map[string]*upstream{}}, nil
}

// sessionCacheSize bounds the upstream TLS session cache: one entry per
// Jira host name (all Jira Cloud sites are reached through one,
// api.atlassian.com), each a few KiB (a ticket and the server's
// certificate chain).
const sessionCacheSize = 256

// get returns the instance's upstream, made on first use. The URL policy
// is checked when an upstream is made, so a narrowed --allowed-upstreams
// stops an instance registered under the old one from being reached: 502
// upstream_not_allowed.
func (u *upstreams) get(id, base string) (*upstream, error) {
	u.mu.Lock()
	up, replaced, err := u.getLocked(id, base)
	u.mu.Unlock()
	if replaced != nil {
		// The site was renamed: the old URL's pool and breaker go.
		// Requests still on it finish there; its idle connections close
		// now, off the lock and off this request (a TLS close may wait).
		go replaced.hc.CloseIdleConnections()
	}
	return up, err
}

// getLocked is get under u.mu; replaced is the upstream a new one took the
// place of (a renamed site).
func (u *upstreams) getLocked(id, base string) (*upstream, *upstream, error) {
	if cur, ok := u.byID[id]; ok && cur.base == strings.TrimRight(base, "/") {
		return cur, nil, nil
	}
	if err := u.policy.Allowed(base); err != nil {
		u.log.Warn("instance URL refused by the current upstream policy", "instance", id, "reason", err.Error())
		return nil, nil, errNotAllowed
	}
	pu, err := url.Parse(base)
	if err != nil || pu.Host == "" {
		return nil, nil, fmt.Errorf("relay: instance url of %s does not parse: %w", id, err)
	}
	isTLS := pu.Scheme == "https"
	addr := pu.Host
	if pu.Port() == "" {
		if isTLS {
			addr = net.JoinHostPort(pu.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(pu.Hostname(), "80")
		}
	}
	tc := u.tlsConf.Clone()
	tc.ServerName = pu.Hostname()
	idle, respTimeout, dialTimeout := u.cfg.StreamIdleTimeout, u.cfg.UpstreamResponseTimeout, u.cfg.UpstreamDialTimeout
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	up := &upstream{base: strings.TrimRight(base, "/")}
	up.hc = &fasthttp.HostClient{
		Addr:                addr,
		Name:                "jira-relay",
		IsTLS:               isTLS, // Dial makes the TLS connection (see dialUpstream)
		MaxConns:            u.cfg.UpstreamMaxConns,
		WriteBufferSize:     64 << 10,
		ReadBufferSize:      16 << 10,
		MaxConnWaitTimeout:  u.cfg.UpstreamDialTimeout,
		MaxIdleConnDuration: 50 * time.Second,
		// LIFO: the connections a lull leaves unused go idle and close
		// after MaxIdleConnDuration, so the pool follows the load; FIFO
		// would keep every connection of the busiest minute warm forever.
		ConnPoolStrategy:              fasthttp.LIFO,
		ReadTimeout:                   u.cfg.UpstreamResponseTimeout,
		StreamResponseBody:            true,
		MaxResponseBodySize:           0,
		DisablePathNormalizing:        true,
		DisableHeaderNamesNormalizing: false,
		NoDefaultUserAgentHeader:      true,
		MaxIdemponentCallAttempts:     1,
		RetryIfErr:                    func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		Dial: func(addr string) (net.Conn, error) {
			var tlsConf *tls.Config
			if isTLS {
				tlsConf = tc
			}
			return dialUpstream(dialer, addr, tlsConf, dialTimeout, idle, respTimeout)
		},
	}
	name := "instance " + id
	up.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: u.cfg.BreakerHalfOpenRequests,
		Timeout:     u.cfg.BreakerOpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= u.cfg.BreakerFailures
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errNotCounted) },
		// Runs under the breaker's lock: it only stores a timestamp.
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				up.openedAt.Store(time.Now().UnixNano())
			}
		},
	})
	replaced := u.byID[id]
	u.byID[id] = up
	return up, replaced, nil
}

// prune drops the upstreams for which stale reports true (the instance was
// deleted, or its URL changed), so the map holds live tenants only, and
// closes their idle connections. A request that already holds one of them
// finishes on it. stale is called outside the lock (it may ask etcd).
func (u *upstreams) prune(stale func(id, base string) bool) {
	u.mu.Lock()
	ids := make(map[string]*upstream, len(u.byID))
	for id, up := range u.byID {
		ids[id] = up
	}
	u.mu.Unlock()
	for id, up := range ids {
		if !stale(id, up.base) {
			continue
		}
		u.mu.Lock()
		if u.byID[id] == up {
			delete(u.byID, id)
		}
		u.mu.Unlock()
		up.hc.CloseIdleConnections()
	}
}

// errNotAllowed: the instance's URL no longer passes --allowed-upstreams.
var errNotAllowed = httpx.Err(502, "upstream_not_allowed",
	"this instance's Jira URL is not allowed by the relay's --allowed-upstreams; the operator must allow it or the instance must be registered again")

// refusal reports whether the breaker refuses requests now, without taking
// a slot: the check step (and so the Expect phase) asks this.
func (up *upstream) refusal(openTimeout time.Duration) error {
	if up.cb.State() == gobreaker.StateOpen {
		return &httpx.BreakerOpen{RetryAfter: up.openLeft(openTimeout)}
	}
	return nil
}

// ticket takes a breaker slot; refused → *httpx.BreakerOpen with the time
// left until it lets probes through. done reports the request's outcome.
func (up *upstream) ticket(openTimeout time.Duration) (done func(error), err error) {
	done, err = up.cb.Allow()
	if err != nil {
		left := up.openLeft(openTimeout)
		if errors.Is(err, gobreaker.ErrTooManyRequests) {
			left = time.Second
		}
		return nil, &httpx.BreakerOpen{RetryAfter: left}
	}
	return done, nil
}

// openLeft is how long an open breaker stays open (at least a second).
func (up *upstream) openLeft(openTimeout time.Duration) time.Duration {
	return max(openTimeout-time.Since(time.Unix(0, up.openedAt.Load())), time.Second)
}

// dialUpstream connects to Jira: TCP, then (with tlsConf) the TLS handshake
// within the dial timeout, and wraps the connection in an idleConn. The
// relay makes the TLS connection itself, rather than fasthttp, so that the
// idleConn sits above TLS and sees the exchange's own bytes: its deadlines
// and its handling of a peer that stopped reading apply to HTTP, not to TLS
// records, and what it discards is never encrypted. (fasthttp takes a
// connection with a Handshake method for a TLS connection already made.)
// Below TLS, a recordBatch gathers each write's records into one write to
// the socket.
func dialUpstream(dialer *net.Dialer, addr string, tlsConf *tls.Config, dialTimeout, idle, response time.Duration) (net.Conn, error) {
	raw, err := dialer.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := raw
	var batch *recordBatch
	if tlsConf != nil {
		batch = &recordBatch{Conn: raw}
		tc := tls.Client(batch, tlsConf)
		hctx, cancel := context.Background(), context.CancelFunc(func() {})
		if dialTimeout > 0 {
			hctx, cancel = context.WithTimeout(hctx, dialTimeout)
		}
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = raw.Close()
			return nil, err
		}
		c = tc
	}
	ic := &idleConn{Conn: c, idle: idle, response: response, batch: batch}
	ic.local = connAddr{Addr: raw.LocalAddr(), c: ic}
	return ic, nil
}

// idleConn moves the connection's deadlines forward on every read and write,
// so a stream may last as long as bytes keep moving, and a stalled Jira is
// cut off: a write may stall for the stream idle timeout; after a write, the
// first byte of Jira's answer may take the response timeout; after that, each
// read may again stall for the idle timeout.
//
// Jira may answer before it has read the whole request, and stop reading:
// Jira's edge (and any net/http server) answers 401 for a bad credential at
// once and closes the connection when the unread body is large. The write
// then fails with EPIPE or ECONNRESET while the answer waits in the socket's
// receive buffer; Linux keeps data that arrived before a reset readable.
// fasthttp fails the whole exchange when writing the request fails, so from
// then on idleConn discards what is written (reporting success) and records
// that the peer stopped reading (stopped); the request's body (upBody)
// learns it through the connection's LocalAddr and ends, and fasthttp goes
// on to read Jira's answer. roundTrip has fasthttp close such a connection
// after the answer; should fasthttp have pooled it already (an answer
// without a body), the next request on it fails at once.
type idleConn struct {
	net.Conn
	idle, response time.Duration
	awaiting       bool // a request was written; its answer has not started
	local          connAddr
	stopped        atomic.Bool  // the peer stopped reading; writes are discarded
	batch          *recordBatch // under TLS: gathers a write's records into one (nil: plain)
}

// connAddr is the local address of an upstream connection. It carries the
// connection: fasthttp records it in the Response before it writes the
// request (Response.ParseNetConn), which is how an exchange finds the
// connection fasthttp chose for it (see peerStopped).
type connAddr struct {
	net.Addr
	c *idleConn
}

// LocalAddr is the connection's local address, as a *connAddr.
func (c *idleConn) LocalAddr() net.Addr { return &c.local }

// Handshake tells fasthttp that the connection is ready: dialUpstream made
// the TLS handshake already (a plain connection has none to make).
func (c *idleConn) Handshake() error { return nil }

func (c *idleConn) Write(p []byte) (int, error) {
	if c.stopped.Load() {
		if !c.awaiting {
			// A new request, on a connection fasthttp pooled although
			// Jira closed it (roundTrip marks the answer Connection:
			// close, but fasthttp pools a bodiless answer's connection
			// before roundTrip sees it).
			return 0, errPeerClosed
		}
		return len(p), nil
	}
	c.awaiting = true
	if c.idle > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	}
	n, err := c.write(p)
	if err != nil && peerGone(err) {
		c.stopped.Store(true)
		return len(p), nil
	}
	return n, err
}

// write writes p to the connection; over TLS, its records reach the socket
// in one write (see recordBatch).
func (c *idleConn) write(p []byte) (int, error) {
	if c.batch == nil {
		return c.Conn.Write(p)
	}
	c.batch.begin()
	n, err := c.Conn.Write(p)
	if ferr := c.batch.end(); err == nil {
		err = ferr
	}
	return n, err
}

func (c *idleConn) Read(p []byte) (int, error) {
	d := c.idle
	if c.awaiting {
		d = c.response
	}
	if d > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(d))
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.awaiting = false
	}
	return n, err
}

// errPeerClosed: a request was to be written on a connection Jira closed.
var errPeerClosed = errors.New("relay: Jira closed this connection")

// peerGone reports a write error that means the peer closed its end (it
// may have answered first): EPIPE or ECONNRESET.
func peerGone(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// peerStopped reports whether the peer of resp's exchange stopped reading
// the request before it was written whole (its connection discarded the
// rest). resp must be the Response given to HostClient.Do, asked from the
// goroutine that called Do (the request body's Read) or after Do returned.
func peerStopped(resp *fasthttp.Response) bool {
	a, ok := resp.LocalAddr().(*connAddr)
	return ok && a.c.stopped.Load()
}
