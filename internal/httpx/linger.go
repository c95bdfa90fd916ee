package httpx

import (
	"bytes"
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

// fasthttpDiscards is how much unread body fasthttp itself reads and drops
// after a handler, keeping the connection alive (its maxUnreadStreamBodySize).
const fasthttpDiscards = 256 << 10

// LingerIfBodyUnread arranges a lingering close when the request has a body
// larger than fasthttp discards by itself (or of unknown length) that the
// handler did not read to its end. Smaller bodies are drained by fasthttp and
// the connection stays alive.
func LingerIfBodyUnread(ctx *fasthttp.RequestCtx) {
	if bodyBroken(ctx) {
		return
	}
	if read, _ := ctx.UserValue(bodyReadKey).(bool); read {
		return // the handler read the body to its end
	}
	cl := ctx.Request.Header.ContentLength()
	if cl == 0 || (cl > 0 && cl <= fasthttpDiscards) || ctx.Request.Header.IsGet() {
		return
	}
	// The answer says Connection: close, so the caller does not send another
	// request on this connection. fasthttp would close right after writing
	// such an answer, so the relay writes it itself on the hijacked
	// connection, then lingers.
	ctx.Response.Header.SetConnectionClose()
	var answer bytes.Buffer
	if _, err := ctx.Response.WriteTo(&answer); err != nil {
		return
	}
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		_ = c.SetWriteDeadline(time.Now().Add(lingerTime))
		if _, err := c.Write(answer.Bytes()); err == nil {
			_ = c.SetReadDeadline(time.Now().Add(lingerTime))
			_, _ = io.CopyN(io.Discard, c, lingerBytes)
		}
		_ = c.Close()
	})
}
