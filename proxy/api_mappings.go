package proxy

import (
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

func (s *Server) linkMapping(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	var b mappingBody
	if err := s.decodeJSON(ctx, limitSmallJSON, &b); err != nil {
		return err
	}
	m, created, err := s.store.LinkMapping(s.base, in.ID, store.Mapping{
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
	return writeJSON(ctx, status, m)
}

// queryArgs reads the query string strictly: only the named parameters, each
// at most once.
func queryArgs(ctx *fasthttp.RequestCtx, allowed ...string) (map[string]string, error) {
	out := map[string]string{}
	var bad error
	ctx.QueryArgs().VisitAll(func(k, v []byte) {
		if bad != nil {
			return
		}
		key := string(k)
		ok := false
		for _, a := range allowed {
			ok = ok || a == key
		}
		switch {
		case !ok:
			bad = newErr(400, "unknown_parameter", "query parameter "+strconv.Quote(key)+" is not accepted here")
		case out[key] != "" || (len(v) == 0 && hasKey(out, key)):
			bad = newErr(400, "duplicate_parameter", "query parameter "+strconv.Quote(key)+" is given twice")
		default:
			out[key] = string(v)
		}
	})
	return out, bad
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

type mappingsPage struct {
	Mappings []store.Mapping `json:"mappings"`
	Next     string          `json:"next"`
}

func (s *Server) findMappings(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	q, err := queryArgs(ctx, store.ByConversation, store.ByMail, store.ByIssueID, store.ByIssueKey, "userId", "limit", "cursor")
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
		return newErr(400, "invalid_query", "give exactly one of conversationId, mailId, issueId, issueKey")
	}
	if v, ok := q["userId"]; ok {
		if v == "" {
			return newErr(400, "invalid_query", "userId must not be empty")
		}
		mq.UserID = v
	}
	if v, ok := q["limit"]; ok {
		l, err := strconv.Atoi(v)
		if err != nil || l < 1 || l > store.MaxMappingsPage {
			return newErr(400, "invalid_query", "limit must be a whole number from 1 to 1000")
		}
		mq.Limit = l
	}
	mq.Cursor = q["cursor"]
	ms, next, err := s.store.Mappings(s.base, in.ID, mq)
	if err != nil {
		return err
	}
	return writeJSON(ctx, 200, mappingsPage{Mappings: ms, Next: next})
}

type unlinkAnswer struct {
	Deleted int `json:"deleted"`
}

func (s *Server) unlinkMappings(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	q, err := queryArgs(ctx, store.ByMail, store.ByIssueID, "userId")
	if err != nil {
		return err
	}
	if q[store.ByMail] == "" || q[store.ByIssueID] == "" {
		return newErr(400, "invalid_query", "give mailId and issueId (and optionally userId)")
	}
	if v, ok := q["userId"]; ok && v == "" {
		return newErr(400, "invalid_query", "userId must not be empty")
	}
	n, err := s.store.UnlinkMappings(s.base, in.ID, q[store.ByMail], q[store.ByIssueID], q["userId"])
	if err != nil {
		if isNotFound(err) {
			return newErr(404, "mapping_not_found", "no such link between this mail and issue")
		}
		return err
	}
	return writeJSON(ctx, 200, unlinkAnswer{Deleted: n})
}
