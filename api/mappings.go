package api

import (
	"errors"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"strconv"

	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

type jiraBody struct {
	ID        string `json:"id"`
	Key       string `json:"key"`
	ProjectID string `json:"projectId"`
}

type mappingBody struct {
	ConversationID string   `json:"conversationId"`
	MailID         string   `json:"mailId"`
	UserID         string   `json:"userId"`
	App            string   `json:"app"`
	Jira           jiraBody `json:"jira"`
}

// LinkMapping: POST /v1/instances/{id}/mappings (client) links a mail to an issue.
func (a *API) LinkMapping(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	var b mappingBody
	if err := a.decodeJSON(ctx, limitSmallJSON, &b); err != nil {
		return err
	}
	m, created, err := a.store.LinkMapping(a.base, in.ID, store.Mapping{
		ConversationID: b.ConversationID, MailID: b.MailID, UserID: b.UserID, App: b.App,
		Jira: store.JiraRef{ID: b.Jira.ID, Key: b.Jira.Key, ProjectID: b.Jira.ProjectID},
	})
	if err != nil {
		return err
	}
	status := 200
	if created {
		status = 201
	}
	return httpx.WriteJSON(ctx, status, m)
}

type mappingsPage struct {
	Mappings []store.Mapping `json:"mappings"`
	Next     string          `json:"next"`
}

// FindMappings: GET /v1/instances/{id}/mappings (client) looks links up by one of conversationId, mailId, issueId, issueKey.
func (a *API) FindMappings(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	q, err := httpx.QueryArgs(ctx, store.ByConversation, store.ByMail, store.ByIssueID, store.ByIssueKey, "userId", "limit", "cursor")
	if err != nil {
		return err
	}
	var mq store.MappingQuery
	n := 0
	for _, by := range []string{store.ByConversation, store.ByMail, store.ByIssueID, store.ByIssueKey} {
		if v, ok := q[by]; ok {
			mq.By, mq.Value = by, v
			n++
		}
	}
	if n != 1 {
		return httpx.Err(400, "invalid_query", "give exactly one of conversationId, mailId, issueId, issueKey")
	}
	if v, ok := q["userId"]; ok {
		if v == "" {
			return httpx.Err(400, "invalid_query", "userId must not be empty")
		}
		mq.UserID = v
	}
	if v, ok := q["limit"]; ok {
		l, err := strconv.Atoi(v)
		if err != nil || l < 1 || l > store.MaxMappingsPage {
			return httpx.Err(400, "invalid_query", "limit must be a whole number from 1 to 1000")
		}
		mq.Limit = l
	}
	mq.Cursor = q["cursor"]
	ms, next, err := a.store.Mappings(a.base, in.ID, mq)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(ctx, 200, mappingsPage{Mappings: ms, Next: next})
}

type unlinkAnswer struct {
	Deleted int `json:"deleted"`
}

// UnlinkMappings: DELETE /v1/instances/{id}/mappings (client) removes the links of a mail to an issue.
func (a *API) UnlinkMappings(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	q, err := httpx.QueryArgs(ctx, store.ByMail, store.ByIssueID, "userId")
	if err != nil {
		return err
	}
	if q[store.ByMail] == "" || q[store.ByIssueID] == "" {
		return httpx.Err(400, "invalid_query", "give mailId and issueId (and optionally userId)")
	}
	if v, ok := q["userId"]; ok && v == "" {
		return httpx.Err(400, "invalid_query", "userId must not be empty")
	}
	n, err := a.store.UnlinkMappings(a.base, in.ID, q[store.ByMail], q[store.ByIssueID], q["userId"])
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return httpx.Err(404, "mapping_not_found", "no such link between this mail and issue")
		}
		return err
	}
	return httpx.WriteJSON(ctx, 200, unlinkAnswer{Deleted: n})
}
