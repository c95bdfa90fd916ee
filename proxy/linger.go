package proxy

import (
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// Lingering close bounds: after a refusal sent while the caller was still
// sending its body, the relay keeps reading (and discarding) for a while
// before it closes, as nginx does. Closing a socket with unread data makes
// the kernel send a reset, and a reset arriving at the caller discards the
// refusal it has not read yet; the caller would see "connection reset"
// instead of 413 or 429.
const (
	lingerTime  = 3 * time.Second
	lingerBytes = 64 << 20
)

// lingerIfBodyUnread arranges a lingering close when the request has a body
// that the handler did not read to its end.
func lingerIfBodyUnread(ctx *fasthttp.RequestCtx) {
	cl := ctx.Request.Header.ContentLength()
	if cl == 0 || ctx.Request.Header.IsGet() {
		return
	}
	ctx.Hijack(func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(lingerTime))
		_, _ = io.CopyN(io.Discard, c, lingerBytes)
		_ = c.Close()
	})
}
