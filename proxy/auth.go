package proxy

import (
	"errors"

	"github.com/jira-relay/jira-relay/internal/httpx"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// admit authenticates the caller for the instance named in the path and
// charges the request to the caller's address and to the instance: unknown
// instance → 404, missing or wrong key → 401, a client key where the admin
// key is needed → 403, over a limit → 429. Failed key checks are limited per
// address before any etcd read.
func (s *Server) admit(ctx *fasthttp.RequestCtx, id []byte, need store.Role) (*store.Instance, error) {
	if err := s.limits.authBlocked(ctx); err != nil {
		return nil, err
	}
	in, role, err := s.store.Authenticate(s.base, id, ctx.Request.Header.Peek("X-Relay-Key"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, s.limits.authFailed(ctx, httpx.ErrInstanceUnknown)
	case err != nil:
		return nil, err
	case role == store.RoleNone:
		return nil, s.limits.authFailed(ctx, httpx.ErrUnauthorized)
	case role < need:
		return nil, httpx.ErrForbidden
	}
	if err := s.limits.address(ctx); err != nil {
		return nil, err
	}
	if err := s.limits.tenant(in.ID); err != nil {
		return nil, err
	}
	return in, nil
}
