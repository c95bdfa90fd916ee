package fakejira

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultUploadLimit is the per-file upload limit Jira Cloud reports
// (1 GiB), used when Options.UploadLimit is zero.
const DefaultUploadLimit int64 = 1 << 30

// MaxFilesPerUpload is the number of "file" parts one upload request may
// carry; one more is answered 413.
const MaxFilesPerUpload = 60

// Options configures Start. The zero value is a plain-HTTP fake on a random
// loopback port with an empty base path.
type Options struct {
	// TLS serves HTTPS with a server certificate for 127.0.0.1, ::1 and
	// localhost, signed by a CA generated in memory (see Server.CAPEM).
	TLS bool
	// Certificate, with TLS, is served instead of one signed by a generated
	// CA (CAPEM is then nil; Client trusts the certificate's chain). Default
	// nil.
	Certificate *tls.Certificate
	// BasePath prefixes every Jira path, e.g. "/ex/jira/<cloudId>" as for
	// OAuth 2.0 (3LO) apps. Default "" (site URL style). A trailing slash is
	// dropped and a missing leading slash added.
	BasePath string
	// Addr is the address to listen on. Default "127.0.0.1:0".
	Addr string
	// NoHash skips SHA-256 of uploaded files (Upload.SHA256 stays "") and of
	// attachments registered with AddAttachment, for benchmarks.
	NoHash bool
	// UploadLimit is the largest file part accepted, in bytes; a larger one is
	// answered 413. It is also what attachment/meta reports. Default
	// DefaultUploadLimit (1 GiB).
	UploadLimit int64
	// MaxRecords, when positive, keeps only the most recent MaxRecords Upload
	// records so that a long benchmark does not grow memory; the counters and
	// WaitUploads still count every attempt. Default 0: keep all.
	MaxRecords int
	// Admin serves GET /_fakejira/stats (outside BasePath) with the counters
	// as JSON, and FaultPath, which sets the fault over HTTP, for benchmark
	// scripts. Default off.
	Admin bool
}

// Server is a running fake Jira Cloud. All methods are safe for concurrent
// use.
type Server struct {
	opts    Options
	base    string // normalised BasePath
	scheme  string
	ln      net.Listener
	srv     *http.Server
	caPEM   []byte
	tlsConf *tls.Config
	client  *http.Client

	serveDone chan struct{} // closed when srv.Serve returns
	done      chan struct{} // closed by Close; wakes hung and sleeping handlers
	closeOnce sync.Once

	lifeMu   sync.Mutex // guards closed and handlers.Add
	closed   bool
	handlers sync.WaitGroup

	connMu      sync.Mutex
	conns       map[net.Conn]struct{}
	connsEmpty  chan struct{} // closed and replaced whenever conns becomes empty
	requests    atomic.Int64
	bytesRecv   atomic.Int64
	attempts    atomic.Int64
	completed   atomic.Int64
	filesBytes  atomic.Int64
	nextID      atomic.Int64
	faultMu     sync.Mutex
	fault       Fault
	faultActive bool

	recMu    sync.Mutex
	uploads  []Upload
	recorded int64         // attempts recorded since the last Reset
	changed  chan struct{} // closed and replaced whenever an upload is recorded

	attMu       sync.RWMutex
	attachments map[string]*attachment
}

// Start listens on opts.Addr and serves the fake until Close.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.UploadLimit <= 0 {
		opts.UploadLimit = DefaultUploadLimit
	}
	s := &Server{
		opts:        opts,
		base:        normaliseBase(opts.BasePath),
		scheme:      "http",
		serveDone:   make(chan struct{}),
		done:        make(chan struct{}),
		conns:       make(map[net.Conn]struct{}),
		connsEmpty:  make(chan struct{}),
		changed:     make(chan struct{}),
		attachments: make(map[string]*attachment),
	}
	s.nextID.Store(9999)

	transport := &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	if opts.TLS {
		pool := x509.NewCertPool()
		var cert tls.Certificate
		if opts.Certificate != nil {
			cert = *opts.Certificate
			for _, der := range cert.Certificate {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return nil, fmt.Errorf("fakejira: Options.Certificate: %w", err)
				}
				pool.AddCert(c)
			}
		} else {
			ca, err := newCA()
			if err != nil {
				return nil, fmt.Errorf("fakejira: %w", err)
			}
			s.caPEM = ca.pem
			cert = ca.server
			pool.AddCert(ca.cert)
		}
		s.tlsConf = &tls.Config{
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"http/1.1"},
			MinVersion:   tls.VersionTLS12,
		}
		s.scheme = "https"
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	s.client = &http.Client{Transport: transport}

	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("fakejira: listen %s: %w", opts.Addr, err)
	}
	s.ln = ln
	serveLn := ln
	if s.tlsConf != nil {
		serveLn = tls.NewListener(ln, s.tlsConf)
	}

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true) // HTTP/1.1 only, like the relay's client; Hijack needs it.
	s.srv = &http.Server{
		Handler:           s,
		Protocols:         protocols,
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ConnState:         s.connState,
		ErrorLog:          discardLogger(), // clients vanishing mid-request is the point
	}
	go func() {
		defer close(s.serveDone)
		_ = s.srv.Serve(serveLn)
	}()
	return s, nil
}

