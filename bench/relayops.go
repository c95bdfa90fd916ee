package bench

import (
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Target is where a phase sends its requests.
type Target interface {
	// Name labels the target in reports: "relay", "direct", "nginx", ….
	Name() string
	// Do sends one request of op from w and returns the bytes it moved
	// (file bytes for uploads, request plus response bodies otherwise) and
	// "" on success or the kind of error: a status such as "429", or
	// "transport: …".
	Do(w *worker, op Op) (bytes int64, errKind string)
	// Supports reports whether the target can play op.
	Supports(op Op) bool
}

// jiraAuth is the Authorization header every upload carries: the relay
// passes it to Jira unchanged, the fake Jira only wants one.
const jiraAuth = "Basic YmVuY2hAZXhhbXBsZS5jb206YmVuY2gtdG9rZW4="

// RelayTarget plays add-in traffic at the relay's API.
type RelayTarget struct {
	E       *Endpoint
	T       *Tenant
	Sizes   SizeMix
	Body    string        // "raw" (default) or "multipart": how uploads reach the relay
	Timeout time.Duration // per request
	seq     atomic.Int64
	base    string // …/v1/instances/{id}
	// es and bases, with Spread, are every relay of a fleet: worker i
	// sends to relay i mod len(es).
	es    []*Endpoint
	bases []string
}

// NewRelayTarget plays traffic as tenant t; body is "raw" or "multipart".
func NewRelayTarget(e *Endpoint, t *Tenant, sizes SizeMix, body string, timeout time.Duration) *RelayTarget {
	return &RelayTarget{E: e, T: t, Sizes: sizes, Body: body, Timeout: timeout,
		base: e.Base + e.Path + "/v1/instances/" + url.PathEscape(t.ID)}
}

// Spread sends the load of worker i to es[i mod len(es)] instead of E:
// the relays of a fleet, each worker (and its connection) pinned to one,
// workers assigned round-robin.
func (r *RelayTarget) Spread(es []*Endpoint) {
	r.es, r.bases = es, make([]string, len(es))
	for i, e := range es {
		r.bases[i] = e.Base + e.Path + "/v1/instances/" + url.PathEscape(r.T.ID)
	}
}

// pick is the endpoint and instance URL worker w sends to.
func (r *RelayTarget) pick(w *worker) (*Endpoint, string) {
	if len(r.es) == 0 {
		return r.E, r.base
	}
	i := w.id % len(r.es)
	return r.es[i], r.bases[i]
}

// Name implements Target.
func (r *RelayTarget) Name() string { return "relay" }

// Supports implements Target: every operation.
func (r *RelayTarget) Supports(Op) bool { return true }

// Do implements Target.
func (r *RelayTarget) Do(w *worker, op Op) (int64, string) {
	req, resp := w.req, w.resp
	req.Reset()
	resp.Reset()
	req.Header.Set("X-Relay-Key", r.T.ClientKey)
	e, base := r.pick(w)
	n := r.seq.Add(1)
	var want1, want2 int
	var sent int64
	var fileBytes int64 = -1
	switch op {
	case OpUpload:
		size := r.Sizes.Pick(w.rnd)
		fileBytes = size
		uri := append(w.buf[:0], base...)
		uri = append(uri, "/issues/BENCH-"...)
		uri = strconv.AppendInt(uri, n, 10)
		uri = append(uri, "/attachments"...)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.Set("Authorization", jiraAuth)
		if r.Body == "multipart" {
			b := NewMultipartBody(w.ctx, size, "attachment-"+strconv.FormatInt(n, 10)+".bin")
			req.SetRequestURIBytes(uri)
			req.Header.SetContentType(MultipartContentType)
			req.SetBodyStream(b, int(b.Len()))
		} else {
			uri = append(uri, "?filename=attachment-"...)
			uri = strconv.AppendInt(uri, n, 10)
			uri = append(uri, ".bin"...)
			req.SetRequestURIBytes(uri)
			req.Header.SetContentType("application/octet-stream")
			req.SetBodyStream(NewBody(w.ctx, size), int(size))
		}
		w.buf = uri
		want1, want2 = 200, 201
	case OpConfig:
		req.Header.SetMethod(fasthttp.MethodGet)
		req.SetRequestURI(base + "/config")
		req.Header.Set("If-None-Match", r.T.ETag)
		want1, want2 = 304, 304
	case OpMapWrite:
		b := w.buf[:0]
		conv := r.T.Convs[w.rnd.IntN(len(r.T.Convs))]
		user := r.T.Users[w.rnd.IntN(len(r.T.Users))]
		b = append(b, `{"conversationId":"`...)
		b = append(b, conv...)
		b = append(b, `","mailId":"<w`...)
		b = strconv.AppendInt(b, n, 10)
		b = append(b, '.')
		b = append(b, r.T.RunID...)
		b = append(b, `@bench.example.com>","userId":"`...)
		b = append(b, user...)
		b = append(b, `","app":"outlook","jira":{"id":"`...)
		b = strconv.AppendInt(b, 20000+n%100000, 10)
		b = append(b, `","key":"BENCH-`...)
		b = strconv.AppendInt(b, 1+n%100000, 10)
		b = append(b, `","projectId":"10000"}}`...)
		w.buf = b
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI(base + "/mappings")
		req.Header.SetContentType("application/json")
		req.SetBody(b)
		sent = int64(len(b))
		want1, want2 = 201, 200
	case OpMapRead:
		conv := r.T.Convs[w.rnd.IntN(len(r.T.Convs))]
		req.Header.SetMethod(fasthttp.MethodGet)
		req.SetRequestURI(base + "/mappings?conversationId=" + url.QueryEscape(conv))
		want1, want2 = 200, 200
	}
	if err := e.Do(req, resp, time.Now().Add(r.Timeout)); err != nil {
		return 0, transportKind(err)
	}
	if s := resp.StatusCode(); s != want1 && s != want2 {
		return 0, statusKind(s)
	}
	if fileBytes >= 0 {
		return fileBytes, ""
	}
	return sent + int64(len(resp.Body())), ""
}

// transportKind shortens a client error into an error kind.
func transportKind(err error) string {
	s := err.Error()
	if len(s) > 60 {
		s = s[:60]
	}
	return "transport: " + s
}
