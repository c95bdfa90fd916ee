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
// key is needed → 403, over a limit → 429, a record that does not decode →
// 500 record_corrupt (with a placeholder instance holding only the id, when
// the key still matched: see withRole's mayBeCorrupt). Failed key checks
// are limited per address before any etcd read. On the attachment routes
// (attachments), a Server or Data Center tenant gets 409
// attachments_direct before any limit is charged.
func (s *Server) admit(ctx *fasthttp.RequestCtx, id []byte, need store.Role, attachments bool) (*store.Instance, error) {
	if err := s.limits.authBlocked(ctx); err != nil {
		return nil, err
	}
	in, role, err := s.store.Authenticate(s.base, id, ctx.Request.Header.Peek("X-Relay-Key"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, s.limits.authFailed(ctx, httpx.ErrInstanceUnknown)
	case errors.Is(err, store.ErrCorrupt) && role == store.RoleNone:
		// What is left of the record does not match the key (or holds no
		// key hash at all): to the caller, a wrong key, limited as one.
		return nil, s.limits.authFailed(ctx, httpx.ErrUnauthorized)
	case errors.Is(err, store.ErrCorrupt) && role < need:
		return nil, s.forbidden(ctx)
	case errors.Is(err, store.ErrCorrupt):
		// The key matched what is left of a record that does not decode:
		// only a route that tolerates that (the erase) may go on.
		if err := s.charge(ctx, string(id)); err != nil {
			return nil, err
		}
		return &store.Instance{ID: string(id)}, err
	case err != nil:
		return nil, err
	case role == store.RoleNone:
		return nil, s.limits.authFailed(ctx, httpx.ErrUnauthorized)
	case role < need:
		return nil, s.forbidden(ctx)
	case attachments && !in.Relayed():
		return nil, errAttachmentsDirect
	}
	if err := s.charge(ctx, in.ID); err != nil {
		return nil, err
	}
	return in, nil
}

// charge charges an admitted request to the caller's address and the
// instance.
func (s *Server) charge(ctx *fasthttp.RequestCtx, instanceID string) error {
	if err := s.limits.address(ctx); err != nil {
		return err
	}
	return s.limits.tenant(instanceID)
}

// errAttachmentsDirect answers an attachment route of a Server or Data
// Center tenant: the relay never connects to such a Jira.
var errAttachmentsDirect = httpx.Err(409, "attachments_direct",
	"this instance is Jira Server / Data Center: the add-in sends attachments to Jira itself; the relay carries attachments for Jira Cloud only")

// forbidden answers a key of too weak a role, charged to the caller's
// address like any other request.
func (s *Server) forbidden(ctx *fasthttp.RequestCtx) error {
	if err := s.limits.address(ctx); err != nil {
		return err
	}
	return httpx.ErrForbidden
}
