package proxy

import (
	"bytes"
	"errors"
	"github.com/VictoriaMetrics/metrics"
	"github.com/sony/gobreaker/v2"
	"io"
	"mime"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jira-relay/jira-relay/relay/upload"
	"github.com/jira-relay/jira-relay/ratelimit"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// Upload body kinds.
const (
	bodyMultipart = iota // multipart/form-data, passed through byte for byte
	bodyRaw              // the file itself, wrapped into one part named "file"
	bodyBase64           // the file as base64 (Office.js), decoded while streaming
)

// maxJiraAnswer bounds the JSON answer of an upload that the relay relays back.
const maxJiraAnswer = 1 << 20

// uploadPlan is everything decided from the headers before any body byte is
// read: who, where, how the body is shaped, and the slots taken (a stream
// slot and a breaker slot) that finish() gives back.
type uploadPlan struct {
	in       *store.Instance
	up       *upstream
	issue    string
	kind     int
	filename string
	partType string
	length   int // caller's Content-Length, -1 when chunked
	done     func(error)
	release  func()
}

func (p *uploadPlan) finish(outcome error) {
	if p.done != nil {
		p.done(outcome)
		p.done = nil
	}
	if p.release != nil {
		p.release()
		p.release = nil
	}
}

// admittedKey marks a request whose rate limits the Expect handler already
// charged, so the handler does not charge them twice.
const admittedKey = "jira-relay.admitted"

// uploadAttachmentRouted is the upload route as the router sees it (the
// front door matches it by hand first; see Server.handle).
func (s *Server) uploadAttachmentRouted(ctx *fasthttp.RequestCtx) {
	id, _ := ctx.UserValue("id").(string)
	issue, _ := ctx.UserValue("issue").(string)
	s.uploadAttachment(ctx, []byte(id), []byte(issue))
}

// uploadAttachment: POST /v1/instances/{id}/issues/{issueIdOrKey}/attachments.
func (s *Server) uploadAttachment(ctx *fasthttp.RequestCtx, id, rawIssue []byte) {
	plan, err := s.planUpload(ctx, id, rawIssue, false)
	if err != nil {
		s.writeRefusal(ctx, err)
		lingerIfBodyUnread(ctx)
		return
	}
	s.streamUpload(ctx, plan)
}

// writeRefusal answers a refusal decided before streaming.
func (s *Server) writeRefusal(ctx *fasthttp.RequestCtx, err error) {
	var rl *rateLimited
	var bo *breakerOpenError
	switch {
	case errors.As(err, &rl):
		s.metrics.refused(rl.reason)
		writeRateLimited(ctx, rl)
	case errors.As(err, &bo):
		s.metrics.refused("breaker_open")
		writeAPIError(ctx, &apiError{Status: 503, Code: "upstream_circuit_open",
			Message: "Jira for this instance is failing; the relay holds requests until it recovers", RetryAfter: ceilSeconds(bo.retryAfter)})
	default:
		s.writeError(ctx, err)
	}
}

func ceilSeconds(d time.Duration) int { return max(int((d+time.Second-1)/time.Second), 1) }

// planUpload makes every decision that the headers allow: 401, 404, 400,
// 413, 429 and 503 all happen here, before the body is read. In the Expect
// phase (before "100 Continue") it only looks at the stream and breaker
// slots; it takes them when the handler runs, so that a caller who leaves
// after "100 Continue" holds nothing.
func (s *Server) planUpload(ctx *fasthttp.RequestCtx, id, rawIssue []byte, expectPhase bool) (*uploadPlan, error) {
	in, err := s.authenticate(ctx, id, store.RoleClient)
	if err != nil {
		return nil, err
	}
	issue, err := issueParam(rawIssue)
	if err != nil {
		return nil, err
	}
	if len(ctx.Request.Header.Peek("Authorization")) == 0 {
		return nil, newErr(401, "missing_authorization", "send the user's Jira credential in Authorization; the relay passes it to Jira unchanged")
	}
	p := &uploadPlan{in: in, issue: issue, length: ctx.Request.Header.ContentLength()}
	if p.length < 0 {
		p.length = -1
	}
	if p.length == 0 && !declaresLength(ctx) {
		// No body at all is a caller's mistake (a file of 0 bytes says
		// Content-Length: 0): Jira would get an empty attachment.
		return nil, newErr(411, "length_required", "send the file with a Content-Length (or chunked); an upload without a body is refused")
	}
	q, err := queryArgs(ctx, "filename", "encoding")
	if err != nil {
		return nil, err
	}
	if err := s.shapeUpload(ctx, p, q); err != nil {
		return nil, err
	}
	if admitted, _ := ctx.UserValue(admittedKey).(bool); !admitted {
		if rl := s.guards.admit(ctx, in.ID, []byte(issue)); rl != nil {
			return nil, rl
		}
		ctx.SetUserValue(admittedKey, true)
	}
	if expectPhase {
		if s.guards.streams.InFlight([]byte(in.ID)) >= s.guards.streams.Limit() {
			return nil, &rateLimited{reason: "streams", d: streamsDecision(s.guards.streams.Limit())}
		}
		up, err := s.ups.get(in.ID, in.URL)
		if err != nil {
			return nil, err
		}
		if up.cb.State() == gobreaker.StateOpen {
			return nil, &breakerOpenError{retryAfter: up.openLeft(s.cfg.BreakerOpenTimeout)}
		}
		return nil, nil
	}
	if !s.guards.streams.TryAcquire([]byte(in.ID)) {
		return nil, &rateLimited{reason: "streams", d: streamsDecision(s.guards.streams.Limit())}
	}
	release := func() { s.guards.streams.Release([]byte(in.ID)) }
	up, err := s.ups.get(in.ID, in.URL)
	if err != nil {
		release()
		return nil, err
	}
	done, err := up.allow(s.cfg.BreakerOpenTimeout)
	if err != nil {
		release()
		return nil, err
	}
	p.up, p.done, p.release = up, done, release
	return p, nil
}

// shapeUpload decides the body kind, the file name and part type, and
// refuses a declared size over the limit.
func (s *Server) shapeUpload(ctx *fasthttp.RequestCtx, p *uploadPlan, q map[string]string) error {
	max := s.cfg.MaxAttachmentBytes
	ct := string(ctx.Request.Header.ContentType())
	mt, params, _ := mime.ParseMediaType(ct)
	switch enc, ok := q["encoding"]; {
	case ok && enc != "base64":
		return newErr(400, "invalid_query", `encoding must be "base64" or absent`)
	case ok:
		p.kind = bodyBase64
	case mt == "multipart/form-data":
		if b := params["boundary"]; b == "" || len(b) > 70 {
			return newErr(400, "invalid_multipart", "multipart/form-data needs a boundary of 1 to 70 characters")
		}
		p.kind = bodyMultipart
	default:
		p.kind = bodyRaw
	}
	if p.kind != bodyMultipart {
		if mt == "multipart/form-data" {
			return newErr(400, "invalid_content_type", "a base64 body is the file itself, not multipart/form-data")
		}
		name, ok := q["filename"]
		if !ok {
			cd := ctx.Request.Header.Peek("Content-Disposition")
			if len(cd) == 0 {
				return newErr(400, "missing_filename", "give the file name as ?filename= or in Content-Disposition")
			}
			n, err := upload.FilenameFromContentDisposition(string(cd))
			if err != nil {
				return newErr(400, "invalid_filename", "Content-Disposition has no usable filename")
			}
			name = n
		}
		if err := upload.ValidateFilename(name); err != nil {
			return newErr(400, "invalid_filename", "filename must be 1 to 255 characters of valid UTF-8")
		}
		pt, err := upload.NormalizeContentType(ct)
		if err != nil {
			return newErr(400, "invalid_content_type", "Content-Type is not a valid media type")
		}
		p.filename, p.partType = name, pt
	}
	limit := max
	if p.kind == bodyBase64 {
		limit = base64Budget(max)
	}
	if p.length >= 0 && int64(p.length) > limit {
		return tooLargeAttachment(max)
	}
	return nil
}

// base64Budget is the most base64 text a file of max bytes can take,
// allowing line breaks every 76 characters (MIME style).
func base64Budget(max int64) int64 {
	enc := (max + 2) / 3 * 4
	return enc + enc/76*2 + 4
}

func tooLargeAttachment(max int64) *apiError {
	return newErr(413, "attachment_too_large", "the attachment is larger than --max-attachment-bytes ("+itoa64(max)+" bytes)")
}

func streamsDecision(limit int) ratelimit.Decision {
	return ratelimit.Decision{OK: false, Limit: limit, Remaining: 0, Reset: time.Second, RetryAfter: time.Second}
}

// issueParam decodes and validates {issueIdOrKey}: Jira's key form or digits,
// so that nothing can reach another Jira path.
func issueParam(raw []byte) (string, error) {
	v, err := url.PathUnescape(string(raw))
	if err != nil || !store.ValidIssueIDOrKey(v) {
		return "", newErr(400, "invalid_issue", "issueIdOrKey must be an issue key like ABC-123 or a numeric id")
	}
	return v, nil
}

// recorder remembers the first error its reader returned (other than EOF):
// fasthttp turns some errors into its own, and the relay must know whether
// the caller's side or Jira's side broke.
type recorder struct {
	r   io.Reader
	err error
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// clientBody reads the caller's body from the socket, moving the read
// deadline forward so that a stalled caller is cut off after the stream idle
// timeout while a slow but steady one may take as long as it needs.
type clientBody struct {
	n        int64 // bytes read so far
	r        io.Reader
	conn     net.Conn
	idle     time.Duration
	deadline time.Time
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.r == nil {
		// No Content-Length and no Transfer-Encoding: an empty body
		// (RFC 9112 §6.3), for which fasthttp gives no stream.
		return 0, io.EOF
	}
	if b.idle > 0 && b.conn != nil {
		if now := time.Now(); b.deadline.Sub(now) < b.idle*3/4 {
			b.deadline = now.Add(b.idle)
			_ = b.conn.SetReadDeadline(b.deadline)
		}
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

// streamUpload sends the body to Jira and relays Jira's answer. If the
// caller's body breaks, is too large or is malformed, the upstream request
// is aborted (its connection closed) so Jira never sees a complete upload.
func (s *Server) streamUpload(ctx *fasthttp.RequestCtx, p *uploadPlan) {
	var outcome error = errNotCounted
	s.metrics.inFlight.Add(1)
	src := &clientBody{r: ctx.RequestBodyStream(), conn: ctx.Conn(), idle: s.cfg.StreamIdleTimeout}
	s.streams.Store(src, ctx.Conn())
	defer func() {
		s.streams.Delete(src)
		p.finish(outcome)
		s.metrics.inFlight.Add(-1)
		s.metrics.bytesUp.Add(int(src.n))
	}()
	max := s.cfg.MaxAttachmentBytes
	var body io.Reader
	size := int64(p.length)
	contentType := string(ctx.Request.Header.ContentType())
	switch p.kind {
	case bodyMultipart:
		lim := upload.NewLimitReader(src, max)
		if p.length >= 0 {
			_ = lim.ExpectLen(int64(p.length))
		}
		body = lim
	case bodyRaw:
		lim := upload.NewLimitReader(src, max)
		if p.length >= 0 {
			_ = lim.ExpectLen(int64(p.length))
		}
		mp, err := upload.NewMultipart(lim, size, p.filename, p.partType)
		if err != nil {
			s.writeError(ctx, newErr(400, "invalid_upload", "the upload cannot be wrapped as multipart"))
			return
		}
		body, size, contentType = mp, mp.Size(), mp.ContentType()
	case bodyBase64:
		raw := upload.NewLimitReader(src, base64Budget(max))
		if p.length >= 0 {
			_ = raw.ExpectLen(int64(p.length))
		}
		dec := upload.NewLimitReader(upload.NewBase64Decoder(raw), max)
		mp, err := upload.NewMultipart(dec, -1, p.filename, p.partType)
		if err != nil {
			s.writeError(ctx, newErr(400, "invalid_upload", "the upload cannot be wrapped as multipart"))
			return
		}
		body, size, contentType = mp, -1, mp.ContentType()
	}
	rec := &recorder{r: body}

	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(p.up.base + "/rest/api/3/issue/" + p.issue + "/attachments")
	req.Header.SetBytesV("Authorization", ctx.Request.Header.Peek("Authorization"))
	req.Header.Set("X-Atlassian-Token", "no-check")
	req.Header.Set("Accept", "application/json")
	req.Header.SetContentType(contentType)
	if rid, _ := ctx.UserValue(ridKey).(string); rid != "" {
		req.Header.Set("X-Request-Id", rid)
	}
	req.SetBodyStream(rec, int(size))

	t0 := time.Now()
	err := p.up.hc.Do(req, resp)
	s.metrics.upstreamTook(time.Since(t0))
	if rec.err != nil || (err != nil && src != nil && isClientSide(err)) {
		// The caller's side broke: the upstream connection was closed by
		// fasthttp mid-body, so Jira saw an incomplete request.
		cause := rec.err
		if cause == nil {
			cause = err
		}
		if s.cut.Load() {
			// Cut off at the drain deadline, not the caller's doing.
			s.writeError(ctx, newErr(503, "shutting_down", "the relay stopped before the upload ended; nothing was uploaded"))
			ctx.SetConnectionClose()
			return
		}
		s.writeError(ctx, bodyError(cause, max))
		if !isClientSide(cause) {
			// The socket or the body's framing broke: close, do not linger.
			ctx.SetUserValue(bodyBrokenKey, true)
			ctx.SetConnectionClose()
		}
		lingerIfBodyUnread(ctx)
		return
	}
	if err != nil {
		outcome = err
		s.writeError(ctx, &upstreamFailure{err: err})
		return
	}
	status := resp.StatusCode()
	ctx.SetUserValue(upstreamStatusKey, status)
	s.afterJira(p.in.ID, p.up, status, resp, &outcome)
	ctx.SetStatusCode(status)
	copyJiraHeaders(&ctx.Response.Header, &resp.Header, false)
	b, rerr := readLimited(resp.BodyStream(), maxJiraAnswer)
	if rerr != nil {
		outcome = rerr
		s.writeError(ctx, &upstreamFailure{err: rerr})
		return
	}
	ctx.SetBody(b)
}

// afterJira updates the cool-down and decides the breaker outcome from
// Jira's status: 5xx counts as a failure, 429 starts a cool-down. A 429
// without Retry-After gets one: the cool-down the relay now keeps, so the
// caller knows when to come back.
func (s *Server) afterJira(id string, _ *upstream, status int, resp *fasthttp.Response, outcome *error) {
	switch {
	case status == fasthttp.StatusTooManyRequests:
		given := parseRetryAfter(resp.Header.Peek("Retry-After"), time.Now())
		cool := s.guards.cooldown.Trip([]byte(id), given)
		if given <= 0 {
			resp.Header.Set("Retry-After", strconv.Itoa(max(ratelimit.CeilSeconds(cool), 1)))
		}
		*outcome = nil
	case status >= 500:
		*outcome = errUpstreamStatus
	default:
		s.guards.cooldown.Succeeded([]byte(id))
		*outcome = nil
	}
}

func isClientSide(err error) bool {
	return errors.Is(err, upload.ErrTooLarge) || errors.Is(err, upload.ErrBadBase64) || errors.Is(err, upload.ErrSizeMismatch)
}

// bodyError maps a failure of the caller's body.
func bodyError(err error, max int64) *apiError {
	var ne net.Error
	switch {
	case errors.Is(err, upload.ErrTooLarge):
		return tooLargeAttachment(max)
	case errors.Is(err, upload.ErrBadBase64):
		return newErr(400, "invalid_base64", "the body is not valid base64")
	case errors.Is(err, upload.ErrSizeMismatch), errors.Is(err, io.ErrUnexpectedEOF):
		return newErr(400, "incomplete_body", "the body ended before its Content-Length; nothing was uploaded")
	case errors.As(err, &ne) && ne.Timeout():
		return newErr(408, "body_timeout", "the body stalled longer than the stream idle timeout; nothing was uploaded")
	}
	return newErr(499, "client_closed", "the caller's body broke off; nothing was uploaded")
}

// upstreamFailure is a failure of the connection to Jira.
type upstreamFailure struct{ err error }

func (e *upstreamFailure) Error() string { return "upstream: " + e.err.Error() }
func (e *upstreamFailure) Unwrap() error { return e.err }

func upstreamError(err error) *apiError {
	var uf *upstreamFailure
	if !errors.As(err, &uf) {
		return nil
	}
	var ne net.Error
	if errors.Is(uf.err, fasthttp.ErrTimeout) || errors.Is(uf.err, fasthttp.ErrDialTimeout) || (errors.As(uf.err, &ne) && ne.Timeout()) {
		return newErr(504, "upstream_timeout", "Jira did not answer in time")
	}
	return newErr(502, "upstream_unreachable", "the connection to Jira failed")
}

// Headers of Jira's answer that reach the caller.
func keepJiraHeader(k []byte, download bool) bool {
	lk := strings.ToLower(string(k))
	switch lk {
	case "content-type", "retry-after":
		return true
	case "content-disposition", "content-range", "accept-ranges", "etag", "last-modified":
		return download
	}
	return strings.HasPrefix(lk, "x-ratelimit-") || strings.HasPrefix(lk, "ratelimit") || strings.HasPrefix(lk, "beta-ratelimit")
}

func copyJiraHeaders(dst *fasthttp.ResponseHeader, src *fasthttp.ResponseHeader, download bool) {
	for k, v := range src.All() {
		if keepJiraHeader(k, download) {
			dst.SetBytesKV(k, v)
		}
	}
}

func readLimited(r io.Reader, limit int64) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, errors.New("jira's answer is larger than 1 MiB")
	}
	return buf.Bytes(), nil
}

// downloadAttachment: GET /v1/instances/{id}/attachments/{attachmentId}/content
// streams Jira's bytes back, with Range passed through.
func (s *Server) downloadAttachment(ctx *fasthttp.RequestCtx) {
	if err := s.doDownload(ctx); err != nil {
		s.writeRefusal(ctx, err)
	}
}

func (s *Server) doDownload(ctx *fasthttp.RequestCtx) error {
	id, _ := ctx.UserValue("id").(string)
	in, err := s.authenticate(ctx, []byte(id), store.RoleClient)
	if err != nil {
		return err
	}
	raw, _ := ctx.UserValue("attachmentId").(string)
	if !store.ValidNumericID(raw) {
		return newErr(400, "invalid_attachment_id", "attachmentId must be Jira's numeric attachment id")
	}
	if len(ctx.Request.Header.Peek("Authorization")) == 0 {
		return newErr(401, "missing_authorization", "send the user's Jira credential in Authorization")
	}
	rng := ctx.Request.Header.Peek("Range")
	if len(rng) > 0 && !validRange(rng) {
		return newErr(400, "invalid_range", `Range must look like "bytes=0-1023"`)
	}
	if _, err := queryArgs(ctx); err != nil {
		return err
	}
	if rl := s.guards.admit(ctx, in.ID, nil); rl != nil {
		return rl
	}
	up, err := s.ups.get(in.ID, in.URL)
	if err != nil {
		return err
	}
	done, err := up.allow(s.cfg.BreakerOpenTimeout)
	if err != nil {
		return err
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURI(up.base + "/rest/api/3/attachment/content/" + raw + "?redirect=false")
	req.Header.SetBytesV("Authorization", ctx.Request.Header.Peek("Authorization"))
	if len(rng) > 0 {
		req.Header.SetBytesV("Range", rng)
	}
	if rid, _ := ctx.UserValue(ridKey).(string); rid != "" {
		req.Header.Set("X-Request-Id", rid)
	}
	t0 := time.Now()
	err = up.hc.Do(req, resp)
	s.metrics.upstreamTook(time.Since(t0))
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		done(err)
		return &upstreamFailure{err: err}
	}
	status := resp.StatusCode()
	ctx.SetUserValue(upstreamStatusKey, status)
	var outcome error
	s.afterJira(in.ID, up, status, resp, &outcome)
	done(outcome)
	if status >= 300 && status < 400 {
		fasthttp.ReleaseResponse(resp)
		return newErr(502, "upstream_redirect", "Jira answered with a redirect; the relay follows none")
	}
	ctx.SetStatusCode(status)
	copyJiraHeaders(&ctx.Response.Header, &resp.Header, true)
	cl := resp.Header.ContentLength()
	ctx.SetBodyStream(&downloadBody{resp: resp, bytes: s.metrics.bytesDown}, cl)
	return nil
}

// downloadBody streams Jira's response body to the caller and releases the
// upstream response (and so its connection) when fasthttp closes it.
type downloadBody struct {
	resp  *fasthttp.Response
	bytes *metrics.Counter
}

func (b *downloadBody) Read(p []byte) (int, error) {
	if b.resp == nil {
		return 0, io.EOF
	}
	if bs := b.resp.BodyStream(); bs != nil {
		n, err := bs.Read(p)
		b.bytes.Add(n)
		return n, err
	}
	// A body fasthttp read whole (small answers).
	return 0, io.EOF
}

// Close gives the upstream response back.
func (b *downloadBody) Close() error {
	if b.resp != nil {
		_ = b.resp.CloseBodyStream()
		fasthttp.ReleaseResponse(b.resp)
		b.resp = nil
	}
	return nil
}

func validRange(v []byte) bool {
	if len(v) > 256 || !bytes.HasPrefix(v, []byte("bytes=")) {
		return false
	}
	for _, c := range v[len("bytes="):] {
		if !(c >= '0' && c <= '9' || c == '-' || c == ',' || c == ' ') {
			return false
		}
	}
	return len(v) > len("bytes=")
}

func itoa64(n int64) string {
	var b [20]byte
	i := len(b)
	if n == 0 {
		return "0"
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
