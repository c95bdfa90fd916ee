package opstest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	"go.yaml.in/yaml/v3"
)

// oaDoc is docs/openapi.yaml, decoded.
type oaDoc struct {
	root map[string]any
}

// oaOp is one operation of the document.
type oaOp struct {
	Method string // upper case
	Path   string
	Op     map[string]any
	Item   map[string]any // the path item (path-level parameters)
}

func (o oaOp) key() string { return o.Method + " " + o.Path }

var oaMethods = []string{"get", "put", "post", "delete", "patch", "options", "head", "trace"}

func loadOpenAPI(t testing.TB) *oaDoc {
	t.Helper()
	var root map[string]any
	if err := yaml.Unmarshal(readRepoFile(t, "docs/openapi.yaml"), &root); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	return &oaDoc{root: root}
}

func (d *oaDoc) ops(t testing.TB) []oaOp {
	t.Helper()
	paths, ok := d.root["paths"].(map[string]any)
	if !ok {
		t.Fatal("openapi.yaml: no paths")
	}
	var out []oaOp
	for p, v := range paths {
		item, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("openapi.yaml: path %s is not a mapping", p)
		}
		for _, m := range oaMethods {
			if op, ok := item[m].(map[string]any); ok {
				out = append(out, oaOp{Method: strings.ToUpper(m), Path: p, Op: op, Item: item})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key() < out[j].key() })
	return out
}

// ref resolves a local "$ref" ("#/components/...") and follows chains.
func (d *oaDoc) ref(node any) (map[string]any, error) {
	for range 20 {
		m, ok := node.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("not a mapping: %v", node)
		}
		r, ok := m["$ref"].(string)
		if !ok {
			return m, nil
		}
		if !strings.HasPrefix(r, "#/") {
			return nil, fmt.Errorf("$ref %q is not local", r)
		}
		var cur any = d.root
		for _, part := range strings.Split(r[2:], "/") {
			cm, ok := cur.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("$ref %q does not resolve", r)
			}
			if cur, ok = cm[part]; !ok {
				return nil, fmt.Errorf("$ref %q does not resolve", r)
			}
		}
		node = cur
	}
	return nil, fmt.Errorf("$ref chain too long")
}

func (d *oaDoc) mustRef(t testing.TB, node any) map[string]any {
	t.Helper()
	m, err := d.ref(node)
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	return m
}

// params are the operation's parameters, path level first, resolved.
func (d *oaDoc) params(t testing.TB, o oaOp) []map[string]any {
	var out []map[string]any
	for _, src := range []any{o.Item["parameters"], o.Op["parameters"]} {
		list, _ := src.([]any)
		for _, p := range list {
			out = append(out, d.mustRef(t, p))
		}
	}
	return out
}

// response is the documented response of o for status, resolved, or nil.
func (d *oaDoc) response(t testing.TB, o oaOp, status int) map[string]any {
	rs, _ := o.Op["responses"].(map[string]any)
	r, ok := rs[strconv.Itoa(status)]
	if !ok {
		return nil
	}
	return d.mustRef(t, r)
}

var pathParamRe = regexp.MustCompile(`\{([^}]+)\}`)

// TestOpenAPIStatic checks the document on its own: version, unique
// operation ids, declared path parameters, resolvable references, the error
// shape on every error answer, the key each operation needs, and schemas
// written only with the keywords the conformance test understands.
func TestOpenAPIStatic(t *testing.T) {
	t.Parallel()
	d := loadOpenAPI(t)
	if v := d.root["openapi"]; v != "3.0.3" {
		t.Errorf("openapi: %v, want 3.0.3", v)
	}
	ids := map[string]string{}
	for _, o := range d.ops(t) {
		id, _ := o.Op["operationId"].(string)
		if id == "" {
			t.Errorf("%s: no operationId", o.key())
		} else if prev, dup := ids[id]; dup {
			t.Errorf("%s: operationId %s is also %s", o.key(), id, prev)
		}
		ids[id] = o.key()

		// Path parameters: exactly those of the template, required.
		want := map[string]bool{}
		for _, m := range pathParamRe.FindAllStringSubmatch(o.Path, -1) {
			want[m[1]] = true
		}
		got := map[string]bool{}
		for _, p := range d.params(t, o) {
			if p["in"] == "path" {
				name, _ := p["name"].(string)
				got[name] = true
				if p["required"] != true {
					t.Errorf("%s: path parameter %s must be required", o.key(), name)
				}
			}
		}
		for n := range want {
			if !got[n] {
				t.Errorf("%s: path parameter {%s} is not declared", o.key(), n)
			}
		}
		for n := range got {
			if !want[n] {
				t.Errorf("%s: parameter %s is declared in: path but not in the path", o.key(), n)
			}
		}

		// The key each route needs, and security saying the same.
		role, _ := o.Op["x-relay-key"].(string)
		hasRelayKey := false
		sec, _ := o.Op["security"].([]any)
		for _, req := range sec {
			if m, _ := req.(map[string]any); m != nil {
				_, k := m["relayKey"]
				hasRelayKey = hasRelayKey || k
			}
		}
		switch role {
		case "none":
			if hasRelayKey {
				t.Errorf("%s: x-relay-key none but security names relayKey", o.key())
			}
		case "client", "admin":
			for _, req := range sec {
				if m, _ := req.(map[string]any); m == nil || m["relayKey"] == nil {
					t.Errorf("%s: every security requirement must include relayKey", o.key())
				}
			}
			if len(sec) == 0 {
				t.Errorf("%s: x-relay-key %s but no security", o.key(), role)
			}
		default:
			t.Errorf("%s: x-relay-key must be none, client or admin, not %q", o.key(), role)
		}

		// Responses: described, and errors with the Error shape.
		rs, _ := o.Op["responses"].(map[string]any)
		if len(rs) == 0 {
			t.Errorf("%s: no responses", o.key())
		}
		for code, r := range rs {
			resp := d.mustRef(t, r)
			if s, _ := resp["description"].(string); s == "" {
				t.Errorf("%s %s: no description", o.key(), code)
			}
			n, err := strconv.Atoi(code)
			if err != nil || n < 100 || n > 599 {
				t.Errorf("%s: response %q is not a status code (no default: every status is listed)", o.key(), code)
				continue
			}
			content, _ := resp["content"].(map[string]any)
			if n >= 400 {
				mt, _ := content["application/json"].(map[string]any)
				if mt == nil {
					if n != 416 { // Jira's, without a body worth describing
						t.Errorf("%s %s: an error answer needs application/json content", o.key(), code)
					}
					continue
				}
				if !d.allowsError(t, mt["schema"]) {
					t.Errorf("%s %s: the schema must be Error (or anyOf including it)", o.key(), code)
				}
			}
		}
	}

	// Every $ref resolves, every schema uses known keywords.
	d.walk(t, d.root, "#")
}

