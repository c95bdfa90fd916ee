package fakejira

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// FaultKind selects what a Fault does to the requests it matches.
type FaultKind int

const (
	// FaultNone is no fault; SetFault(Fault{Kind: FaultNone}) clears.
	FaultNone FaultKind = iota
	// Fault500 answers 500 with a Jira JSON error at once, without reading
	// the request body, and closes the connection (Connection: close).
	Fault500
	// Fault503 reads and discards the request body, then answers 503 with a
	// Jira JSON error and Retry-After if Fault.RetryAfter is set. The
	// connection stays usable.
	Fault503
	// Fault429 reads and discards the request body, then answers 429 like
	// Jira Cloud's rate limiter: Retry-After (if Fault.RetryAfter is set),
	// X-RateLimit-Limit: 100, X-RateLimit-Remaining: 0, X-RateLimit-Reset
	// (ISO 8601), RateLimit-Reason (Fault.Reason; jira-burst-based by
	// default) and the body {"errorMessages":["Rate limit exceeded."]}. The
	// connection stays usable.
	Fault429
	// FaultSlow processes the request normally (an upload is read and
	// recorded) and then sleeps Fault.Delay before answering.
	FaultSlow
	// FaultHang processes the request normally (an upload is read and
	// recorded with Status 0) and then never answers, until the client goes
	// away or the server is closed.
	FaultHang
	// FaultResetMidBody closes the TCP connection abruptly (SO_LINGER 0, so
	// the peer sees a reset) after Fault.AfterBytes bytes of body: of the
	// request body for an upload (multipart framing included; the upload is
	// recorded incomplete, and if the body is shorter the reset happens at
	// its end instead of an answer), of the response body otherwise (0: before
	// the response is sent).
	FaultResetMidBody
	// FaultSlowDrip sends the response body in pieces of Fault.DripSize bytes
	// (default 1 KiB), flushing each and sleeping Fault.Delay (default 10 ms)
	// after each; for an upload it reads the request body the same way,
	// which exerts back-pressure on the client.
	FaultSlowDrip
	// Fault401 answers 401 with Jira's JSON error at once, without reading
	// the request body, as Jira's edge does for a bad credential. The fake
	// does not close the connection itself; net/http does, as for any
	// handler that leaves a large body unread: when more than 256 KiB of it
	// remains it answers with Connection: close, half-closes, and closes
	// after its RST-avoidance delay (about 500 ms), which resets the
	// connection since the rest of the body was never read. A client still
	// writing the body sees EPIPE or ECONNRESET with the answer already in
	// its receive buffer. An upload is recorded with Status 401.
	Fault401
)

var faultNames = [...]string{"none", "500", "503", "429", "slow", "hang", "reset-mid-body", "slow-drip", "401"}

// String is a short name for the kind, e.g. "429" or "reset-mid-body".
func (k FaultKind) String() string {
	if k >= 0 && int(k) < len(faultNames) {
		return faultNames[k]
	}
	return "FaultKind(" + strconv.Itoa(int(k)) + ")"
}

// Endpoint restricts which requests a Fault matches.
type Endpoint int

const (
	// EndpointAny matches every request to a known Jira path.
	EndpointAny Endpoint = iota
	// EndpointUpload matches POST …/issue/{key}/attachments.
	EndpointUpload
	// EndpointDownload matches …/attachment/content/{id} (the 303 as well as
	// redirect=false) and …/media/{id}.
	EndpointDownload
	// EndpointOther matches serverInfo, myself, attachment/meta and
	// attachment/{id}.
	EndpointOther

	// endpointUnknown is an unknown path or wrong method: never faulted.
	endpointUnknown Endpoint = -1
)

// Fault describes a failure injected into the next matching requests. A
// fault acts before Jira's own checks (XSRF token, authentication, issue
// key), the way a gateway or rate limiter in front of Jira would.
type Fault struct {
	// Kind is what happens.
	Kind FaultKind
	// Count is how many matching requests get the fault, after which it
	// clears itself; 0 (or negative) means until ClearFault.
	Count int
	// RetryAfter is the Retry-After header value for Fault429 and Fault503;
	// "" sends none.
	RetryAfter string
	// Delay is the sleep of FaultSlow and the pause between pieces of
	// FaultSlowDrip.
	Delay time.Duration
	// AfterBytes is where FaultResetMidBody cuts the body.
	AfterBytes int64
	// DripSize is the piece size of FaultSlowDrip; default 1024.
	DripSize int
	// Endpoint restricts the fault to one kind of request; default
	// EndpointAny. Requests that do not match neither get the fault nor
	// use up Count.
	Endpoint Endpoint
	// Host, when set, restricts the fault to requests whose Host header is
	// this (one Jira site, when several tenants are registered on one fake
	// by different spellings of its address, e.g. 127.0.0.1:port and
	// localhost:port).
	Host string
	// Issue, when set, restricts the fault to uploads to this issue (its
	// key or id as the path names it), as Jira's per-issue write limit.
	Issue string
	// Reason is the RateLimit-Reason of a Fault429: "" sends
	// jira-burst-based, NoReason sends none (some 429s come without).
	Reason string
}

