package relay

import (
	"bytes"
	"errors"
	"io"
	"strings"

	"github.com/valyala/fasthttp"
)

// maxJiraAnswer bounds the JSON answer of an upload that the relay relays back.
const maxJiraAnswer = 1 << 20

// keepJiraHeader decides which headers of Jira's answer reach the caller:
// the media type, Jira's rate-limit headers, and for downloads what a range
// or cache needs. Nothing else (cookies, Atlassian internals) passes.
func keepJiraHeader(k []byte, download bool) bool {
	lk := strings.ToLower(string(k))
	switch lk {
	case "content-type", "retry-after":
		return true
	case "content-disposition", "content-range", "accept-ranges", "etag", "last-modified":
		return download
	}
	return strings.HasPrefix(lk, "x-ratelimit-") || strings.HasPrefix(lk, "ratelimit") || strings.HasPrefix(lk, "beta-ratelimit")
}

func copyJiraHeaders(dst *fasthttp.ResponseHeader, src *fasthttp.ResponseHeader, download bool) {
	for k, v := range src.All() {
		if keepJiraHeader(k, download) {
			dst.SetBytesKV(k, v)
		}
	}
}

// readLimited reads Jira's (small) answer whole, refusing more than limit.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, errors.New("jira's answer is larger than 1 MiB")
	}
	return buf.Bytes(), nil
}
