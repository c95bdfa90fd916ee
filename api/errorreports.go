package api

import (
	"github.com/jira-relay/jira-relay/internal/httpx"
	"strconv"
	"unicode/utf8"

	"github.com/jira-relay/jira-relay/api/scrub"
	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// limitErrorReport bounds an error report's JSON body.
const limitErrorReport = 64 << 10

type errorReportBody struct {
	Message      string         `json:"message"`
	Stack        string         `json:"stack"`
	AddinVersion string         `json:"addinVersion"`
	Context      map[string]any `json:"context"`
}

type errorReportAnswer struct {
	ID string `json:"id"`
}

// AddErrorReport: POST /v1/instances/{id}/error-reports (client key). Only
// when the instance's admin turned errorReports on; the text is scrubbed of
// e-mail addresses, credentials, URL query strings and long digit runs
// before it is stored, and it expires after --error-report-ttl.
func (a *API) AddErrorReport(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	if !in.ErrorReports {
		return httpx.Err(403, "error_reports_off", "this instance's admin has not turned error reports on")
	}
	var b errorReportBody
	if err := a.decodeJSON(ctx, limitErrorReport, &b); err != nil {
		return err
	}
	if b.Message == "" || utf8.RuneCountInString(b.Message) > 8192 {
		return httpx.Err(400, "invalid_field", "message is required (at most 8192 characters)")
	}
	if len(b.AddinVersion) > 64 {
		return httpx.Err(400, "invalid_field", "addinVersion is at most 64 characters")
	}
	r := store.ErrorReport{
		Message:      scrub.String(b.Message),
		Stack:        scrub.String(b.Stack),
		AddinVersion: scrub.String(b.AddinVersion),
	}
	if b.Context != nil {
		r.Context, _ = scrub.Value(b.Context).(map[string]any)
	}
	out, err := a.store.AddErrorReport(a.base, in.ID, r, a.cfg.ErrorReportTTL)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(ctx, 201, errorReportAnswer{ID: out.ID})
}

type errorReportsPage struct {
	Reports []store.ErrorReport `json:"reports"`
	Next    string              `json:"next"`
}

// ListErrorReports: GET /v1/instances/{id}/error-reports (admin).
func (a *API) ListErrorReports(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	q, err := httpx.QueryArgs(ctx, "limit", "cursor")
	if err != nil {
		return err
	}
	limit := 0
	if v, ok := q["limit"]; ok {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
			return httpx.Err(400, "invalid_query", "limit must be a whole number from 1 to 1000")
		}
	}
	rs, next, err := a.store.ErrorReports(a.base, in.ID, limit, q["cursor"])
	if err != nil {
		return err
	}
	return httpx.WriteJSON(ctx, 200, errorReportsPage{Reports: rs, Next: next})
}
