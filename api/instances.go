package api

import (
	"crypto/subtle"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"github.com/jira-relay/jira-relay/internal/instanceurl"
	"regexp"
	"strings"
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
		return nil, httpx.Err(400, "invalid_field", "license needs key, expiresAt and seats")
	}
	return &store.License{Key: *l.Key, ExpiresAt: *l.ExpiresAt, Seats: *l.Seats}, nil
}

type registerBody struct {
	URL string `json:"url"`
	// DeploymentType: "Cloud" (when absent), "Server" or "DataCenter".
	DeploymentType *string `json:"deploymentType"`
	// CloudID: a Cloud site's cloud id (a UUID), optional; "" is refused.
	CloudID      *string      `json:"cloudId"`
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

// RegisterInstance: POST /v1/instances. Open, or guarded by
// X-Registration-Token when --registration-token is set.
func (a *API) RegisterInstance(ctx *fasthttp.RequestCtx) error {
	if tok := a.cfg.RegistrationToken; tok != "" {
		got := ctx.Request.Header.Peek("X-Registration-Token")
		if subtle.ConstantTimeCompare(got, []byte(tok)) != 1 {
			return httpx.Err(401, "unauthorized", "missing or wrong X-Registration-Token")
		}
	}
	var b registerBody
	if err := a.decodeJSON(ctx, limitSmallJSON, &b); err != nil {
		return err
	}
	deployment := store.DeploymentCloud
	if b.DeploymentType != nil {
		if !store.ValidDeployment(*b.DeploymentType) {
			return httpx.Err(400, "invalid_field", `deploymentType must be "Cloud", "Server" or "DataCenter" (as Jira spells it)`)
		}
		deployment = *b.DeploymentType
	}
	u, err := a.instanceURL(deployment, b.URL)
	if err != nil {
		return err
	}
	lic, err := b.License.toStore()
	if err != nil {
		return err
	}
	cloudID, err := a.cloudID(deployment, u, b.CloudID)
	if err != nil {
		return err
	}
	reg, err := a.store.Register(a.base, store.NewInstance{URL: u, DeploymentType: deployment, CloudID: cloudID, JiraVersion: b.JiraVersion, AddinVersion: b.AddinVersion, License: lic})
	if err != nil {
		return err
	}
	view, err := reg.Instance.View()
	if err != nil {
		return err
	}
	return httpx.WriteJSON(ctx, 201, registerAnswer{
		InstanceID: reg.Instance.ID, ClientKey: reg.ClientKey, AdminKey: reg.AdminKey, Instance: view,
	})
}

// GetInstance: GET /v1/instances/{id} (admin). A licence sealed with a key
// this relay's key file does not list → 500 encryption_key_missing.
func (a *API) GetInstance(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	view, err := in.View()
	if err != nil {
		return err
	}
	return httpx.WriteJSON(ctx, 200, view)
}

type patchBody struct {
	JiraVersion  *string      `json:"jiraVersion"`
	AddinVersion *string      `json:"addinVersion"`
	License      *licenseBody `json:"license"`
	ErrorReports *bool        `json:"errorReports"`
	// URL renames the site (Atlassian lets a Cloud admin rename it; the
	// cloud id stays).
	URL *string `json:"url"`
	// CloudID may only be sent as it is.
	CloudID *string `json:"cloudId"`
	// MappingRetentionDays is the tenant's own mapping retention in whole
	// days, 0 (keep forever) to 3650; it replaces --mapping-retention.
	MappingRetentionDays *int `json:"mappingRetentionDays"`
}

// PatchInstance: PATCH /v1/instances/{id} (admin) changes versions, licence,
// the error-report switch, the mapping retention, or the site's URL (a rename: 409 url_taken when
// another tenant holds it, and a Cloud URL must pass the policy).
func (a *API) PatchInstance(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	var b patchBody
	if err := a.decodeJSON(ctx, limitSmallJSON, &b); err != nil {
		return err
	}
	lic, err := b.License.toStore()
	if err != nil {
		return err
	}
	if lic == nil {
		// The answer shows the licence: one this relay cannot open fails
		// the request before anything is written.
		if err := in.LicenseError(); err != nil {
			return err
		}
	}
	if b.URL != nil {
		u, err := a.instanceURL(in.Deployment(), *b.URL)
		if err != nil {
			return err
		}
		// A rename cannot move a tenant onto another Jira: a URL that names
		// a cloud id must name the tenant's own.
		if id, ok := urlCloudID(u); ok && in.Deployment() == store.DeploymentCloud && id != in.CloudID {
			return httpx.Err(400, "invalid_url", "the new URL names another cloud id than this instance's: a rename cannot move a tenant onto another Jira")
		}
		b.URL = &u
	}
	out, err := a.store.PatchInstance(a.base, in.ID, store.InstancePatch{
		JiraVersion: b.JiraVersion, AddinVersion: b.AddinVersion, License: lic, ErrorReports: b.ErrorReports,
		URL: b.URL, CloudID: b.CloudID, MappingRetentionDays: b.MappingRetentionDays,
	})
	if err != nil {
		return err
	}
	view, err := out.View()
	if err != nil {
		return err
	}
	return httpx.WriteJSON(ctx, 200, view)
}

// DeleteInstance: DELETE /v1/instances/{id} (admin) erases the tenant and everything held for it.
func (a *API) DeleteInstance(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	if err := a.store.DeleteInstance(a.base, in.ID); err != nil {
		return err
	}
	ctx.SetStatusCode(204)
	return nil
}

type rotateAnswer struct {
	InstanceID string `json:"instanceId"`
	ClientKey  string `json:"clientKey"`
}

// RotateKey: POST /v1/instances/{id}/keys/rotate (admin) replaces the client key.
func (a *API) RotateKey(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	key, _, err := a.store.RotateClientKey(a.base, in.ID)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(ctx, 200, rotateAnswer{InstanceID: in.ID, ClientKey: key})
}

// instanceURL normalises a tenant's Jira URL: a Cloud site's must pass the
// upstream policy (--allowed-upstreams, https unless --allow-http-upstream),
// since the relay connects to it; a Server or Data Center URL needs only a
// clean shape (http or https, no user info, query, fragment or odd path
// segments), since the relay never connects to it.
func (a *API) instanceURL(deployment, raw string) (string, error) {
	var u string
	var err error
	if deployment == store.DeploymentCloud {
		u, err = a.urls.Normalize(raw)
	} else {
		u, err = instanceurl.Canonical(raw)
	}
	if err != nil {
		return "", httpx.Err(400, "invalid_url", err.Error())
	}
	return u, nil
}

// cloudID is the cloud id a registration keeps: the one given, or the one
// an api.atlassian.com/ex/jira/<cloudId> URL names. When both are there
// they must agree, so one Cloud site cannot become two tenants.
func (a *API) cloudID(deployment, url string, given *string) (string, error) {
	fromURL, inURL := urlCloudID(url)
	switch {
	case given == nil && inURL && deployment == store.DeploymentCloud:
		return fromURL, nil
	case given == nil:
		return "", nil
	case *given == "":
		return "", httpx.Err(400, "invalid_field", "cloudId must be a UUID, or absent")
	case inURL && !strings.EqualFold(*given, fromURL):
		return "", httpx.Err(400, "invalid_field", "cloudId differs from the cloud id in the url")
	}
	return *given, nil
}

// urlCloudID is the cloud id an api.atlassian.com/ex/jira/<cloudId> URL
// names (lower case), as the normalised URL holds it.
func urlCloudID(url string) (string, bool) {
	rest, ok := strings.CutPrefix(url, "https://api.atlassian.com/ex/jira/")
	if !ok || !uuidShape.MatchString(rest) {
		return "", false
	}
	return strings.ToLower(rest), true
}

var uuidShape = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
