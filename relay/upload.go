package relay

import (
	"errors"
	"io"
	"net"

	"github.com/jira-relay/jira-relay/internal/fleet"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"github.com/jira-relay/jira-relay/relay/upload"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// planKey carries the plan the Expect phase made to the handler, so the
// headers are judged (and limits charged) once.
const planKey = "jira-relay.upload-plan"

// Expect runs the check step before "100 Continue" and keeps the plan for
// the handler. A refusal is returned for the front door to answer instead
// of "100 Continue", so a refused caller never sends its body.
func (r *Relay) Expect(ctx *fasthttp.RequestCtx, in *store.Instance, t Target) error {
	p := new(Plan)
	if err := r.Check(ctx, in, t, p); err != nil {
		return err
	}
	ctx.SetUserValue(planKey, p)
	return nil
}

// Planned returns the plan the Expect phase made for this request, if any.
func Planned(ctx *fasthttp.RequestCtx) *Plan {
	p, _ := ctx.UserValue(planKey).(*Plan)
	return p
}

// Upload relays an upload whose headers passed Check: it takes the stream
// slot and the breaker ticket (acquire), streams the body to Jira and
// relays Jira's answer. A refusal of the acquire step is returned for the
// front door to answer; once streaming starts, the relay answers itself.
func (r *Relay) Upload(ctx *fasthttp.RequestCtx, p *Plan) error {
	// Check may have run a while ago (before "100 Continue" and the body's
	// first bytes): a cool-down any relay of the fleet began since holds
	// this upload too, before it spends the issue's write.
	if err := r.guards.cooling(p.in.ID, fleet.Upload, p.issue); err != nil {
		return err
	}
	t, err := r.acquire(p.in.ID, p.up)
	if err != nil {
		return err
	}
	if err := r.guards.issueWrite(p.in.ID, p.issue); err != nil {
		t.finish(errNotCounted)
		return err
	}
	outcome := error(errNotCounted)
	defer func() { t.finish(outcome) }() // even if send panics
	outcome = r.send(ctx, p)
	return nil
}

// ticket is what acquire took: a stream slot and a breaker slot.
type ticket struct {
	release func()
	done    func(error)
}

// acquire takes one of the instance's stream slots and a breaker ticket of
// its upstream.
func (r *Relay) acquire(instanceID string, up *upstream) (ticket, error) {
	release, err := r.guards.takeStream(instanceID)
	if err != nil {
		return ticket{}, err
	}
	done, err := up.ticket(r.cfg.BreakerOpenTimeout)
	if err != nil {
		release()
		return ticket{}, err
	}
	return ticket{release: release, done: done}, nil
}

// finish reports the breaker outcome and gives the stream slot back.
func (t ticket) finish(outcome error) {
	t.done(outcome)
	t.release()
}

// send streams the caller's body to Jira and answers the caller; it returns
// the breaker outcome. If the caller's body breaks, is too large or is
// malformed, the upstream request is aborted (its connection closed) so
// Jira never sees a complete upload.
func (r *Relay) send(ctx *fasthttp.RequestCtx, p *Plan) error {
	r.metrics.inFlight.Add(1)
	src := httpx.NewBody(ctx, r.cfg.StreamIdleTimeout)
	r.live.Store(src, ctx.Conn())
	defer func() {
		r.live.Delete(src)
		r.metrics.inFlight.Add(-1)
		r.metrics.bytesUp.Add(int(src.N))
	}()
	body, size, contentType, err := r.body(ctx, p, src)
	if err != nil {
		r.resp.Fail(ctx, httpx.Err(400, "invalid_upload", "the upload cannot be wrapped as multipart"))
		return errNotCounted
	}
	ub := &upBody{r: body, size: size}
	req := r.uploadRequest(ctx, p, ub, size, contentType)
	ub.req = req
	defer fasthttp.ReleaseRequest(req)
	resp, err := r.roundTrip(ctx, p.in.ID, fleet.Upload, p.issue, p.up, req, ub)
	if err != nil {
		return r.failed(ctx, ub.err, err, ub.cut)
	}
	defer fasthttp.ReleaseResponse(resp)
	status := resp.StatusCode()
	ctx.SetStatusCode(status)
	copyJiraHeaders(&ctx.Response.Header, &resp.Header, false)
	b, err := readLimited(resp.BodyStream(), maxJiraAnswer)
	if err != nil {
		r.resp.Fail(ctx, &httpx.UpstreamFailure{Err: err})
		if ub.cut {
			httpx.LingerIfBodyUnread(ctx)
		}
		return err
	}
	ctx.SetBody(b)
	if ub.cut {
		// Jira answered before it read the whole upload (a 401 for a bad
		// credential, say): its answer is relayed, and the caller's unread
		// rest is read and dropped after it, then the connection closes.
		httpx.LingerIfBodyUnread(ctx)
	}
	return outcome(status)
}

// upBody is an upload's body as fasthttp reads it to write it to Jira. When
// Jira stops reading (it answered early and closed: the upstream
// connection discards what is written from then on, see idleConn), upBody
// stops reading the caller and ends the body: at once when it is chunked,
// else by padding it to its declared length with zeros that never reach
// the wire (fasthttp fails a request whose body is shorter than its
// Content-Length, and would drop Jira's answer). fasthttp then reads the
// answer Jira gave.
type upBody struct {
	r    io.Reader
	size int64 // the length given to fasthttp; -1: chunked
	n    int64 // bytes handed to fasthttp
	// resp is the exchange's Response while HostClient.Do runs (set by
	// roundTrip); it names the connection fasthttp chose (peerStopped).
	resp *fasthttp.Response
	// req is the exchange's request: marked Connection: close once Jira
	// stopped reading, so fasthttp never pools that connection, even for an
	// answer without a body.
	req *fasthttp.Request
	// cut: Jira stopped reading before the body ended, so the caller's
	// body was left unread.
	cut  bool
	done bool // the caller's body ended
	// err is the first error the caller's body returned (other than EOF):
	// fasthttp turns some errors into its own, and the relay must know
	// whether the caller's side or Jira's side broke.
	err error
}

func (b *upBody) Read(p []byte) (int, error) {
	if !b.cut && !b.done && b.resp != nil && peerStopped(b.resp) {
		b.cut = true
		if b.req != nil {
			b.req.SetConnectionClose()
		}
	}
	if b.cut {
		if b.size < 0 || b.n >= b.size {
			return 0, io.EOF
		}
		k := int(min(int64(len(p)), b.size-b.n))
		clear(p[:k])
		b.n += int64(k)
		return k, nil
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	switch {
	case err == io.EOF:
		b.done = true
	case err != nil && b.err == nil:
		b.err = err
	}
	return n, err
}

// body builds what goes to Jira from the caller's body: a multipart body
// passes through, a raw or base64 file is wrapped into one part. Each is
// bounded by the attachment limit and held to the declared length.
func (r *Relay) body(ctx *fasthttp.RequestCtx, p *Plan, src io.Reader) (body io.Reader, size int64, contentType string, err error) {
	max := r.cfg.MaxAttachmentBytes
	switch p.kind {
	case bodyMultipart:
		return expectLen(upload.NewLimitReader(src, max), p.length), p.length, string(ctx.Request.Header.ContentType()), nil
	case bodyRaw:
		mp, err := p.part.Wrap(expectLen(upload.NewLimitReader(src, max), p.length), p.length)
		if err != nil {
			return nil, 0, "", err
		}
		return mp, mp.Size(), mp.ContentType(), nil
	default: // bodyBase64: the decoded size is known only at the end
		raw := expectLen(upload.NewLimitReader(src, base64Budget(max)), p.length)
		mp, err := p.part.Wrap(upload.NewLimitReader(upload.NewBase64Decoder(raw), max), -1)
		if err != nil {
			return nil, 0, "", err
		}
		return mp, -1, mp.ContentType(), nil
	}
}

// expectLen holds a limited reader to the caller's declared length.
func expectLen(l *upload.LimitReader, length int64) *upload.LimitReader {
	if length >= 0 {
		_ = l.ExpectLen(length) // over the limit: refused by Check already
	}
	return l
}

// uploadRequest is the request to Jira's attachment endpoint: the caller's
// credential passed unchanged, Jira's XSRF opt-out, the body streamed.
func (r *Relay) uploadRequest(ctx *fasthttp.RequestCtx, p *Plan, body io.Reader, size int64, contentType string) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(p.up.base + "/rest/api/3/issue/" + p.issue + "/attachments")
	req.Header.SetBytesV("Authorization", ctx.Request.Header.Peek("Authorization"))
	req.Header.Set("X-Atlassian-Token", "no-check")
	req.Header.Set("Accept", "application/json")
	req.Header.SetContentType(contentType)
	req.SetBodyStream(body, int(size))
	return req
}

// failed answers an upload whose exchange with Jira failed, and returns the
// breaker outcome: the caller's side breaking is not Jira's failure.
// bodyErr is the first error the caller's body returned (fasthttp turns some
// into its own), err the exchange's; cut reports that Jira stopped reading
// before the caller's body ended (see upBody).
func (r *Relay) failed(ctx *fasthttp.RequestCtx, bodyErr, err error, cut bool) error {
	if bodyErr == nil && !callerSide(err) {
		r.resp.Fail(ctx, &httpx.UpstreamFailure{Err: err})
		if cut {
			// The caller may still be sending: answer, then read and
			// drop the rest before closing.
			httpx.LingerIfBodyUnread(ctx)
		}
		return err
	}
	// The caller's side broke: fasthttp closed the upstream connection
	// mid-body, so Jira saw an incomplete request.
	cause := bodyErr
	if cause == nil {
		cause = err
	}
	if r.cut.Load() {
		// Cut off at the drain deadline, not the caller's doing.
		r.resp.Fail(ctx, httpx.Err(503, "shutting_down", "the relay stopped before the upload ended; nothing was uploaded"))
		httpx.MarkBodyBroken(ctx)
		return errNotCounted
	}
	r.resp.Fail(ctx, r.bodyFailure(cause))
	if !callerSide(cause) {
		// The socket or the body's framing broke: close, do not linger.
		httpx.MarkBodyBroken(ctx)
	}
	httpx.LingerIfBodyUnread(ctx)
	return errNotCounted
}

// callerSide reports a failure the caller's body caused by its content.
func callerSide(err error) bool {
	return errors.Is(err, upload.ErrTooLarge) || errors.Is(err, upload.ErrBadBase64) || errors.Is(err, upload.ErrSizeMismatch)
}

// bodyFailure classifies a failure of the caller's body.
func (r *Relay) bodyFailure(err error) *httpx.BodyFailure {
	f := &httpx.BodyFailure{Fault: httpx.BodyGone, Limit: r.cfg.MaxAttachmentBytes, Err: err}
	var ne net.Error
	switch {
	case errors.Is(err, upload.ErrTooLarge):
		f.Fault = httpx.BodyTooLarge
	case errors.Is(err, upload.ErrBadBase64):
		f.Fault = httpx.BodyBadBase64
	case errors.Is(err, upload.ErrSizeMismatch), errors.Is(err, io.ErrUnexpectedEOF):
		f.Fault = httpx.BodyIncomplete
	case errors.As(err, &ne) && ne.Timeout():
		f.Fault = httpx.BodyTimeout
	}
	return f
}
