package proxy

import (
	"encoding/json"
	"errors"

	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// writeJSON answers with status and v as JSON.
func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
