package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Endpoint is one HTTP server the generator talks to, with its connection
// pool. fasthttp's client is used because it allocates nothing per request
// and writes io.WriterTo bodies in large slices, so that one core of
// generator can drive tens of thousands of small requests a second.
type Endpoint struct {
	Base  string // scheme://host:port, without a trailing slash
	Path  string // path prefix, e.g. a Jira base path; "" for none
	hc    *fasthttp.HostClient
	conns *connSet
}

// NewEndpoint parses rawURL (http or https; loopback only unless
// allowRemote) and pools up to maxConns connections to it. caFile, when set,
// is a PEM bundle trusted besides the system roots.
func NewEndpoint(rawURL string, maxConns int, caFile string, allowRemote bool) (*Endpoint, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("%q is not an http(s) URL", rawURL)
	}
	host := u.Hostname()
	if !allowRemote {
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("%s is not a loopback address: the harness sends load to loopback only (--allow-remote overrides)", host)
		}
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	hc := &fasthttp.HostClient{
		Addr:                          net.JoinHostPort(host, port),
		Name:                          "jira-relay-bench",
		NoDefaultUserAgentHeader:      true,
		MaxConns:                      max(maxConns, 1),
		MaxIdleConnDuration:           30 * time.Second,
		ReadBufferSize:                16 << 10,
		WriteBufferSize:               64 << 10,
		DisableHeaderNamesNormalizing: false,
		MaxConnWaitTimeout:            time.Minute,
	}
	set := &connSet{m: map[*trackedConn]struct{}{}}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	hc.Dial = func(addr string) (net.Conn, error) {
		if set.isClosed() {
			return nil, errAborted
		}
		c, err := dialer.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		return set.add(c), nil
	}
	if u.Scheme == "https" {
		// One session cache per endpoint, shared by its connections: a new
		// connection resumes a session instead of a full handshake.
		tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(0)}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return nil, err
			}
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
			}
			tc.RootCAs = pool
		}
		hc.IsTLS, hc.TLSConfig = true, tc
	}
	path := u.EscapedPath()
	for len(path) > 0 && path[len(path)-1] == '/' {
		path = path[:len(path)-1]
	}
	return &Endpoint{Base: u.Scheme + "://" + u.Host, Path: path, hc: hc, conns: set}, nil
}

// AbortOn closes every connection of the endpoint, and refuses new ones,
// when ctx ends: requests in flight fail at once instead of waiting for
// their timeout (Ctrl-C).
func (e *Endpoint) AbortOn(ctx context.Context) {
	context.AfterFunc(ctx, e.conns.closeAll)
}

var errAborted = errors.New("bench: aborted")

// connSet tracks an endpoint's open connections.
type connSet struct {
	mu     sync.Mutex
	m      map[*trackedConn]struct{}
	closed bool
}

type trackedConn struct {
	net.Conn
	set  *connSet
	once sync.Once
}

func (s *connSet) add(c net.Conn) net.Conn {
	t := &trackedConn{Conn: c, set: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return t
	}
	s.m[t] = struct{}{}
	return t
}

func (s *connSet) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*trackedConn, 0, len(s.m))
	for c := range s.m {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Conn.Close()
	}
}

// Close implements net.Conn and forgets the connection.
func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.set.mu.Lock()
		delete(t.set.m, t)
		t.set.mu.Unlock()
	})
	return t.Conn.Close()
}

// Do sends req and waits for resp until deadline.
func (e *Endpoint) Do(req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error {
	return e.hc.DoDeadline(req, resp, deadline)
}

// Close drops the idle connections.
func (e *Endpoint) Close() { e.hc.CloseIdleConnections() }
