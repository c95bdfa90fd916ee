package api

import (
	"bytes"
	"encoding/json"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"strconv"
	"strings"

	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// etag is the strong ETag of a configuration revision: "<revision>".
func etag(rev int64) string { return `"` + strconv.FormatInt(rev, 10) + `"` }

// parseETags splits an If-Match / If-None-Match value. Weak tags are
// returned with their W/ prefix (they never match strongly).
func parseETags(h string) (tags []string, any bool, ok bool) {
	h = strings.TrimSpace(h)
	if h == "*" {
		return nil, true, true
	}
	for _, t := range strings.Split(h, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		v := strings.TrimPrefix(t, "W/")
		if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' || strings.ContainsAny(v[1:len(v)-1], "\" \t") {
			return nil, false, false
		}
		tags = append(tags, t)
	}
	return tags, false, len(tags) > 0
}

// weakMatch reports whether one of tags names tag under the weak comparison
// (W/ ignored), as If-None-Match compares.
func weakMatch(tags []string, tag string) bool {
	for _, t := range tags {
		if strings.TrimPrefix(t, "W/") == tag {
			return true
		}
	}
	return false
}

// GetConfig: from the watch-fed cache, with ETag and If-None-Match → 304.
func (a *API) GetConfig(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	d, err := a.store.Config(a.base, in.ID)
	if err != nil {
		return err
	}
	tag := etag(d.Revision)
	ctx.Response.Header.Set("ETag", tag)
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	if inm := ctx.Request.Header.Peek("If-None-Match"); len(inm) > 0 {
		tags, anyTag, _ := parseETags(string(inm))
		if anyTag || weakMatch(tags, tag) {
			ctx.SetStatusCode(fasthttp.StatusNotModified)
			return nil
		}
	}
	ctx.SetStatusCode(200)
	ctx.SetContentType("application/json")
	ctx.SetBody(d.Body)
	return nil
}

// PutConfig replaces the document; with If-Match a stale ETag → 412, with
// If-None-Match a matching one ("*": any document at all) → 412.
func (a *API) PutConfig(ctx *fasthttp.RequestCtx, in *store.Instance) error {
	var ifRev *int64
	if im := ctx.Request.Header.Peek("If-Match"); len(im) > 0 {
		tags, anyTag, ok := parseETags(string(im))
		if !ok {
			return httpx.Err(400, "invalid_header", `If-Match must be "*" or a list of ETags`)
		}
		cur, err := a.store.Config(a.base, in.ID)
		if err != nil {
			return err
		}
		rev := int64(-1) // matches nothing
		if anyTag {
			if cur.Revision > 0 {
				rev = cur.Revision
			}
		} else {
			for _, t := range tags {
				if n, err := strconv.ParseInt(strings.Trim(t, `"`), 10, 64); err == nil && !strings.HasPrefix(t, "W/") && n >= 0 {
					rev = n
					if n == cur.Revision {
						break
					}
				}
			}
		}
		if rev < 0 {
			return store.ErrPrecondition
		}
		ifRev = &rev
	} else if inm := ctx.Request.Header.Peek("If-None-Match"); len(inm) > 0 {
		// "*": create only, atomically (revision 0 is "no document yet").
		// A list of ETags: refuse when the current document is one of them.
		tags, anyTag, ok := parseETags(string(inm))
		if !ok {
			return httpx.Err(400, "invalid_header", `If-None-Match must be "*" or a list of ETags`)
		}
		if anyTag {
			zero := int64(0)
			ifRev = &zero
		} else {
			cur, err := a.store.Config(a.base, in.ID)
			if err != nil {
				return err
			}
			if weakMatch(tags, etag(cur.Revision)) {
				return store.ErrPrecondition
			}
		}
	}
	b, err := a.readBody(ctx, limitConfig)
	if err != nil {
		return err
	}
	if err := checkJSON(b); err != nil {
		return err
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return httpx.Err(400, "invalid_json", "the configuration must be a JSON object")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return jsonError(err)
	}
	d, err := a.store.PutConfig(a.base, in.ID, compact.Bytes(), ifRev)
	if err != nil {
		return err
	}
	ctx.Response.Header.Set("ETag", etag(d.Revision))
	ctx.SetStatusCode(200)
	ctx.SetContentType("application/json")
	ctx.SetBody(d.Body)
	return nil
}
