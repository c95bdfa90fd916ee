package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"io"
	"mime"
	"net"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// maxJSONDepth bounds nesting in any JSON body (configuration documents included).
const maxJSONDepth = 32

// Body limits of the JSON routes.
const (
	limitSmallJSON = 16 << 10  // instances, users, mappings
	limitConfig    = 256 << 10 // the admin's configuration document
)

// readBody reads a JSON request body of at most limit bytes from the stream.
// Bodies over the limit get 413 without being read whole.
func (a *API) readBody(ctx *fasthttp.RequestCtx, limit int) ([]byte, error) {
	ct := string(ctx.Request.Header.ContentType())
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" || (params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8")) {
		return nil, httpx.Err(415, "unsupported_media_type", "send the body as application/json (UTF-8)")
	}
	if cl := ctx.Request.Header.ContentLength(); cl > limit {
		return nil, tooLarge(limit)
	}
	var buf bytes.Buffer
	body := httpx.NewBody(ctx, a.cfg.StreamIdleTimeout)
	n, err := buf.ReadFrom(io.LimitReader(body, int64(limit)+1))
	if err != nil {
		// The body's framing or the connection broke: nothing to linger for,
		// fasthttp closes the connection.
		httpx.MarkBodyBroken(ctx)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, httpx.Err(408, "body_timeout", "the request body stalled")
		}
		return nil, httpx.Err(400, "bad_body", "the request body could not be read")
	}
	if n > int64(limit) {
		return nil, tooLarge(limit)
	}
	return buf.Bytes(), nil
}

func tooLarge(limit int) *httpx.Error {
	return httpx.Err(413, "body_too_large", fmt.Sprintf("the body is larger than this route's limit of %d bytes", limit))
}

// decodeJSON reads the body and decodes it into v strictly: valid UTF-8, no
// duplicate keys, no nesting deeper than 32, no unknown fields, no trailing
// data, the right types. Unknown fields are refused so that the relay stores
// nothing it was not built to store.
func (a *API) decodeJSON(ctx *fasthttp.RequestCtx, limit int, v any) error {
	b, err := a.readBody(ctx, limit)
	if err != nil {
		return err
	}
	return strictUnmarshal(b, v)
}

func strictUnmarshal(b []byte, v any) error {
	if err := checkJSON(b); err != nil {
		return err
	}
	// encoding/json matches field names ignoring case: "NAME" would land in
	// Name. Field names are exact; keys inside free-form objects (an error
	// report's context) are the caller's and may differ only in case.
	if err := checkFieldNames(b, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	return nil
}

func jsonError(err error) *httpx.Error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return httpx.Err(400, "invalid_type", fmt.Sprintf("%s must be %s", field, jsonKind(te.Type.Kind().String())))
	case errors.As(err, &se):
		return httpx.Err(400, "invalid_json", fmt.Sprintf("malformed JSON at byte %d", se.Offset))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return httpx.Err(400, "unknown_field", "field "+strings.TrimPrefix(err.Error(), "json: unknown field ")+" is not accepted")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return httpx.Err(400, "invalid_json", "the body is empty or cut short")
	}
	return httpx.Err(400, "invalid_json", "the body is not valid JSON for this route")
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "struct", "map":
		return "an object"
	case "slice":
		return "an array"
	case "ptr":
		return "an object"
	}
	return "a number"
}

// checkJSON validates b as exactly one JSON value: UTF-8, well-formed, no
// duplicate object keys (after unescaping), nesting at most maxJSONDepth.
func checkJSON(b []byte) error {
	if !utf8.Valid(b) {
		return httpx.Err(400, "invalid_json", "the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		obj  bool
		keys map[string]struct{}
		key  bool // next string token in an object is a key
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return jsonError(err)
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if len(stack) > 0 && stack[len(stack)-1].obj {
					stack[len(stack)-1].key = true
				}
				if len(stack) >= maxJSONDepth {
					return httpx.Err(400, "invalid_json", fmt.Sprintf("JSON nested deeper than %d levels", maxJSONDepth))
				}
				stack = append(stack, frame{obj: d == '{', keys: map[string]struct{}{}, key: d == '{'})
			case '}', ']':
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].obj {
					stack[len(stack)-1].key = true
				}
			}
		} else if len(stack) > 0 && stack[len(stack)-1].obj {
			f := &stack[len(stack)-1]
			if f.key {
				k := tok.(string)
				if _, dup := f.keys[k]; dup {
					return httpx.Err(400, "duplicate_key", fmt.Sprintf("key %q appears twice in one object", k))
				}
				f.keys[k] = struct{}{}
				f.key = false
			} else {
				f.key = true
			}
		}
		if len(stack) == 0 && dec.More() {
			return httpx.Err(400, "invalid_json", "more than one JSON value in the body")
		}
	}
	return nil
}
