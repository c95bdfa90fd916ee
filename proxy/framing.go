package proxy

import (
	"bytes"
	"github.com/jira-relay/jira-relay/internal/httpx"

	"github.com/valyala/fasthttp"
)

// framingError refuses request-smuggling shapes before anything else looks
// at the request: Transfer-Encoding together with Content-Length, a transfer
// coding other than "chunked", or two Content-Length headers. A load
// balancer in front of the relay could frame such a request differently
// than the relay does (RFC 9112 §6.3). It also refuses two Authorization or
// two X-Relay-Key headers: which of them counts would be the relay's guess
// (it would check one key and forward one credential), and a proxy in front
// may have judged by the other. The answer closes the connection.
func framingError(ctx *fasthttp.RequestCtx) *httpx.Error {
	var te, cl, auth, key, ctype, rng int
	teChunked := true
	httpx.HeaderLines(ctx.Request.Header.RawHeaders(), func(name, value []byte) bool {
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			te++
			if !bytes.EqualFold(bytes.TrimSpace(value), []byte("chunked")) {
				teChunked = false
			}
		case bytes.EqualFold(name, []byte("Content-Length")):
			cl++
		case bytes.EqualFold(name, []byte("Authorization")):
			auth++
		case bytes.EqualFold(name, []byte("X-Relay-Key")):
			key++
		case bytes.EqualFold(name, []byte("Content-Type")):
			ctype++
		case bytes.EqualFold(name, []byte("Range")):
			rng++
		}
		return true
	})
	switch {
	case te > 0 && cl > 0:
		return httpx.Err(400, "ambiguous_framing", "a request may not carry both Transfer-Encoding and Content-Length")
	case te > 1 || !teChunked:
		return httpx.Err(400, "unsupported_transfer_encoding", `the only transfer coding accepted is a single "chunked"`)
	case cl > 1:
		return httpx.Err(400, "ambiguous_framing", "a request may carry one Content-Length")
	case auth > 1:
		return httpx.Err(400, "duplicate_header", "a request may carry one Authorization header")
	case key > 1:
		return httpx.Err(400, "duplicate_header", "a request may carry one X-Relay-Key header")
	case ctype > 1:
		return httpx.Err(400, "duplicate_header", "a request may carry one Content-Type header")
	case rng > 1:
		return httpx.Err(400, "duplicate_header", "a request may carry one Range header")
	}
	return nil
}
