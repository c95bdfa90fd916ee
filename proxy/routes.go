package proxy

import (
	"errors"
	"github.com/fasthttp/router"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"github.com/jira-relay/jira-relay/relay"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

func (s *Server) routes() *router.Router {
	r := router.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleOPTIONS = false
	r.SaveMatchedRoutePath = true
	r.NotFound = s.open(func(*fasthttp.RequestCtx) error { return httpx.ErrRouteNotFound })
	r.MethodNotAllowed = s.open(func(*fasthttp.RequestCtx) error { return httpx.ErrMethod })

	r.GET("/healthz", s.healthz)
	r.GET("/readyz", s.open(bareOpen(s.readyz)))

	a := s.api
	r.POST("/v1/instances", s.registration(bareOpen(a.RegisterInstance)))
	r.GET("/v1/instances/{id}", s.admin(bare(a.GetInstance)))
	r.PATCH("/v1/instances/{id}", s.admin(bare(a.PatchInstance)))
	// The erase works on a record that no longer decodes, as long as the
	// admin key still matches what is left of it.
	r.DELETE("/v1/instances/{id}", s.withRole(store.RoleAdmin, true, false, bare(a.DeleteInstance)))
	r.POST("/v1/instances/{id}/keys/rotate", s.admin(bare(a.RotateKey)))

	r.PUT("/v1/instances/{id}/users/{userId}", s.client(bare(a.PutUser)))
	r.GET("/v1/instances/{id}/users/{userId}", s.client(bare(a.GetUser)))
	r.DELETE("/v1/instances/{id}/users/{userId}", s.admin(bare(a.DeleteUser)))
	r.GET("/v1/instances/{id}/users/{userId}/export", s.admin(bare(a.ExportUser)))

	r.GET("/v1/instances/{id}/config", s.client(bare(a.GetConfig)))
	r.PUT("/v1/instances/{id}/config", s.admin(bare(a.PutConfig)))

	r.POST("/v1/instances/{id}/mappings", s.client(bare(a.LinkMapping)))
	r.GET("/v1/instances/{id}/mappings", s.client(a.FindMappings))
	r.DELETE("/v1/instances/{id}/mappings", s.client(a.UnlinkMappings))

	r.POST("/v1/instances/{id}/error-reports", s.client(bare(a.AddErrorReport)))
	r.GET("/v1/instances/{id}/error-reports", s.admin(a.ListErrorReports))

	// The upload route is matched by hand in handle; the router only lists
	// it (for the OpenAPI test), and a request reaches it only if handle's
	// match and the router's ever disagreed.
	r.POST(relay.UploadRoute, s.uploadRouted)
	r.GET(relay.DownloadRoute, s.withRole(store.RoleClient, false, true, s.relay.Download))
	return r
}

// Routes lists the API's routes, method → path patterns (for the OpenAPI
// document's test).
func (s *Server) Routes() map[string][]string { return s.router.List() }

// bare refuses any query parameter before h (which reads none):
// 400 unknown_parameter, as on every route.
func bare(h instanceHandler) instanceHandler {
	return func(ctx *fasthttp.RequestCtx, in *store.Instance) error {
		if err := httpx.NoQuery(ctx); err != nil {
			return err
		}
		return h(ctx, in)
	}
}

// bareOpen is bare for a handler that needs no key.
func bareOpen(h func(*fasthttp.RequestCtx) error) func(*fasthttp.RequestCtx) error {
	b := bare(func(ctx *fasthttp.RequestCtx, _ *store.Instance) error { return h(ctx) })
	return func(ctx *fasthttp.RequestCtx) error { return b(ctx, nil) }
}

// instanceHandler is a handler that runs after the caller's key was checked.
type instanceHandler func(ctx *fasthttp.RequestCtx, in *store.Instance) error

func (s *Server) client(h instanceHandler) fasthttp.RequestHandler {
	return s.withRole(store.RoleClient, false, false, h)
}

func (s *Server) admin(h instanceHandler) fasthttp.RequestHandler {
	return s.withRole(store.RoleAdmin, false, false, h)
}

// withRole runs h for a caller who holds the role's key, within the limits
// of its address and its instance. With mayBeCorrupt, h also runs for an
// instance whose record does not decode (it gets only the id); attachments
// marks the attachment routes (see admit).
func (s *Server) withRole(need store.Role, mayBeCorrupt, attachments bool, h instanceHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		id, _ := ctx.UserValue("id").(string)
		in, err := s.admit(ctx, []byte(id), need, attachments)
		if mayBeCorrupt && in != nil && errors.Is(err, store.ErrCorrupt) {
			err = nil
		}
		if err == nil {
			err = h(ctx, in)
		}
		if err != nil {
			s.refuse(ctx, err)
		}
	}
}

// open runs h for anyone, within the limit of the caller's address.
func (s *Server) open(h func(*fasthttp.RequestCtx) error) fasthttp.RequestHandler {
	return s.charged(s.limits.address, h)
}

// registration runs h within the registration limit of the caller's
// address (tighter than the limit of other routes).
func (s *Server) registration(h func(*fasthttp.RequestCtx) error) fasthttp.RequestHandler {
	return s.charged(s.limits.register, h)
}

// charged runs h once charge admits the request.
func (s *Server) charged(charge, h func(*fasthttp.RequestCtx) error) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		err := charge(ctx)
		if err == nil {
			err = h(ctx)
		}
		if err != nil {
			s.refuse(ctx, err)
		}
	}
}

// refuse answers err and, when the caller may still be sending a body the
// handler did not read, closes the connection after a lingering read.
func (s *Server) refuse(ctx *fasthttp.RequestCtx, err error) {
	s.resp.Fail(ctx, err)
	httpx.LingerIfBodyUnread(ctx)
}