func normaliseBase(p string) string {
	p = strings.TrimRight(p, "/")
	if p != "" && !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

// URL is the fake's base URL: scheme://127.0.0.1:port followed by BasePath,
// without a trailing slash. Jira paths such as /rest/api/3/serverInfo are
// appended to it.
func (s *Server) URL() string {
	return s.scheme + "://" + s.ln.Addr().String() + s.base
}

// Addr is the address the fake listens on, host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// BasePath is the normalised Options.BasePath ("" or "/…" without a trailing
// slash).
func (s *Server) BasePath() string { return s.base }

// CAPEM returns the PEM-encoded certificate of the CA that signed the server
// certificate (for the relay's --upstream-ca), or nil without Options.TLS
// or with Options.Certificate.
func (s *Server) CAPEM() []byte {
	if s.caPEM == nil {
		return nil
	}
	return append([]byte(nil), s.caPEM...)
}

// Client returns an HTTP/1.1 client that trusts the fake's CA (with TLS) and
// uses no proxy. Every call returns the same client; Close closes its idle
// connections.
func (s *Server) Client() *http.Client { return s.client }

// Close stops the listener, closes every connection including hung and
// in-flight ones, and waits for all handler goroutines to return. It is
// idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.lifeMu.Lock()
		s.closed = true
		s.lifeMu.Unlock()
		// Close the connections before waking hung handlers, so that what a
		// woken handler writes goes nowhere.
		_ = s.srv.Close()
		close(s.done)
		<-s.serveDone
		s.handlers.Wait()
		s.client.CloseIdleConnections()
		// The per-connection goroutines report StateClosed just before they
		// return; wait for them (bounded: one may sit in net/http's 500 ms
		// RST-avoidance delay) so that callers see no leftover goroutines.
		deadline := time.NewTimer(5 * time.Second)
		defer deadline.Stop()
		for {
			s.connMu.Lock()
			n, ch := len(s.conns), s.connsEmpty
			s.connMu.Unlock()
			if n == 0 {
				return
			}
			select {
			case <-ch:
			case <-deadline.C:
				return
			}
		}
	})
}

func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	switch st {
	case http.StateNew:
		s.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		if _, ok := s.conns[c]; !ok {
			return
		}
		delete(s.conns, c)
		if len(s.conns) == 0 {
			close(s.connsEmpty)
			s.connsEmpty = make(chan struct{})
		}
	}
}

// Requests is the number of HTTP requests received since Start or the last
// Reset.
func (s *Server) Requests() int64 { return s.requests.Load() }

// OpenConnections is the number of client connections currently open.
func (s *Server) OpenConnections() int {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	return len(s.conns)
}

// BytesReceived is the number of request-body bytes the fake has read
// (multipart framing included, headers excluded) since Start or the last
// Reset.
func (s *Server) BytesReceived() int64 { return s.bytesRecv.Load() }

// Stats is a snapshot of the counters, as served by the admin endpoint.
type Stats struct {
	// Requests is Server.Requests.
	Requests int64 `json:"requests"`
	// OpenConnections is Server.OpenConnections.
	OpenConnections int `json:"openConnections"`
	// BytesReceived is Server.BytesReceived.
	BytesReceived int64 `json:"bytesReceived"`
	// UploadAttempts counts every upload request recorded.
	UploadAttempts int64 `json:"uploadAttempts"`
	// UploadsCompleted counts the recorded uploads with Complete set.
	UploadsCompleted int64 `json:"uploadsCompleted"`
	// FileBytesCompleted is the sum of the file sizes of completed uploads.
	FileBytesCompleted int64 `json:"fileBytesCompleted"`
}

// Stats returns a snapshot of the counters (all reset by Reset except
// OpenConnections).
func (s *Server) Stats() Stats {
	return Stats{
		Requests:           s.requests.Load(),
		OpenConnections:    s.OpenConnections(),
		BytesReceived:      s.bytesRecv.Load(),
		UploadAttempts:     s.attempts.Load(),
		UploadsCompleted:   s.completed.Load(),
		FileBytesCompleted: s.filesBytes.Load(),
	}
}

// errClosing is returned by waits interrupted by Close.
var errClosing = errors.New("fakejira: server closing")

// sleep waits d, or until the request's client goes away or Close is called.
func (s *Server) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return errClosing
	}
}

