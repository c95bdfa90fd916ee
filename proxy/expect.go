package proxy

import (
	"bytes"

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
	ctx.SetUserValue("id", id)
	ctx.SetUserValue("issue", issue)
	s.cors.handle(ctx)
	if _, err := s.planUpload(ctx, true); err != nil {
		s.writeRefusal(ctx, err)
		return ctx.Response.StatusCode()
	}
	return fasthttp.StatusContinue
}

// matchUploadPath matches /v1/instances/{id}/issues/{issue}/attachments.
func matchUploadPath(p []byte) (id, issue string, ok bool) {
	rest, found := bytes.CutPrefix(p, []byte("/v1/instances/"))
	if !found {
		return "", "", false
	}
	parts := bytes.Split(rest, []byte("/"))
	if len(parts) != 4 || string(parts[1]) != "issues" || string(parts[3]) != "attachments" || len(parts[0]) == 0 || len(parts[2]) == 0 {
		return "", "", false
	}
	return string(parts[0]), string(parts[2]), true
}