// Jira's RateLimit-Reason values, for Fault.Reason.
const (
	ReasonBurst       = "jira-burst-based"
	ReasonPerIssue    = "jira-per-issue-on-write"
	ReasonTenantQuota = "jira-quota-tenant-based"
	ReasonGlobalQuota = "jira-quota-global-based"
	// NoReason makes a Fault429 send no RateLimit-Reason.
	NoReason = "-"
)

// SetFault replaces the current fault. A Fault with Kind FaultNone clears it.
func (s *Server) SetFault(f Fault) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if f.Count < 0 {
		f.Count = 0
	}
	s.fault = f
	s.faultActive = f.Kind != FaultNone
}

// ClearFault removes the current fault; requests are answered normally again.
func (s *Server) ClearFault() { s.SetFault(Fault{}) }

// CurrentFault returns the fault in force, with Count reduced by the
// requests it has already hit, or a Fault with Kind FaultNone.
func (s *Server) CurrentFault() Fault {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if !s.faultActive {
		return Fault{}
	}
	return s.fault
}

// takeFault returns the fault to apply to a request for ep at host (an
// upload to issue, "" for other requests), using up one of its Count.
func (s *Server) takeFault(ep Endpoint, host, issue string) (Fault, bool) {
	if ep == endpointUnknown {
		return Fault{}, false
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if !s.faultActive || (s.fault.Endpoint != EndpointAny && s.fault.Endpoint != ep) ||
		(s.fault.Issue != "" && (ep != EndpointUpload || s.fault.Issue != issue)) ||
		(s.fault.Host != "" && s.fault.Host != host) {
		return Fault{}, false
	}
	f := s.fault
	if s.fault.Count > 0 {
		s.fault.Count--
		if s.fault.Count == 0 {
			s.fault = Fault{}
			s.faultActive = false
		}
	}
	return f, true
}

// applyFault runs h for a non-upload request under fault f. (Uploads handle
// their faults themselves, because they record what happened.)
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, f *Fault, h handlerFunc) {
	switch f.Kind {
	case Fault500, Fault503, Fault429, Fault401:
		if f.Kind == Fault503 || f.Kind == Fault429 {
			_, _ = io.Copy(io.Discard, r.Body)
		}
		writeFaultStatus(w, f)
	case FaultSlow:
		if s.sleep(r.Context(), f.Delay) != nil {
			return
		}
		h(w, r, nil)
	case FaultHang:
		s.hang(r.Context())
	case FaultResetMidBody:
		if f.AfterBytes <= 0 {
			resetConn(w, false)
			return
		}
		rw := &resetWriter{ResponseWriter: w, left: f.AfterBytes}
		h(rw, r, nil)
		resetConn(w, true)
	case FaultSlowDrip:
		dw := newDripWriter(s, w, r.Context(), f)
		h(dw, r, nil)
	default:
		h(w, r, nil)
	}
}

