package relay

import (
	"bytes"
	"errors"
	"mime"
	"net/url"

	"github.com/jira-relay/jira-relay/internal/fleet"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"github.com/jira-relay/jira-relay/relay/upload"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// bodyKind is how an upload's body reaches the relay.
type bodyKind int

const (
	bodyMultipart bodyKind = iota // multipart/form-data, passed through byte for byte
	bodyRaw                       // the file itself, wrapped into one part named "file"
	bodyBase64                    // the file as base64 (Office.js), decoded while streaming
)

// Plan is everything the check step decided from an upload's headers:
// where it goes, how its body is shaped and how long it says it is. It
// holds no slot: the acquire step takes those when the body comes.
type Plan struct {
	in     *store.Instance
	up     *upstream
	issue  string
	kind   bodyKind
	part   upload.Part // raw and base64 bodies
	length int64       // the caller's Content-Length, -1 when chunked
}

// Check makes every decision an upload's headers allow, in one pass and
// without taking anything that must be given back: 400, 401, 411, 413, 429,
// 502 and 503 all happen here, before the body is read. The Expect phase
// uses it unchanged. It reads the request's shape first (shape), then asks
// the guards (admit). It charges nothing: the per-issue write is charged by
// acquire, once the stream slot and the breaker ticket are taken.
func (r *Relay) Check(ctx *fasthttp.RequestCtx, in *store.Instance, t Target, p *Plan) error {
	if err := r.shape(ctx, in, t, p); err != nil {
		return err
	}
	return r.admit(p)
}

// admit asks the guards about a shaped upload: the instance's upstream
// (502 when its URL is no longer allowed), Jira's cool-down, the breaker,
// the streams in flight and Jira's per-issue write limit, charging none of
// them. It makes no allocation once the upstream and the limiter entries
// exist.
func (r *Relay) admit(p *Plan) error {
	var err error
	if p.up, err = r.ups.get(p.in.ID, p.in.URL); err != nil {
		return err
	}
	if err := r.guards.cooling(p.in.ID, fleet.Upload, p.issue); err != nil {
		return err
	}
	if err := p.up.refusal(r.cfg.BreakerOpenTimeout); err != nil {
		return err
	}
	if err := r.guards.streamsFull(p.in.ID); err != nil {
		return err
	}
	return r.guards.issueRoom(p.in.ID, p.issue)
}

var errMissingAuthorization = httpx.Err(401, "missing_authorization",
	"send the user's Jira credential in Authorization; the relay passes it to Jira unchanged")

// shape reads what the upload's headers say: the issue, the caller's
// credential, the declared length, the body kind, and the file name and
// part type (validated here, once). A declared size over the limit is
// refused.
func (r *Relay) shape(ctx *fasthttp.RequestCtx, in *store.Instance, t Target, p *Plan) error {
	issue, err := issueParam(t.Issue)
	if err != nil {
		return err
	}
	if len(ctx.Request.Header.Peek("Authorization")) == 0 {
		return errMissingAuthorization
	}
	*p = Plan{in: in, issue: issue, length: int64(ctx.Request.Header.ContentLength())}
	if p.length < 0 {
		p.length = -1
	}
	if p.length == 0 && !declaresLength(ctx) {
		// No body at all is a caller's mistake (a file of 0 bytes says
		// Content-Length: 0): Jira would get an empty attachment.
		return httpx.Err(411, "length_required", "send the file with a Content-Length (or chunked); an upload without a body is refused")
	}
	q, err := httpx.QueryArgs(ctx, "filename", "encoding")
	if err != nil {
		return err
	}
	ct := string(ctx.Request.Header.ContentType())
	mt, params, _ := mime.ParseMediaType(ct)
	multipart := mt == "multipart/form-data"
	switch enc, ok := q["encoding"]; {
	case ok && enc != "base64":
		return httpx.Err(400, "invalid_query", `encoding must be "base64" or absent`)
	case ok:
		p.kind = bodyBase64
	case multipart:
		if b := params["boundary"]; b == "" || len(b) > 70 {
			return httpx.Err(400, "invalid_multipart", "multipart/form-data needs a boundary of 1 to 70 characters")
		}
		p.kind = bodyMultipart
	default:
		p.kind = bodyRaw
	}
	if p.kind != bodyMultipart {
		if multipart {
			return httpx.Err(400, "invalid_content_type", "a base64 body is the file itself, not multipart/form-data")
		}
		name, ok := q["filename"]
		if !ok {
			cd := ctx.Request.Header.Peek("Content-Disposition")
			if len(cd) == 0 {
				return httpx.Err(400, "missing_filename", "give the file name as ?filename= or in Content-Disposition")
			}
			if name, err = upload.FilenameFromContentDisposition(string(cd)); err != nil {
				return httpx.Err(400, "invalid_filename", "Content-Disposition has no usable filename")
			}
		}
		part, err := upload.ParsePart(name, ct)
		switch {
		case errors.Is(err, upload.ErrBadFilename):
			return httpx.Err(400, "invalid_filename", "filename must be 1 to 255 characters of valid UTF-8")
		case err != nil:
			return httpx.Err(400, "invalid_content_type", "Content-Type is not a valid media type")
		}
		p.part = part
	}
	limit := r.cfg.MaxAttachmentBytes
	if p.kind == bodyBase64 {
		limit = base64Budget(limit)
	}
	if p.length > limit {
		return &httpx.BodyFailure{Fault: httpx.BodyTooLarge, Limit: r.cfg.MaxAttachmentBytes, Err: upload.ErrTooLarge}
	}
	return nil
}

// base64Budget is the most base64 text a file of max bytes can take,
// allowing line breaks every 76 characters (MIME style).
func base64Budget(max int64) int64 {
	enc := (max + 2) / 3 * 4
	return enc + enc/76*2 + 4
}

// issueParam decodes and validates {issueIdOrKey}: Jira's key form or digits,
// so that nothing can reach another Jira path.
func issueParam(raw []byte) (string, error) {
	v, err := url.PathUnescape(string(raw))
	if err != nil || !store.ValidIssueIDOrKey(v) {
		return "", httpx.Err(400, "invalid_issue", "issueIdOrKey must be an issue key like ABC-123 or a numeric id")
	}
	return v, nil
}

// declaresLength reports whether the request carried a Content-Length or a
// Transfer-Encoding header. Without either its body is empty (RFC 9112
// §6.3), and fasthttp then reports a Content-Length of 0 as if one had been
// sent; an upload needs to tell the two apart.
func declaresLength(ctx *fasthttp.RequestCtx) bool {
	found := false
	httpx.HeaderLines(ctx.Request.Header.RawHeaders(), func(name, _ []byte) bool {
		found = bytes.EqualFold(name, []byte("Content-Length")) || bytes.EqualFold(name, []byte("Transfer-Encoding"))
		return !found
	})
	return found
}