// allowsError reports whether schema is Error or an anyOf that includes it.
func (d *oaDoc) allowsError(t testing.TB, schema any) bool {
	m, _ := schema.(map[string]any)
	if r, _ := m["$ref"].(string); r == "#/components/schemas/Error" {
		return true
	}
	s := d.mustRef(t, schema)
	if any, ok := s["anyOf"].([]any); ok {
		for _, a := range any {
			if d.allowsError(t, a) {
				return true
			}
		}
	}
	return false
}

// schemaKeywords are the keywords schemas may use: validateSchema implements
// the ones that constrain (the rest are documentation).
var schemaKeywords = map[string]bool{
	"type": true, "properties": true, "required": true, "additionalProperties": true, "items": true,
	"enum": true, "anyOf": true, "allOf": true, "nullable": true, "format": true, "pattern": true,
	"minLength": true, "maxLength": true, "minimum": true, "maximum": true, "default": true,
	"description": true, "example": true, "$ref": true, "title": true,
}

// walk checks every $ref under n and the keywords of every schema.
func (d *oaDoc) walk(t testing.TB, n any, at string) {
	switch v := n.(type) {
	case map[string]any:
		if r, ok := v["$ref"]; ok {
			if _, err := d.ref(map[string]any{"$ref": r}); err != nil {
				t.Errorf("%s: %v", at, err)
			}
		}
		for k, c := range v {
			if k == "example" || k == "examples" {
				continue
			}
			if k == "schema" || at == "#/components/schemas" {
				d.checkSchemaKeywords(t, c, at+"/"+k)
			}
			d.walk(t, c, at+"/"+k)
		}
	case []any:
		for i, c := range v {
			d.walk(t, c, fmt.Sprintf("%s/%d", at, i))
		}
	}
}

func (d *oaDoc) checkSchemaKeywords(t testing.TB, s any, at string) {
	m, ok := s.(map[string]any)
	if !ok {
		return
	}
	for k, v := range m {
		if !schemaKeywords[k] {
			t.Errorf("%s: schema keyword %q is not one the tests understand (%v)", at, k, slices.Sorted(mapKeys(schemaKeywords)))
		}
		switch k {
		case "properties":
			if props, ok := v.(map[string]any); ok {
				for pn, ps := range props {
					d.checkSchemaKeywords(t, ps, at+"/properties/"+pn)
				}
			}
		case "items", "additionalProperties":
			d.checkSchemaKeywords(t, v, at+"/"+k)
		case "anyOf", "allOf":
			list, _ := v.([]any)
			for i, it := range list {
				d.checkSchemaKeywords(t, it, fmt.Sprintf("%s/%s/%d", at, k, i))
			}
		}
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestOpenAPIRoutes: every route the router serves is in the document with
// the same method and path pattern, and every operation of the document is
// served.
func TestOpenAPIRoutes(t *testing.T) {
	t.Parallel()
	d := loadOpenAPI(t)
	r := startRelay(t, nil, nil)
	served := map[string]bool{}
	for method, paths := range r.Server.Routes() {
		for _, p := range paths {
			served[strings.ToUpper(method)+" "+p] = true
		}
	}
	if len(served) < 10 {
		t.Fatalf("the router lists only %d routes: %v", len(served), served)
	}
	documented := map[string]bool{}
	for _, o := range d.ops(t) {
		documented[o.key()] = true
		if !served[o.key()] {
			t.Errorf("openapi.yaml documents %s, which the relay does not serve", o.key())
		}
	}
	for k := range served {
		if !documented[k] {
			t.Errorf("the relay serves %s, which openapi.yaml does not document", k)
		}
	}
}

// validateSchema checks a decoded JSON value (numbers as json.Number)
// against an OpenAPI 3.0 schema written with schemaKeywords.
func (d *oaDoc) validateSchema(schema any, v any, at string) error {
	s, err := d.ref(schema)
	if err != nil {
		return err
	}
	if v == nil {
		if s["nullable"] == true {
			return nil
		}
		if _, typed := s["type"]; typed {
			return fmt.Errorf("%s: null, but the schema is not nullable", at)
		}
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			if err := d.validateSchema(sub, v, at); err != nil {
				return err
			}
		}
	}
	if anyOf, ok := s["anyOf"].([]any); ok {
		var errs []string
		for _, sub := range anyOf {
			err := d.validateSchema(sub, v, at)
			if err == nil {
				errs = nil
				break
			}
			errs = append(errs, err.Error())
		}
		if errs != nil {
			return fmt.Errorf("%s: matches none of anyOf: %s", at, strings.Join(errs, "; "))
		}
	}
	if enum, ok := s["enum"].([]any); ok {
		found := false
		for _, e := range enum {
			found = found || fmt.Sprint(e) == fmt.Sprint(v)
		}
		if !found {
			return fmt.Errorf("%s: %v is not one of %v", at, v, enum)
		}
	}
	typ, _ := s["type"].(string)
	switch typ {
	case "":
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an object", at, v)
		}
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := obj[r.(string)]; !ok {
				return fmt.Errorf("%s: required property %q is missing", at, r)
			}
		}
		props, _ := s["properties"].(map[string]any)
		for k, pv := range obj {
			if ps, ok := props[k]; ok {
				if err := d.validateSchema(ps, pv, at+"."+k); err != nil {
					return err
				}
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					return fmt.Errorf("%s: property %q is not in the schema", at, k)
				}
			case map[string]any:
				if err := d.validateSchema(ap, pv, at+"."+k); err != nil {
					return err
				}
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an array", at, v)
		}
		for i, it := range arr {
			if err := d.validateSchema(s["items"], it, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: %T, want a string", at, v)
		}
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(str) {
			return fmt.Errorf("%s: %q does not match %s", at, str, p)
		}
		n := utf8.RuneCountInString(str)
		if m, ok := s["minLength"].(int); ok && n < m {
			return fmt.Errorf("%s: shorter than %d", at, m)
		}
		if m, ok := s["maxLength"].(int); ok && n > m {
			return fmt.Errorf("%s: longer than %d", at, m)
		}
		switch s["format"] {
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				return fmt.Errorf("%s: %q is not a date-time", at, str)
			}
		case "email":
			if !strings.Contains(str, "@") {
				return fmt.Errorf("%s: %q is not an e-mail address", at, str)
			}
		}
	case "integer", "number":
		num, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%s: %T, want a number", at, v)
		}
		f, ok := new(big.Float).SetString(num.String())
		if !ok {
			return fmt.Errorf("%s: %s is not a number", at, num)
		}
		if typ == "integer" && !f.IsInt() {
			return fmt.Errorf("%s: %s is not an integer", at, num)
		}
		if m, ok := s["minimum"].(int); ok && f.Cmp(big.NewFloat(float64(m))) < 0 {
			return fmt.Errorf("%s: %s is below %d", at, num, m)
		}
		if m, ok := s["maximum"].(int); ok && f.Cmp(big.NewFloat(float64(m))) > 0 {
			return fmt.Errorf("%s: %s is above %d", at, num, m)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: %T, want a boolean", at, v)
		}
	default:
		return fmt.Errorf("%s: schema type %q unknown to the test", at, typ)
	}
	return nil
}

