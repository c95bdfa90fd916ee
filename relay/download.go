package relay

import (
	"bytes"
	"io"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jira-relay/jira-relay/internal/fleet"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// Download: GET /v1/instances/{id}/attachments/{attachmentId}/content
// streams Jira's bytes back, with Range passed through. A download holds one
// of the instance's stream slots until its body is sent, the caller goes,
// or the caller stops reading for the stream idle timeout (downloadBody), so
// that callers who never read cannot take the upstream pool. A refusal is
// returned for the front door to answer.
func (r *Relay) Download(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	raw, _ := ctx.UserValue("attachmentId").(string)
	if !store.ValidNumericID(raw) {
		return httpx.Err(400, "invalid_attachment_id", "attachmentId must be Jira's numeric attachment id")
	}
	if len(ctx.Request.Header.Peek("Authorization")) == 0 {
		return httpx.Err(401, "missing_authorization", "send the user's Jira credential in Authorization")
	}
	rng := ctx.Request.Header.Peek("Range")
	if len(rng) > 0 && !validRange(rng) {
		return httpx.Err(400, "invalid_range", `Range must look like "bytes=0-1023"`)
	}
	if _, err := httpx.QueryArgs(ctx); err != nil {
		return err
	}
	up, err := r.ups.get(in.ID, in.URL)
	if err != nil {
		return err
	}
	if err := r.guards.cooling(in.ID, fleet.Download, ""); err != nil {
		return err
	}
	t, err := r.acquire(in.ID, up)
	if err != nil {
		return err
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURI(up.base + "/rest/api/3/attachment/content/" + raw + "?redirect=false")
	req.Header.SetBytesV("Authorization", ctx.Request.Header.Peek("Authorization"))
	if len(rng) > 0 {
		req.Header.SetBytesV("Range", rng)
	}
	resp, err := r.roundTrip(ctx, in.ID, fleet.Download, "", up, req, nil)
	if err != nil {
		t.finish(err)
		return &httpx.UpstreamFailure{Err: err}
	}
	status := resp.StatusCode()
	t.done(outcome(status))
	if status >= 300 && status < 400 {
		fasthttp.ReleaseResponse(resp)
		t.release()
		return httpx.Err(502, "upstream_redirect", "Jira answered with a redirect; the relay follows none")
	}
	ctx.SetStatusCode(status)
	copyJiraHeaders(&ctx.Response.Header, &resp.Header, true)
	cl := resp.Header.ContentLength()
	ctx.SetBodyStream(&downloadBody{ctx: ctx, idle: r.cfg.StreamIdleTimeout, resp: resp, bytes: r.metrics.bytesDown, release: t.release}, cl)
	return nil
}

// downloadBody streams Jira's response body to the caller; when fasthttp
// closes it (sent, the caller gone, or the caller stalled) it releases the
// upstream response and the stream slot. A response not read to its end
// closes its upstream connection (fasthttp pools only a connection whose
// answer was read whole).
//
// The front door has no write timeout (a download may take as long as the
// caller keeps reading), so downloadBody sets one that moves: each time it
// hands Jira's bytes to fasthttp, the caller's connection gets a write
// deadline the idle timeout ahead, which covers the socket writes of those
// bytes. A caller who stops reading is cut off once its socket buffers are
// full and the idle timeout has passed: fasthttp's write fails, it closes
// the body (so the upstream connection and the slot are freed at once) and
// the caller's connection. (fasthttp's own WriteTimeout would bound the
// whole answer instead, and RequestCtx.SetWriteDeadline makes fasthttp
// flush under the deadline and clear it before the connection's next
// request.) A caller reading slower than one socket write of up to 32 KiB
// per idle timeout is cut off too.
type downloadBody struct {
	ctx     *fasthttp.RequestCtx
	idle    time.Duration
	resp    *fasthttp.Response
	bytes   *metrics.Counter
	release func()
}

func (b *downloadBody) Read(p []byte) (int, error) {
	if b.resp == nil {
		return 0, io.EOF
	}
	n, err := 0, io.EOF
	if bs := b.resp.BodyStream(); bs != nil {
		n, err = bs.Read(p)
		b.bytes.Add(n)
	} // else a body fasthttp read whole (small answers)
	if b.idle > 0 {
		// After Jira's read, so that a slow Jira does not eat into the
		// time the caller has to take the bytes.
		_ = b.ctx.SetWriteDeadline(time.Now().Add(b.idle))
	}
	return n, err
}

// Close gives the upstream response and the stream slot back.
func (b *downloadBody) Close() error {
	if b.resp != nil {
		_ = b.resp.CloseBodyStream()
		fasthttp.ReleaseResponse(b.resp)
		b.resp = nil
		b.ctx = nil
		b.release()
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
