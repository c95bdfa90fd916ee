package api

import (
	"errors"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

type userBody struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// PutUser: PUT /v1/instances/{id}/users/{userId} (client) creates or replaces a user.
func (a *API) PutUser(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	uid, err := httpx.PathID(ctx, "userId")
	if err != nil {
		return err
	}
	var b userBody
	if err := a.decodeJSON(ctx, limitSmallJSON, &b); err != nil {
		return err
	}
	u, created, err := a.store.PutUser(a.base, in.ID, store.User{UserID: uid, Name: b.Name, Email: b.Email})
	if err != nil {
		return err
	}
	status := 200
	if created {
		status = 201
	}
	return httpx.WriteJSON(ctx, status, u)
}

// GetUser: GET /v1/instances/{id}/users/{userId} (client).
func (a *API) GetUser(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	uid, err := httpx.PathID(ctx, "userId")
	if err != nil {
		return err
	}
	u, err := a.store.User(a.base, in.ID, uid)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return httpx.Err(404, "user_not_found", "no user with this id")
		}
		return err
	}
	return httpx.WriteJSON(ctx, 200, u)
}

// DeleteUser: DELETE /v1/instances/{id}/users/{userId} (admin) erases a user and their mappings.
func (a *API) DeleteUser(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	uid, err := httpx.PathID(ctx, "userId")
	if err != nil {
		return err
	}
	if err := a.store.DeleteUser(a.base, in.ID, uid); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return httpx.Err(404, "user_not_found", "no user or mapping with this user id")
		}
		return err
	}
	ctx.SetStatusCode(204)
	return nil
}

// ExportUser: GET /v1/instances/{id}/users/{userId}/export (admin): everything held about a user.
func (a *API) ExportUser(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	uid, err := httpx.PathID(ctx, "userId")
	if err != nil {
		return err
	}
	exp, err := a.store.ExportUser(a.base, in.ID, uid)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return httpx.Err(404, "user_not_found", "nothing is held about this user id")
		}
		return err
	}
	return httpx.WriteJSON(ctx, 200, exp)
}