func decodeJSONNumbers(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data")
	}
	return v, nil
}

// oaCall is one request of the conformance run.
type oaCall struct {
	op      string // "METHOD /path/{template}" of the document
	url     string
	body    []byte
	ctype   string
	headers []string
	want    int    // the status the relay must answer
	code    string // the error code, when want >= 400 and the relay answers itself
	// declared sends the headers, with Content-Length of body, and only the
	// body's first bytes, then reads the answer: for refusals the relay makes
	// from the declared size (413). Sending such a body whole races the
	// relay's early answer and close (the client may see a broken pipe
	// instead of the 413).
	declared bool
}

// sendDeclared writes the request line and headers of req with
// Content-Length len(body) and the first 4 KiB of body (fasthttp reads a
// first body byte before the relay's handler runs), and reads the answer.
func sendDeclared(req *http.Request, body []byte) (*http.Response, error) {
	n := len(body)
	conn, err := net.DialTimeout("tcp", req.URL.Host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n", req.Method, req.URL.RequestURI(), req.URL.Host, n)
	for k, vs := range req.Header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	b.Write(body[:min(len(body), 4096)])
	if _, err := io.WriteString(conn, b.String()); err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{resp.Body, conn}
	return resp, nil
}

// conformance runs requests against a relay and the fake Jira and checks
// each answer against the document.
type conformance struct {
	t     *testing.T
	d     *oaDoc
	ops   map[string]oaOp
	seen  map[string]map[int]bool
	relay string
}

func (c *conformance) do(k oaCall) relaytest.Answer {
	c.t.Helper()
	t := c.t
	o, ok := c.ops[k.op]
	if !ok {
		t.Fatalf("conformance: %s is not an operation of the document", k.op)
	}
	var rd io.Reader
	if k.body != nil {
		rd = bytes.NewReader(k.body)
	}
	req, err := http.NewRequest(o.Method, k.url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if k.ctype != "" {
		req.Header.Set("Content-Type", k.ctype)
	}
	for i := 0; i+1 < len(k.headers); i += 2 {
		req.Header.Set(k.headers[i], k.headers[i+1])
	}
	var resp *http.Response
	if k.declared {
		resp, err = sendDeclared(req, k.body)
	} else {
		resp, err = httpClient.Do(req)
	}
	if err != nil {
		t.Fatalf("%s %s: %v", o.Method, k.url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := relaytest.Answer{Status: resp.StatusCode, Header: resp.Header, Body: body}
	what := fmt.Sprintf("%s (%s)", k.op, k.url[len(c.relay):])
	if k.want != 0 && r.Status != k.want {
		t.Errorf("%s: status %d, want %d: %s", what, r.Status, k.want, body)
		return r
	}
	if k.code != "" && r.Code() != k.code {
		t.Errorf("%s: error code %q, want %q: %s", what, r.Code(), k.code, body)
	}
	if c.seen[k.op] == nil {
		c.seen[k.op] = map[int]bool{}
	}
	c.seen[k.op][r.Status] = true

	// The request body, when the relay took it, fits the documented schema.
	if r.Status < 300 && k.ctype == "application/json" && k.body != nil {
		rb := c.d.mustRef(t, o.Op["requestBody"])
		content, _ := rb["content"].(map[string]any)
		mt, _ := content["application/json"].(map[string]any)
		v, err := decodeJSONNumbers(k.body)
		if mt == nil || err != nil {
			t.Errorf("%s: the relay took a JSON body the document does not describe", what)
		} else if err := c.d.validateSchema(mt["schema"], v, "request"); err != nil {
			t.Errorf("%s: the relay took a body its documented schema refuses: %v", what, err)
		}
	}

	doc := c.d.response(t, o, r.Status)
	if doc == nil {
		t.Errorf("%s: status %d is not documented for this operation: %s", what, r.Status, body)
		return r
	}
	// Documented required headers are there and fit their schema.
	hs, _ := doc["headers"].(map[string]any)
	for name, h := range hs {
		hd := c.d.mustRef(t, h)
		val := r.Header.Get(name)
		if val == "" {
			if hd["required"] == true {
				t.Errorf("%s %d: header %s is missing", what, r.Status, name)
			}
			continue
		}
		var hv any = val
		if sch := c.d.mustRef(t, hd["schema"]); sch["type"] == "integer" {
			hv = json.Number(val)
		}
		if err := c.d.validateSchema(hd["schema"], hv, "header "+name); err != nil {
			t.Errorf("%s %d: %v", what, r.Status, err)
		}
	}
	content, _ := doc["content"].(map[string]any)
	if len(content) == 0 {
		if len(body) != 0 {
			t.Errorf("%s %d: documented without a body, but has %d bytes", what, r.Status, len(body))
		}
		return r
	}
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	mt, _ := content[ct].(map[string]any)
	if mt == nil {
		mt, _ = content["*/*"].(map[string]any)
	}
	if mt == nil {
		t.Errorf("%s %d: Content-Type %q is not documented", what, r.Status, ct)
		return r
	}
	if ct == "application/json" {
		v, err := decodeJSONNumbers(body)
		if err != nil {
			t.Errorf("%s %d: not JSON: %v: %s", what, r.Status, err, body)
		} else if err := c.d.validateSchema(mt["schema"], v, "body"); err != nil {
			t.Errorf("%s %d: the answer does not fit the document: %v: %s", what, r.Status, err, body)
		}
	}
	return r
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// TestOpenAPIConformance makes real requests, one or more for every status
// the document lists for the relay's own answers, and checks every answer
// against the document: its status is listed for the operation, its body
// fits the schema, its documented headers fit theirs. It also checks the
// key each operation documents (x-relay-key): a client key on an admin route
// is 403, no key on any keyed route 401.
func TestOpenAPIConformance(t *testing.T) {
	d := loadOpenAPI(t)
	jira := relaytest.StartJira(t, fakejira.Options{})
	const regToken = "reg-token-for-the-test"
	r := startRelay(t, nil, func(c *configs.Config) {
		c.RegistrationToken = regToken
		c.MaxAttachmentBytes = 1 << 20
		c.BreakerFailures = 2
		c.UpstreamResponseTimeout = 700 * time.Millisecond
		c.UpstreamDialTimeout = 500 * time.Millisecond
		c.StreamIdleTimeout = time.Second
	})
	c := &conformance{t: t, d: d, ops: map[string]oaOp{}, seen: map[string]map[int]bool{}, relay: r.URL}
	for _, o := range d.ops(t) {
		c.ops[o.key()] = o
	}
	base := r.URL
	reg := func(u string) relaytest.Tenant {
		return register(t, base, u, "X-Registration-Token", regToken)
	}
	tn := reg(jira.URL())
	inst := base + "/v1/instances/" + tn.ID
	ck := []string{"X-Relay-Key", tn.Client}
	ak := []string{"X-Relay-Key", tn.Admin}
	with := func(h []string, more ...string) []string { return append(slices.Clone(h), more...) }
	const J = "application/json"

	// Health.
	c.do(oaCall{op: "GET /healthz", url: base + "/healthz", want: 200})
	c.do(oaCall{op: "GET /readyz", url: base + "/readyz", want: 200})

	// Registration.
	regBody := jsonBody(map[string]any{"url": "https://conf.atlassian.net", "jiraVersion": "1001.0.0", "addinVersion": "2.0.0",
		"license": map[string]any{"key": "SEN-1", "expiresAt": "2031-01-01T00:00:00Z", "seats": 10}})
	c.do(oaCall{op: "POST /v1/instances", url: base + "/v1/instances", body: regBody, ctype: J, want: 401, code: "unauthorized"})
	c.do(oaCall{op: "POST /v1/instances", url: base + "/v1/instances", body: regBody, ctype: J, headers: []string{"X-Registration-Token", regToken}, want: 201})
	c.do(oaCall{op: "POST /v1/instances", url: base + "/v1/instances", body: regBody, ctype: J, headers: []string{"X-Registration-Token", regToken}, want: 409, code: "conflict"})
	c.do(oaCall{op: "POST /v1/instances", url: base + "/v1/instances", body: []byte(`{"url":"https://x.atlassian.net","jiraVersion":"1","addinVersion":"1","extra":1}`), ctype: J, headers: []string{"X-Registration-Token", regToken}, want: 400, code: "unknown_field"})
	c.do(oaCall{op: "POST /v1/instances", url: base + "/v1/instances", body: []byte(`{"url":"https://evil.example.com","jiraVersion":"1","addinVersion":"1"}`), ctype: J, headers: []string{"X-Registration-Token", regToken}, want: 400, code: "invalid_url"})
	c.do(oaCall{op: "POST /v1/instances", url: base + "/v1/instances", body: regBody, ctype: "text/plain", headers: []string{"X-Registration-Token", regToken}, want: 415})
	c.do(oaCall{op: "POST /v1/instances", url: base + "/v1/instances", body: bytes.Repeat([]byte(" "), 17<<10), ctype: J, headers: []string{"X-Registration-Token", regToken}, want: 413, declared: true, code: "body_too_large"})

	// The instance.
	c.do(oaCall{op: "GET /v1/instances/{id}", url: inst, headers: ak, want: 200})
	c.do(oaCall{op: "GET /v1/instances/{id}", url: base + "/v1/instances/aaaaaaaaaaaaaaaaaaaaaaaaaa", headers: ak, want: 404, code: "instance_not_found"})
	c.do(oaCall{op: "PATCH /v1/instances/{id}", url: inst, body: jsonBody(map[string]any{"addinVersion": "2.1.0", "errorReports": true}), ctype: J, headers: ak, want: 200})
	c.do(oaCall{op: "PATCH /v1/instances/{id}", url: inst, body: []byte(`{"errorReports":"yes"}`), ctype: J, headers: ak, want: 400, code: "invalid_type"})
	c.do(oaCall{op: "PATCH /v1/instances/{id}", url: inst, body: []byte(`{}`), ctype: "text/plain", headers: ak, want: 415})
	c.do(oaCall{op: "PATCH /v1/instances/{id}", url: inst, body: bytes.Repeat([]byte(" "), 17<<10), ctype: J, headers: ak, want: 413, declared: true})

	// Jira Server and Data Center tenants, cloud ids, site renames. (No
	// request here reaches those URLs: the relay never connects to a
	// Server or Data Center Jira.)
	const P = "POST /v1/instances"
	rt := []string{"X-Registration-Token", regToken}
	regAs := func(u string, fields ...string) []byte {
		b := map[string]any{"url": u, "jiraVersion": "9.12.4", "addinVersion": "2.0.0"}
		for i := 0; i+1 < len(fields); i += 2 {
			b[fields[i]] = fields[i+1]
		}
		return jsonBody(b)
	}
	type registered struct {
		InstanceID, ClientKey, AdminKey string
		Instance                        struct{ URL, DeploymentType, CloudID string }
	}
	var srv, cl registered
	c.do(oaCall{op: P, url: base + "/v1/instances", body: regAs("HTTPS://Jira.Corp.Example.com:443/jira/", "deploymentType", "Server"), ctype: J, headers: rt, want: 201}).Decode(t, &srv)
	if srv.Instance.URL != "https://jira.corp.example.com/jira" || srv.Instance.DeploymentType != "Server" || srv.Instance.CloudID != "" {
		t.Errorf("a Server tenant's view: %+v", srv.Instance)
	}
	c.do(oaCall{op: P, url: base + "/v1/instances", body: regAs("http://jira-dc.corp.example.com:8080", "deploymentType", "DataCenter"), ctype: J, headers: rt, want: 201})
	c.do(oaCall{op: P, url: base + "/v1/instances", body: regAs("https://jira.corp.example.com/jira", "deploymentType", "DataCenter"), ctype: J, headers: rt, want: 409, code: "conflict"})
	c.do(oaCall{op: P, url: base + "/v1/instances", body: regAs("https://jira.corp.example.com/x", "deploymentType", "server"), ctype: J, headers: rt, want: 400, code: "invalid_field"})
	c.do(oaCall{op: P, url: base + "/v1/instances", body: regAs("https://jira.corp.example.com/x/../y", "deploymentType", "Server"), ctype: J, headers: rt, want: 400, code: "invalid_url"})
	const cloudID = "5A0C2B9A-5D4E-4F6A-8B7C-9D0E1F2A3B4C"
	c.do(oaCall{op: P, url: base + "/v1/instances", body: regAs("https://jira.corp.example.com/x", "deploymentType", "Server", "cloudId", cloudID), ctype: J, headers: rt, want: 400, code: "invalid_field"})
	c.do(oaCall{op: P, url: base + "/v1/instances", body: regAs("https://cloudid.atlassian.net", "cloudId", cloudID), ctype: J, headers: rt, want: 201}).Decode(t, &cl)
	if cl.Instance.DeploymentType != "Cloud" || cl.Instance.CloudID != strings.ToLower(cloudID) {
		t.Errorf("a Cloud tenant's view: %+v", cl.Instance)
	}
	c.do(oaCall{op: P, url: base + "/v1/instances", body: regAs("https://cloudid-2.atlassian.net", "deploymentType", "Cloud", "cloudId", strings.ToLower(cloudID)), ctype: J, headers: rt, want: 409, code: "cloud_id_taken"})
	c.do(oaCall{op: P, url: base + "/v1/instances", body: regAs("https://cloudid-2.atlassian.net", "cloudId", "acme"), ctype: J, headers: rt, want: 400, code: "invalid_field"})
	const I = "PATCH /v1/instances/{id}"
	srvInst, clInst := base+"/v1/instances/"+srv.InstanceID, base+"/v1/instances/"+cl.InstanceID
	srvAK, clAK := []string{"X-Relay-Key", srv.AdminKey}, []string{"X-Relay-Key", cl.AdminKey}
	c.do(oaCall{op: I, url: srvInst, body: jsonBody(map[string]any{"url": "https://jira2.corp.example.com/jira"}), ctype: J, headers: srvAK, want: 200})
	c.do(oaCall{op: I, url: srvInst, body: jsonBody(map[string]any{"url": "https://conf.atlassian.net"}), ctype: J, headers: srvAK, want: 409, code: "url_taken"})
	c.do(oaCall{op: I, url: srvInst, body: jsonBody(map[string]any{"url": "https://jira2.corp.example.com/a;b"}), ctype: J, headers: srvAK, want: 400, code: "invalid_url"})
	c.do(oaCall{op: I, url: clInst, body: jsonBody(map[string]any{"url": "https://jira.corp.example.com/cloud"}), ctype: J, headers: clAK, want: 400, code: "invalid_url"})
	c.do(oaCall{op: I, url: clInst, body: jsonBody(map[string]any{"url": "https://cloudid-renamed.atlassian.net", "cloudId": cloudID}), ctype: J, headers: clAK, want: 200})
	c.do(oaCall{op: I, url: clInst, body: jsonBody(map[string]any{"cloudId": "11111111-2222-4333-8444-555555555555"}), ctype: J, headers: clAK, want: 400, code: "invalid_field"})
	// Attachments of a Server tenant: 409, the relay never calls that Jira.
	srvCK := []string{"X-Relay-Key", srv.ClientKey, "Authorization", "Basic eDp5"}
	c.do(oaCall{op: "POST /v1/instances/{id}/issues/{issue}/attachments", url: srvInst + "/issues/ITSM-1/attachments?filename=a.txt", body: []byte("hello"), ctype: "text/plain", headers: srvCK, want: 409, code: "attachments_direct"})
	c.do(oaCall{op: "GET /v1/instances/{id}/attachments/{attachmentId}/content", url: srvInst + "/attachments/10001/content", headers: srvCK, want: 409, code: "attachments_direct"})

	// Users.
	user := inst + "/users/" + url.PathEscape("u/1")
	userBody := jsonBody(map[string]string{"name": "Ada Lovelace", "email": "ada@example.com"})
	c.do(oaCall{op: "PUT /v1/instances/{id}/users/{userId}", url: user, body: userBody, ctype: J, headers: ck, want: 201})
	c.do(oaCall{op: "PUT /v1/instances/{id}/users/{userId}", url: user, body: userBody, ctype: J, headers: ck, want: 200})
	c.do(oaCall{op: "PUT /v1/instances/{id}/users/{userId}", url: user, body: []byte(`{"name":"A","email":"not mail"}`), ctype: J, headers: ck, want: 400, code: "invalid_field"})
	c.do(oaCall{op: "PUT /v1/instances/{id}/users/{userId}", url: user, body: userBody, ctype: "text/plain", headers: ck, want: 415})
	c.do(oaCall{op: "PUT /v1/instances/{id}/users/{userId}", url: user, body: bytes.Repeat([]byte(" "), 17<<10), ctype: J, headers: ck, want: 413, declared: true})
	// A body that stalls: the relay stops waiting after --stream-idle-timeout.
	c.do(oaCall{op: "PUT /v1/instances/{id}/users/{userId}", url: user, body: bytes.Repeat([]byte(" "), 8<<10), ctype: J, headers: ck, declared: true, want: 408, code: "body_timeout"})
	c.do(oaCall{op: "GET /v1/instances/{id}/users/{userId}", url: user, headers: ck, want: 200})
	c.do(oaCall{op: "GET /v1/instances/{id}/users/{userId}", url: inst + "/users/nobody", headers: ck, want: 404, code: "user_not_found"})
	c.do(oaCall{op: "GET /v1/instances/{id}/users/{userId}", url: inst + "/users/%01", headers: ck, want: 400, code: "invalid_id"})

	// Configuration.
	cfg := inst + "/config"
	c.do(oaCall{op: "GET /v1/instances/{id}/config", url: cfg, headers: ck, want: 200})
	put := c.do(oaCall{op: "PUT /v1/instances/{id}/config", url: cfg, body: []byte(`{"fields": ["summary"], "n": 1}`), ctype: J, headers: with(ak, "If-Match", `"0"`), want: 200})
	tag := put.Header.Get("ETag")
	got := c.do(oaCall{op: "GET /v1/instances/{id}/config", url: cfg, headers: ck, want: 200})
	if got.Header.Get("ETag") != tag || string(got.Body) != `{"fields":["summary"],"n":1}` {
		t.Errorf("config read back: %s %s, want %s", got.Header.Get("ETag"), got.Body, tag)
	}
	c.do(oaCall{op: "GET /v1/instances/{id}/config", url: cfg, headers: with(ck, "If-None-Match", tag), want: 304})
	c.do(oaCall{op: "PUT /v1/instances/{id}/config", url: cfg, body: []byte(`{}`), ctype: J, headers: with(ak, "If-Match", `"1"`), want: 412, code: "precondition_failed"})
	c.do(oaCall{op: "PUT /v1/instances/{id}/config", url: cfg, body: []byte(`[1]`), ctype: J, headers: ak, want: 400, code: "invalid_json"})
	c.do(oaCall{op: "PUT /v1/instances/{id}/config", url: cfg, body: []byte(`{}`), ctype: "text/plain", headers: ak, want: 415})
	c.do(oaCall{op: "PUT /v1/instances/{id}/config", url: cfg, body: bytes.Repeat([]byte(" "), 257<<10), ctype: J, headers: ak, want: 413, declared: true})

	// Mappings.
	maps := inst + "/mappings"
	mapping := func(user, issue, key string) []byte {
		return jsonBody(map[string]any{"conversationId": "AAQk/c=", "mailId": "<m1@example.com>", "userId": user, "app": "outlook",
			"jira": map[string]string{"id": issue, "key": key, "projectId": "10000"}})
	}
	c.do(oaCall{op: "POST /v1/instances/{id}/mappings", url: maps, body: mapping("u/1", "10001", "OPS-1"), ctype: J, headers: ck, want: 201})
	c.do(oaCall{op: "POST /v1/instances/{id}/mappings", url: maps, body: mapping("u/1", "10001", "OPS-1"), ctype: J, headers: ck, want: 200})
	c.do(oaCall{op: "POST /v1/instances/{id}/mappings", url: maps, body: mapping("u/1", "10002", "OPS-2"), ctype: J, headers: ck, want: 201})
	c.do(oaCall{op: "POST /v1/instances/{id}/mappings", url: maps, body: mapping("u/1", "x", "OPS-2"), ctype: J, headers: ck, want: 400, code: "invalid_field"})
	c.do(oaCall{op: "POST /v1/instances/{id}/mappings", url: maps, body: mapping("u/1", "1", "OPS-2"), ctype: "text/plain", headers: ck, want: 415})
	c.do(oaCall{op: "POST /v1/instances/{id}/mappings", url: maps, body: bytes.Repeat([]byte(" "), 17<<10), ctype: J, headers: ck, want: 413, declared: true})
	page := c.do(oaCall{op: "GET /v1/instances/{id}/mappings", url: maps + "?conversationId=" + url.QueryEscape("AAQk/c=") + "&limit=1", headers: ck, want: 200})
	var pg struct{ Next string }
	page.Decode(t, &pg)
	if pg.Next == "" {
		t.Error("a first page of 1 of 2 mappings has no next cursor")
	}
	c.do(oaCall{op: "GET /v1/instances/{id}/mappings", url: maps + "?conversationId=" + url.QueryEscape("AAQk/c=") + "&limit=1&cursor=" + pg.Next, headers: ck, want: 200})
	c.do(oaCall{op: "GET /v1/instances/{id}/mappings", url: maps + "?issueKey=OPS-1&userId=" + url.QueryEscape("u/1"), headers: ck, want: 200})
	c.do(oaCall{op: "GET /v1/instances/{id}/mappings", url: maps, headers: ck, want: 400, code: "invalid_query"})
	c.do(oaCall{op: "GET /v1/instances/{id}/mappings", url: maps + "?mailId=a&sort=x", headers: ck, want: 400, code: "unknown_parameter"})
	c.do(oaCall{op: "GET /v1/instances/{id}/mappings", url: maps + "?mailId=a&limit=1001", headers: ck, want: 400, code: "invalid_query"})
	c.do(oaCall{op: "DELETE /v1/instances/{id}/mappings", url: maps + "?mailId=" + url.QueryEscape("<m1@example.com>") + "&issueId=10002", headers: ck, want: 200})
	c.do(oaCall{op: "DELETE /v1/instances/{id}/mappings", url: maps + "?mailId=" + url.QueryEscape("<m1@example.com>") + "&issueId=10002", headers: ck, want: 404, code: "mapping_not_found"})
	c.do(oaCall{op: "DELETE /v1/instances/{id}/mappings", url: maps + "?mailId=x", headers: ck, want: 400, code: "invalid_query"})

	// Export and erase of the user.
	c.do(oaCall{op: "GET /v1/instances/{id}/users/{userId}/export", url: user + "/export", headers: ak, want: 200})
	c.do(oaCall{op: "GET /v1/instances/{id}/users/{userId}/export", url: inst + "/users/nobody/export", headers: ak, want: 404, code: "user_not_found"})
	c.do(oaCall{op: "GET /v1/instances/{id}/users/{userId}/export", url: inst + "/users/%01/export", headers: ak, want: 400})
	// Only mappings left of a user: the export's user is null.
	c.do(oaCall{op: "POST /v1/instances/{id}/mappings", url: maps, body: mapping("ghost", "10009", "OPS-9"), ctype: J, headers: ck, want: 201})
	c.do(oaCall{op: "GET /v1/instances/{id}/users/{userId}/export", url: inst + "/users/ghost/export", headers: ak, want: 200})
	c.do(oaCall{op: "DELETE /v1/instances/{id}/users/{userId}", url: user, headers: ak, want: 204})
	c.do(oaCall{op: "DELETE /v1/instances/{id}/users/{userId}", url: user, headers: ak, want: 404, code: "user_not_found"})
	c.do(oaCall{op: "DELETE /v1/instances/{id}/users/{userId}", url: inst + "/users/%01", headers: ak, want: 400})

	// Error reports: off until the admin turns them on.
	reports := inst + "/error-reports"
	report := jsonBody(map[string]any{"message": "TypeError at compose for ada@example.com", "stack": "at x (a.js:1)", "addinVersion": "2.1.0", "context": map[string]any{"host": "OWA"}})
	c.do(oaCall{op: "PATCH /v1/instances/{id}", url: inst, body: []byte(`{"errorReports":false}`), ctype: J, headers: ak, want: 200})
	c.do(oaCall{op: "POST /v1/instances/{id}/error-reports", url: reports, body: report, ctype: J, headers: ck, want: 403, code: "error_reports_off"})
	c.do(oaCall{op: "PATCH /v1/instances/{id}", url: inst, body: []byte(`{"errorReports":true}`), ctype: J, headers: ak, want: 200})
	c.do(oaCall{op: "POST /v1/instances/{id}/error-reports", url: reports, body: report, ctype: J, headers: ck, want: 201})
	c.do(oaCall{op: "POST /v1/instances/{id}/error-reports", url: reports, body: report, ctype: J, headers: ck, want: 201})
	c.do(oaCall{op: "POST /v1/instances/{id}/error-reports", url: reports, body: []byte(`{"stack":"s"}`), ctype: J, headers: ck, want: 400})
	c.do(oaCall{op: "POST /v1/instances/{id}/error-reports", url: reports, body: report, ctype: "text/plain", headers: ck, want: 415})
	c.do(oaCall{op: "POST /v1/instances/{id}/error-reports", url: reports, body: bytes.Repeat([]byte(" "), 65<<10), ctype: J, headers: ck, want: 413, declared: true})
	rp := c.do(oaCall{op: "GET /v1/instances/{id}/error-reports", url: reports + "?limit=1", headers: ak, want: 200})
	if bytes.Contains(rp.Body, []byte("ada@example.com")) {
		t.Errorf("an error report keeps an e-mail address: %s", rp.Body)
	}
	var rpg struct{ Next string }
	rp.Decode(t, &rpg)
	c.do(oaCall{op: "GET /v1/instances/{id}/error-reports", url: reports + "?cursor=" + rpg.Next, headers: ak, want: 200})
	c.do(oaCall{op: "GET /v1/instances/{id}/error-reports", url: reports + "?limit=0", headers: ak, want: 400, code: "invalid_query"})

	// Attachments: uploads.
	file := bytes.Repeat([]byte("jira-relay "), 3000)
	b64 := []byte(encodeBase64Lines(file))
	jiraAuth := "Basic " + encodeBase64([]byte("ada@example.com:api-token"))
	up := func(issue, query string) string {
		return inst + "/issues/" + issue + "/attachments?" + query
	}
	upHeaders := with(ck, "Authorization", jiraAuth)
	const U = "POST /v1/instances/{id}/issues/{issue}/attachments"
	c.do(oaCall{op: U, url: up("OPS-1", "encoding=base64&filename=notes.txt"), body: b64, ctype: "text/plain", headers: upHeaders, want: 200})
	c.do(oaCall{op: U, url: up("10001", "filename=notes.txt"), body: file, ctype: "application/octet-stream", headers: upHeaders, want: 200})
	c.do(oaCall{op: U, url: up("OPS-1", "filename=notes.txt"), body: file, ctype: "text/plain", headers: ck, want: 401, code: "missing_authorization"})
	c.do(oaCall{op: U, url: up("not-an-issue", "filename=notes.txt"), body: file, ctype: "text/plain", headers: upHeaders, want: 400, code: "invalid_issue"})
	c.do(oaCall{op: U, url: up("OPS-1", ""), body: file, ctype: "text/plain", headers: upHeaders, want: 400, code: "missing_filename"})
	c.do(oaCall{op: U, url: up("OPS-1", "encoding=hex&filename=a"), body: file, ctype: "text/plain", headers: upHeaders, want: 400, code: "invalid_query"})
	c.do(oaCall{op: U, url: up("OPS-1", "encoding=base64&filename=a"), body: []byte("!!!not base64!!!"), ctype: "text/plain", headers: upHeaders, want: 400, code: "invalid_base64"})
	c.do(oaCall{op: U, url: up("OPS-1", "filename=big.bin"), body: make([]byte, 1<<20+1), ctype: "application/octet-stream", headers: upHeaders, want: 413, declared: true, code: "attachment_too_large"})
	c.do(oaCall{op: U, url: base + "/v1/instances/aaaaaaaaaaaaaaaaaaaaaaaaaa/issues/OPS-1/attachments?filename=a", body: file, ctype: "text/plain", headers: upHeaders, want: 404, code: "instance_not_found"})
	// Jira's own answers, relayed.
	jira.SetFault(fakejira.Fault{Kind: fakejira.Fault429, Count: 1, RetryAfter: "1", Endpoint: fakejira.EndpointUpload})
	c.do(oaCall{op: U, url: up("OPS-3", "filename=a.txt"), body: file, ctype: "text/plain", headers: upHeaders, want: 429})
	// … and the relay's cool-down that follows.
	c.do(oaCall{op: U, url: up("OPS-3", "filename=a.txt"), body: file, ctype: "text/plain", headers: upHeaders, want: 429, code: "rate_limited_jira_cooldown"})
	time.Sleep(1100 * time.Millisecond)
	jira.SetFault(fakejira.Fault{Kind: fakejira.Fault500, Count: 1, Endpoint: fakejira.EndpointUpload})
	c.do(oaCall{op: U, url: up("OPS-4", "filename=a.txt"), body: file, ctype: "text/plain", headers: upHeaders, want: 500})
	jira.SetFault(fakejira.Fault{Kind: fakejira.FaultSlow, Delay: 2 * time.Second, Count: 1, Endpoint: fakejira.EndpointUpload})
	c.do(oaCall{op: U, url: up("OPS-4", "filename=a.txt"), body: file, ctype: "text/plain", headers: upHeaders, want: 504, code: "upstream_timeout"})
	// Two failures in a row open the breaker (--breaker-failures 2).
	c.do(oaCall{op: U, url: up("OPS-5", "filename=a.txt"), body: file, ctype: "text/plain", headers: upHeaders, want: 503, code: "upstream_circuit_open"})
	jira.ClearFault()

	// Jira that cannot be reached.
	dead := reg("http://127.0.0.1:1")
	c.do(oaCall{op: U, url: base + "/v1/instances/" + dead.ID + "/issues/OPS-1/attachments?filename=a", body: file, ctype: "text/plain",
		headers: []string{"X-Relay-Key", dead.Client, "Authorization", jiraAuth}, want: 502, code: "upstream_unreachable"})

	// Downloads, on an instance whose breaker is closed.
	dl := reg(strings.Replace(jira.URL(), "127.0.0.1", "localhost", 1))
	attID := jira.AddAttachmentBytes("notes.txt", "text/plain", file)
	const D = "GET /v1/instances/{id}/attachments/{attachmentId}/content"
	dlURL := func(id string) string { return base + "/v1/instances/" + dl.ID + "/attachments/" + id + "/content" }
	dh := []string{"X-Relay-Key", dl.Client, "Authorization", jiraAuth}
	whole := c.do(oaCall{op: D, url: dlURL(attID), headers: dh, want: 200})
	if !bytes.Equal(whole.Body, file) {
		t.Errorf("download: %d bytes, want the %d uploaded", len(whole.Body), len(file))
	}
	c.do(oaCall{op: D, url: dlURL(attID), headers: with(dh, "Range", "bytes=0-9"), want: 206})
	c.do(oaCall{op: D, url: dlURL("abc"), headers: dh, want: 400, code: "invalid_attachment_id"})
	c.do(oaCall{op: D, url: dlURL(attID), headers: with(dh, "Range", "lines=1"), want: 400, code: "invalid_range"})
	c.do(oaCall{op: D, url: dlURL(attID), headers: []string{"X-Relay-Key", dl.Client}, want: 401, code: "missing_authorization"})
	c.do(oaCall{op: D, url: dlURL("99999999"), headers: dh, want: 404})

	// The key each operation documents.
	for _, o := range d.ops(t) {
		role, _ := o.Op["x-relay-key"].(string)
		if role == "none" {
			continue
		}
		u := base + pathParamRe.ReplaceAllStringFunc(o.Path, func(p string) string {
			return map[string]string{"{id}": tn.ID, "{userId}": "u1", "{issue}": "OPS-1", "{attachmentId}": "10000"}[p]
		})
		c.do(oaCall{op: o.key(), url: u, want: 401, code: "unauthorized"})
		c.do(oaCall{op: o.key(), url: u, headers: []string{"X-Relay-Key", "wrong"}, want: 401, code: "unauthorized"})
		if role == "admin" {
			c.do(oaCall{op: o.key(), url: u, headers: ck, want: 403, code: "forbidden"})
		} else if r := c.do(oaCall{op: o.key(), url: u, headers: ck}); r.Code() == "forbidden" || r.Code() == "unauthorized" {
			// No body or query: the client key gets past the key check
			// and the request fails on what it lacks, never on the key.
			t.Errorf("%s is documented for the client key, which gets %d %s", o.key(), r.Status, r.Body)
		}
	}

	// Key rotation, then the tenant's erasure.
	rot := c.do(oaCall{op: "POST /v1/instances/{id}/keys/rotate", url: inst + "/keys/rotate", headers: ak, want: 200})
	var k struct{ ClientKey string }
	rot.Decode(t, &k)
	c.do(oaCall{op: "GET /v1/instances/{id}/config", url: cfg, headers: ck, want: 401})
	c.do(oaCall{op: "GET /v1/instances/{id}/config", url: cfg, headers: []string{"X-Relay-Key", k.ClientKey}, want: 200})
	c.do(oaCall{op: "DELETE /v1/instances/{id}", url: inst, headers: ak, want: 204})
	if !relaytest.Eventually(3*time.Second, func() bool { return call(t, "GET", inst, nil, ak...).Status == 404 }) {
		t.Error("the erased instance is still served")
	}
	c.do(oaCall{op: "DELETE /v1/instances/{id}", url: inst, headers: ak, want: 404, code: "instance_not_found"})

	// Last, as it holds this address back: failed key checks, until the relay
	// refuses the address (for as long as its bucket takes to refill).
	var limited relaytest.Answer
	for i := 0; i < 1000 && limited.Status != 429; i++ {
		limited = c.do(oaCall{op: "GET /v1/instances/{id}/config", url: base + "/v1/instances/" + dl.ID + "/config", headers: []string{"X-Relay-Key", "wrong"}})
	}
	if limited.Status != 429 || limited.Code() != "rate_limited_auth_failures" {
		t.Errorf("failed key checks were never limited: %d %s", limited.Status, limited.Body)
	}

	// Every operation was exercised, with a success.
	for _, o := range d.ops(t) {
		ok := false
		for s := range c.seen[o.key()] {
			ok = ok || s < 300
		}
		if !ok {
			t.Errorf("%s: the conformance run never got a success from it", o.key())
		}
	}
}

func encodeBase64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// encodeBase64Lines is base64 with CRLF every 76 characters, as MIME (and
// some Office.js hosts) write it.
func encodeBase64Lines(b []byte) string {
	s := encodeBase64(b)
	var sb strings.Builder
	for len(s) > 76 {
		sb.WriteString(s[:76])
		sb.WriteString("\r\n")
		s = s[76:]
	}
	sb.WriteString(s)
	return sb.String()
}
