package httpx

import (
	"net/url"
	"strconv"

	"github.com/jira-relay/jira-relay/store"
	"github.com/valyala/fasthttp"
)

// QueryArgs reads the query string strictly: only the named parameters, each
// at most once (a repeated parameter is refused even when one of its values
// is empty: which one counts would be a guess).
func QueryArgs(ctx *fasthttp.RequestCtx, allowed ...string) (map[string]string, error) {
	var out map[string]string
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
		if out == nil {
			out = map[string]string{}
		}
		if _, seen := out[key]; seen && ok {
			bad = Err(400, "duplicate_parameter", "query parameter "+strconv.Quote(key)+" is given twice")
			return
		}
		if !ok {
			bad = Err(400, "unknown_parameter", "query parameter "+strconv.Quote(key)+" is not accepted here")
			return
		}
		out[key] = string(v)
	})
	return out, bad // nil (readable, empty) when there is no query
}

// NoQuery refuses any query parameter, for the routes that take none.
func NoQuery(ctx *fasthttp.RequestCtx) error {
	if ctx.QueryArgs().Len() == 0 {
		return nil
	}
	_, err := QueryArgs(ctx)
	return err
}

// PathID decodes a path parameter (the router hands it over still
// percent-encoded) and checks it is an acceptable opaque id.
func PathID(ctx *fasthttp.RequestCtx, name string) (string, error) {
	raw, _ := ctx.UserValue(name).(string)
	v, err := url.PathUnescape(raw)
	if err != nil {
		return "", Err(400, "invalid_id", name+" is not validly percent-encoded")
	}
	if !store.ValidOpaqueID(v) || v == "." || v == ".." {
		return "", Err(400, "invalid_id", name+" must be 1 to 1024 bytes of printable UTF-8")
	}
	return v, nil
}