// ServeHTTP routes a request. It is the fake's http.Handler; tests normally
// go through the socket instead.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.lifeMu.Lock()
	if s.closed {
		s.lifeMu.Unlock()
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusServiceUnavailable, "Server is shutting down.")
		return
	}
	s.handlers.Add(1)
	s.lifeMu.Unlock()
	defer s.handlers.Done()

	s.requests.Add(1)
	if r.Body != nil && r.Body != http.NoBody {
		// A shallow copy, so that net/http still sees its own body on the
		// original request (it checks it to close unread bodies gracefully).
		r2 := new(http.Request)
		*r2 = *r
		r2.Body = &countingBody{ReadCloser: r.Body, n: &s.bytesRecv}
		r = r2
	}

	if s.opts.Admin && r.URL.Path == "/_fakejira/stats" {
		writeJSON(w, http.StatusOK, s.Stats())
		return
	}
	if s.opts.Admin && r.URL.Path == FaultPath {
		s.serveFault(w, r)
		return
	}

	ep, h := s.route(r)
	issue := ""
	if ep == EndpointUpload {
		issue, _ = cutBetween(strings.TrimPrefix(r.URL.Path, s.base), "/rest/api/3/issue/", "/attachments")
	}
	f, ok := s.takeFault(ep, r.Host, issue)
	switch {
	case !ok:
		h(w, r, nil)
	case ep == EndpointUpload:
		h(w, r, &f) // the upload handler applies faults itself, to record them
	default:
		s.applyFault(w, r, &f, h)
	}
}

// handlerFunc is an endpoint; f is the fault applied to this request, or nil.
type handlerFunc func(w http.ResponseWriter, r *http.Request, f *Fault)

// route picks the endpoint and handler for r; unknown paths get
// endpointUnknown, which no fault matches.
func (s *Server) route(r *http.Request) (Endpoint, handlerFunc) {
	p := r.URL.Path
	rest, ok := strings.CutPrefix(p, s.base)
	if !ok || (rest != "" && rest[0] != '/') {
		return s.notFound(r)
	}
	switch {
	case rest == "/rest/api/3/serverInfo":
		return s.method(r, EndpointOther, s.handleServerInfo, http.MethodGet)
	case rest == "/rest/api/3/myself":
		return s.method(r, EndpointOther, s.handleMyself, http.MethodGet)
	case rest == "/rest/api/3/attachment/meta":
		return s.method(r, EndpointOther, s.handleMeta, http.MethodGet)
	}
	if key, ok := cutBetween(rest, "/rest/api/3/issue/", "/attachments"); ok {
		return s.method(r, EndpointUpload, func(w http.ResponseWriter, r *http.Request, f *Fault) {
			s.handleUpload(w, r, f, key)
		}, http.MethodPost)
	}
	if id, ok := cutBetween(rest, "/rest/api/3/attachment/content/", ""); ok {
		return s.method(r, EndpointDownload, func(w http.ResponseWriter, r *http.Request, f *Fault) {
			s.handleContent(w, r, f, id)
		}, http.MethodGet, http.MethodHead)
	}
	if id, ok := cutBetween(rest, "/media/", ""); ok {
		return s.method(r, EndpointDownload, func(w http.ResponseWriter, r *http.Request, f *Fault) {
			s.serveAttachment(w, r, f, id)
		}, http.MethodGet, http.MethodHead)
	}
	if id, ok := cutBetween(rest, "/rest/api/3/attachment/", ""); ok {
		return s.method(r, EndpointOther, func(w http.ResponseWriter, r *http.Request, f *Fault) {
			s.handleAttachmentMeta(w, r, id)
		}, http.MethodGet)
	}
	return s.notFound(r)
}

// cutBetween returns the single non-empty path segment between prefix and
// suffix.
func cutBetween(p, prefix, suffix string) (string, bool) {
	mid, ok := strings.CutPrefix(p, prefix)
	if !ok {
		return "", false
	}
	mid, ok = strings.CutSuffix(mid, suffix)
	if !ok || mid == "" || strings.Contains(mid, "/") {
		return "", false
	}
	return mid, true
}

func (s *Server) method(r *http.Request, ep Endpoint, h handlerFunc, allowed ...string) (Endpoint, handlerFunc) {
	for _, m := range allowed {
		if r.Method == m {
			return ep, h
		}
	}
	return endpointUnknown, func(w http.ResponseWriter, r *http.Request, _ *Fault) {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, http.StatusMethodNotAllowed, "Method Not Allowed")
	}
}

func (s *Server) notFound(r *http.Request) (Endpoint, handlerFunc) {
	return endpointUnknown, func(w http.ResponseWriter, r *http.Request, _ *Fault) {
		writeError(w, http.StatusNotFound, "null for uri: "+r.URL.String())
	}
}
