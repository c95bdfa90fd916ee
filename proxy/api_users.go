package proxy

import (
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

type userBody struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

func (s *Server) putUser(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	uid, err := pathID(ctx, "userId")
	if err != nil {
		return err
	}
	var b userBody
	if err := s.decodeJSON(ctx, limitSmallJSON, &b); err != nil {
		return err
	}
	u, created, err := s.store.PutUser(s.base, in.ID, store.User{UserID: uid, Name: b.Name, Email: b.Email})
	if err != nil {
		return err
	}
	status := 200
	if created {
		status = 201
	}
	return writeJSON(ctx, status, u)
}

func (s *Server) getUser(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	uid, err := pathID(ctx, "userId")
	if err != nil {
		return err
	}
	u, err := s.store.User(s.base, in.ID, uid)
	if err != nil {
		if isNotFound(err) {
			return newErr(404, "user_not_found", "no user with this id")
		}
		return err
	}
	return writeJSON(ctx, 200, u)
}

func (s *Server) deleteUser(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	uid, err := pathID(ctx, "userId")
	if err != nil {
		return err
	}
	if err := s.store.DeleteUser(s.base, in.ID, uid); err != nil {
		if isNotFound(err) {
			return newErr(404, "user_not_found", "no user or mapping with this user id")
		}
		return err
	}
	ctx.SetStatusCode(204)
	return nil
}

func (s *Server) exportUser(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	uid, err := pathID(ctx, "userId")
	if err != nil {
		return err
	}
	exp, err := s.store.ExportUser(s.base, in.ID, uid)
	if err != nil {
		if isNotFound(err) {
			return newErr(404, "user_not_found", "nothing is held about this user id")
		}
		return err
	}
	return writeJSON(ctx, 200, exp)
}