// writeFaultStatus answers with the status of a 500, 503 or 429 fault.
func writeFaultStatus(w http.ResponseWriter, f *Fault) {
	h := w.Header()
	switch f.Kind {
	case Fault500:
		h.Set("Connection", "close")
		writeError(w, http.StatusInternalServerError, "Internal server error")
	case Fault401:
		writeError(w, http.StatusUnauthorized, msgNotAuthenticated)
	case Fault503:
		if f.RetryAfter != "" {
			h.Set("Retry-After", f.RetryAfter)
		}
		writeError(w, http.StatusServiceUnavailable, "Service Unavailable")
	case Fault429:
		reset := 60 * time.Second
		if f.RetryAfter != "" {
			h.Set("Retry-After", f.RetryAfter)
			if secs, err := strconv.Atoi(f.RetryAfter); err == nil && secs >= 0 {
				reset = time.Duration(secs) * time.Second
			} else if t, err := http.ParseTime(f.RetryAfter); err == nil {
				reset = time.Until(t)
			}
		}
		h.Set("X-RateLimit-Limit", "100")
		h.Set("X-RateLimit-Remaining", "0")
		h.Set("X-RateLimit-Reset", time.Now().Add(reset).UTC().Format("2006-01-02T15:04:05.000Z"))
		switch f.Reason {
		case "":
			h.Set("RateLimit-Reason", ReasonBurst)
		case NoReason:
		default:
			h.Set("RateLimit-Reason", f.Reason)
		}
		h.Set("Content-Type", "application/json;charset=UTF-8")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"errorMessages":["Rate limit exceeded."]}`)
	}
}

// hang blocks until the client goes away or the server closes.
func (s *Server) hang(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-s.done:
	}
}

// errFaultReset marks a body cut by FaultResetMidBody.
var errFaultReset = errors.New("fakejira: fault: connection reset")

// resetConn closes the connection under w abruptly: hijack, SO_LINGER 0,
// close, so that the peer gets a TCP RST. With flush, what the handler wrote
// is sent first.
func resetConn(w http.ResponseWriter, flush bool) {
	rc := http.NewResponseController(w)
	if flush {
		_ = rc.Flush()
	}
	conn, _, err := rc.Hijack()
	if err != nil {
		return
	}
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = raw.Close()
}

// resetReader passes through left bytes, then fails with errFaultReset.
type resetReader struct {
	r       io.Reader
	left    int64
	tripped bool
}

func (r *resetReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		r.tripped = true
		return 0, errFaultReset
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.r.Read(p)
	r.left -= int64(n)
	return n, err
}

// resetWriter passes through left bytes of response body, then fails.
type resetWriter struct {
	http.ResponseWriter
	left int64
}

func (w *resetWriter) Write(p []byte) (int, error) {
	if w.left <= 0 {
		return 0, errFaultReset
	}
	if int64(len(p)) <= w.left {
		n, err := w.ResponseWriter.Write(p)
		w.left -= int64(n)
		return n, err
	}
	n, err := w.ResponseWriter.Write(p[:w.left])
	w.left -= int64(n)
	if err == nil {
		err = errFaultReset
	}
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *resetWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func dripParams(f *Fault) (int, time.Duration) {
	size, delay := f.DripSize, f.Delay
	if size <= 0 {
		size = 1024
	}
	if delay <= 0 {
		delay = 10 * time.Millisecond
	}
	return size, delay
}

// dripWriter writes the response in small flushed pieces with pauses.
type dripWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	s     *Server
	ctx   context.Context
	size  int
	delay time.Duration
}

func newDripWriter(s *Server, w http.ResponseWriter, ctx context.Context, f *Fault) *dripWriter {
	size, delay := dripParams(f)
	return &dripWriter{ResponseWriter: w, rc: http.NewResponseController(w), s: s, ctx: ctx, size: size, delay: delay}
}

func (w *dripWriter) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		n := min(w.size, len(p))
		m, err := w.ResponseWriter.Write(p[:n])
		total += m
		if err != nil {
			return total, err
		}
		if err := w.rc.Flush(); err != nil {
			return total, err
		}
		p = p[n:]
		if err := w.s.sleep(w.ctx, w.delay); err != nil {
			return total, err
		}
	}
	return total, nil
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *dripWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// dripReader reads the request body in small pieces with pauses.
type dripReader struct {
	r     io.Reader
	s     *Server
	ctx   context.Context
	size  int
	delay time.Duration
	first bool
}

func newDripReader(s *Server, r io.Reader, ctx context.Context, f *Fault) *dripReader {
	size, delay := dripParams(f)
	return &dripReader{r: r, s: s, ctx: ctx, size: size, delay: delay, first: true}
}

func (d *dripReader) Read(p []byte) (int, error) {
	if !d.first {
		if err := d.s.sleep(d.ctx, d.delay); err != nil {
			return 0, fmt.Errorf("fakejira: slow drip interrupted: %w", err)
		}
	}
	d.first = false
	if len(p) > d.size {
		p = p[:d.size]
	}
	return d.r.Read(p)
}

// countingBody counts request-body bytes into the server's counter and its
// own.
type countingBody struct {
	io.ReadCloser
	n     interface{ Add(int64) int64 }
	local int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.n.Add(int64(n))
		b.local += int64(n)
	}
	return n, err
}
