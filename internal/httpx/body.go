package httpx

import (
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// Body reads the caller's body from the socket, moving the read deadline
// forward so that a stalled caller is cut off after the idle timeout while a
// slow but steady one may take as long as it needs.
type Body struct {
	N        int64 // bytes read so far
	ctx      *fasthttp.RequestCtx
	r        io.Reader
	conn     net.Conn
	idle     time.Duration
	deadline time.Time
}

// NewBody reads ctx's streamed request body with an idle timeout (0: none).
func NewBody(ctx *fasthttp.RequestCtx, idle time.Duration) *Body {
	return &Body{ctx: ctx, r: ctx.RequestBodyStream(), conn: ctx.Conn(), idle: idle}
}

func (b *Body) Read(p []byte) (int, error) {
	if b.r == nil {
		// No Content-Length and no Transfer-Encoding: an empty body
		// (RFC 9112 §6.3), for which fasthttp gives no stream.
		b.ended()
		return 0, io.EOF
	}
	if b.idle > 0 && b.conn != nil {
		if now := time.Now(); b.deadline.Sub(now) < b.idle*3/4 {
			b.deadline = now.Add(b.idle)
			_ = b.conn.SetReadDeadline(b.deadline)
		}
	}
	n, err := b.r.Read(p)
	b.N += int64(n)
	if err == io.EOF {
		b.ended()
	}
	return n, err
}

// ended records that the whole body was read: a refusal after it has
// nothing to linger for (LingerIfBodyUnread).
func (b *Body) ended() {
	if b.ctx != nil {
		b.ctx.SetUserValue(bodyReadKey, true)
	}
}
