package proxy

import (
	"time"

	"github.com/jira-relay/jira-relay/internal/httpx"
	"github.com/jira-relay/jira-relay/relay"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// upload: POST /v1/instances/{id}/issues/{issueIdOrKey}/attachments. The
// caller is admitted and the headers checked once (here, or already in the
// Expect phase), then the relay streams.
func (s *Server) upload(ctx *fasthttp.RequestCtx, t relay.Target) {
	p := relay.Planned(ctx)
	if p == nil {
		p = new(relay.Plan)
		in, err := s.admit(ctx, t.Instance, store.RoleClient, true)
		if err == nil {
			err = s.relay.Check(ctx, in, t, p)
		}
		if err != nil {
			s.refuse(ctx, err)
			return
		}
	}
	if err := s.relay.Upload(ctx, p); err != nil {
		s.refuse(ctx, err)
	}
}

// uploadRouted is the upload route as the router sees it.
func (s *Server) uploadRouted(ctx *fasthttp.RequestCtx) {
	id, _ := ctx.UserValue("id").(string)
	issue, _ := ctx.UserValue("issue").(string)
	s.upload(ctx, relay.Target{Instance: []byte(id), Issue: []byte(issue)})
}

// expect handles "Expect: 100-continue": for an upload it makes every
// header-only decision now (admit, then relay.Check), so a refused caller
// gets 401/404/413/429/503 instead of "100 Continue" and never sends its
// body. The plan goes to the handler, so limits are charged once; the
// stream and breaker slots are taken only when the body comes.
func (s *Server) expect(ctx *fasthttp.RequestCtx) int {
	t, ok := relay.MatchUpload(ctx.Request.URI().PathOriginal())
	if !ok || !ctx.IsPost() {
		return fasthttp.StatusContinue
	}
	start := time.Now()
	var err error
	if fe := framingError(ctx); fe != nil {
		// Framing is judged before anything else, here as in handle.
		ctx.SetConnectionClose()
		err = fe
	} else {
		s.cors.handle(ctx, s.resp)
		var in *store.Instance
		if in, err = s.admit(ctx, t.Instance, store.RoleClient, true); err == nil {
			err = s.relay.Expect(ctx, in, t)
		}
	}
	if err != nil {
		// The refusal is the whole exchange: it carries the request id and
		// gets its access line, as any other answer does.
		httpx.SetRoute(ctx, relay.UploadRoute)
		s.resp.Fail(ctx, err)
		httpx.StampRequestID(ctx)
		s.accessLog(ctx, t.Instance, start)
		return ctx.Response.StatusCode()
	}
	return fasthttp.StatusContinue
}
