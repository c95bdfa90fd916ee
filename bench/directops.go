package bench

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// JiraTarget uploads Jira-style: a multipart/form-data POST to
// {base}/rest/api/3/issue/{key}/attachments with X-Atlassian-Token:
// no-check and an Authorization header, straight at the fake Jira
// ("direct") or at a proxy in front of it (nginx, HAProxy, Caddy).
type JiraTarget struct {
	Label   string
	E       *Endpoint
	Sizes   SizeMix
	Timeout time.Duration
	seq     atomic.Int64
}

// Name implements Target.
func (j *JiraTarget) Name() string { return j.Label }

// Supports implements Target: uploads only.
func (j *JiraTarget) Supports(op Op) bool { return op == OpUpload }

// Do implements Target.
func (j *JiraTarget) Do(w *worker, op Op) (int64, string) {
	if op != OpUpload {
		return 0, "unsupported"
	}
	req, resp := w.req, w.resp
	req.Reset()
	resp.Reset()
	n := j.seq.Add(1)
	size := j.Sizes.Pick(w.rnd)
	uri := append(w.buf[:0], j.E.Base...)
	uri = append(uri, j.E.Path...)
	uri = append(uri, "/rest/api/3/issue/BENCH-"...)
	uri = strconv.AppendInt(uri, n, 10)
	uri = append(uri, "/attachments"...)
	w.buf = uri
	req.SetRequestURIBytes(uri)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.Set("X-Atlassian-Token", "no-check")
	req.Header.Set("Authorization", jiraAuth)
	req.Header.Set("Accept", "application/json")
	req.Header.SetContentType(MultipartContentType)
	b := NewMultipartBody(w.ctx, size, "attachment-"+strconv.FormatInt(n, 10)+".bin")
	req.SetBodyStream(b, int(b.Len()))
	if err := j.E.Do(req, resp, time.Now().Add(j.Timeout)); err != nil {
		return 0, transportKind(err)
	}
	if s := resp.StatusCode(); s != 200 {
		return 0, statusKind(s)
	}
	return size, ""
}
