// Package api is the relay's /v1 JSON data API: instances (registration,
// licence, keys), users, the admin's configuration, mappings between
// Outlook mails and Jira issues, and error reports. It decodes bodies
// strictly (exact field names, no duplicates, bounded size and depth),
// applies the instance URL policy at registration and scrubs error reports
// (api/scrub) before they are stored.
//
// Handlers return errors; the front door (proxy) authenticates the caller
// before a handler runs and turns every error into an answer in one place
// (internal/httpx).
package api

import (
	"context"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/store"
)

// API holds the data handlers' dependencies.
type API struct {
	cfg   configs.Config
	store *store.Store
	urls  normalizer
	// base is the parent of every store call's context. Never the request
	// context: fasthttp reuses a RequestCtx after its handler returns, while
	// a context's timer may still look at its parent.
	base context.Context
}

// normalizer is the instance URL policy (internal/instanceurl): it turns a
// URL a caller sent into the one form the store keeps, or refuses it with
// a message for the caller.
type normalizer interface {
	Normalize(raw string) (string, error)
}

// New builds the data API over a store. cfg must have passed Validate.
func New(cfg configs.Config, st *store.Store, urls normalizer) *API {
	return &API{cfg: cfg, store: st, urls: urls, base: context.Background()}
}
