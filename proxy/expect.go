package proxy

import (
	"bytes"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
)

// expect handles "Expect: 100-continue": for an upload it makes every
// header-only decision now, so a refused caller gets 401/404/413/429/503
// instead of "100 Continue" and never sends its body. An admitted upload's
// rate limits are charged once; its stream and breaker slots are taken only
// when the body comes.
func (s *Server) expect(ctx *fasthttp.RequestCtx) int {
	id, issue, ok := matchUploadPath(ctx.Request.URI().PathOriginal())
	if !ok || !ctx.IsPost() {
		return fasthttp.StatusContinue
	}
	start := time.Now()
	s.cors.handle(ctx)
	if _, err := s.planUpload(ctx, id, issue, true); err != nil {
		// The refusal is the whole exchange: it carries the request id and
		// gets its access line, as any other answer does.
		ctx.SetUserValue(router.MatchedRoutePathParam, uploadRoute)
		s.writeRefusal(ctx, err)
		stampRequestID(ctx)
		s.accessLog(ctx, uploadRoute, start)
		return ctx.Response.StatusCode()
	}
	return fasthttp.StatusContinue
}

// uploadRoute is the upload route's pattern, for logs and metrics.
const uploadRoute = "/v1/instances/{id}/issues/{issue}/attachments"

// matchUploadPath matches /v1/instances/{id}/issues/{issue}/attachments on
// the raw path and returns the two segments as sub-slices (no allocation).
func matchUploadPath(p []byte) (id, issue []byte, ok bool) {
	rest, found := bytes.CutPrefix(p, []byte("/v1/instances/"))
	if !found {
		return nil, nil, false
	}
	i := bytes.IndexByte(rest, '/')
	if i <= 0 {
		return nil, nil, false
	}
	id, rest = rest[:i], rest[i+1:]
	rest, found = bytes.CutPrefix(rest, []byte("issues/"))
	if !found {
		return nil, nil, false
	}
	issue, found = bytes.CutSuffix(rest, []byte("/attachments"))
	if !found || len(issue) == 0 || bytes.IndexByte(issue, '/') >= 0 {
		return nil, nil, false
	}
	return id, issue, true
}
