package proxy

import (
	"crypto/subtle"
	"time"

	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

type licenseBody struct {
	Key       *string    `json:"key"`
	ExpiresAt *time.Time `json:"expiresAt"`
	Seats     *int       `json:"seats"`
}

func (l *licenseBody) toStore() (*store.License, error) {
	if l == nil {
		return nil, nil
	}
	if l.Key == nil || l.ExpiresAt == nil || l.Seats == nil {
		return nil, newErr(400, "invalid_field", "license needs key, expiresAt and seats")
	}
	return &store.License{Key: *l.Key, ExpiresAt: *l.ExpiresAt, Seats: *l.Seats}, nil
}

type registerBody struct {
	URL          string       `json:"url"`
	JiraVersion  string       `json:"jiraVersion"`
	AddinVersion string       `json:"addinVersion"`
	License      *licenseBody `json:"license"`
}

type registerAnswer struct {
	InstanceID string             `json:"instanceId"`
	ClientKey  string             `json:"clientKey"`
	AdminKey   string             `json:"adminKey"`
	Instance   store.InstanceView `json:"instance"`
}

// registerInstance: POST /v1/instances. Open, or guarded by
// X-Registration-Token when --registration-token is set.
func (s *Server) registerInstance(ctx *fasthttp.RequestCtx) {
	if err := s.doRegister(ctx); err != nil {
		s.writeRefusal(ctx, err)
		lingerIfBodyUnread(ctx)
	}
}

func (s *Server) doRegister(ctx *fasthttp.RequestCtx) error {
	if tok := s.cfg.RegistrationToken; tok != "" {
		got := ctx.Request.Header.Peek("X-Registration-Token")
		if subtle.ConstantTimeCompare(got, []byte(tok)) != 1 {
			return newErr(401, "unauthorized", "missing or wrong X-Registration-Token")
		}
	}
	var b registerBody
	if err := s.decodeJSON(ctx, limitSmallJSON, &b); err != nil {
		return err
	}
	u, aerr := s.urls.normalize(b.URL)
	if aerr != nil {
		return aerr
	}
	lic, err := b.License.toStore()
	if err != nil {
		return err
	}
	reg, err := s.store.Register(s.base, store.NewInstance{URL: u, JiraVersion: b.JiraVersion, AddinVersion: b.AddinVersion, License: lic})
	if err != nil {
		return err
	}
	return writeJSON(ctx, 201, registerAnswer{
		InstanceID: reg.Instance.ID, ClientKey: reg.ClientKey, AdminKey: reg.AdminKey, Instance: reg.Instance.View(),
	})
}

func (s *Server) getInstance(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	return writeJSON(ctx, 200, in.View())
}

type patchBody struct {
	JiraVersion  *string      `json:"jiraVersion"`
	AddinVersion *string      `json:"addinVersion"`
	License      *licenseBody `json:"license"`
	ErrorReports *bool        `json:"errorReports"`
}

func (s *Server) patchInstance(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	var b patchBody
	if err := s.decodeJSON(ctx, limitSmallJSON, &b); err != nil {
		return err
	}
	lic, err := b.License.toStore()
	if err != nil {
		return err
	}
	out, err := s.store.PatchInstance(s.base, in.ID, store.InstancePatch{
		JiraVersion: b.JiraVersion, AddinVersion: b.AddinVersion, License: lic, ErrorReports: b.ErrorReports,
	})
	if err != nil {
		return err
	}
	return writeJSON(ctx, 200, out.View())
}

func (s *Server) deleteInstance(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	if err := s.store.DeleteInstance(s.base, in.ID); err != nil {
		return err
	}
	ctx.SetStatusCode(204)
	return nil
}

type rotateAnswer struct {
	InstanceID string `json:"instanceId"`
	ClientKey  string `json:"clientKey"`
}

func (s *Server) rotateKey(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	key, _, err := s.store.RotateClientKey(s.base, in.ID)
	if err != nil {
		return err
	}
	return writeJSON(ctx, 200, rotateAnswer{InstanceID: in.ID, ClientKey: key})
}
