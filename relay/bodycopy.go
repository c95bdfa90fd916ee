package relay

import (
	"io"
	"sync"
)

// copyChunk is how much of the caller's body one read may take on its way
// to Jira. fasthttp would otherwise stream the body through the
// HostClient's 64 KiB write buffer (bufio.Writer.ReadFrom): reads of at most
// what is free of it and a write per 64 KiB, system calls that are nearly
// all of a plain upload's CPU. With upBody.WriteTo each read takes up to
// 256 KiB of what the caller has sent and is written on at once (a write
// that large bypasses the buffer), so a fast caller costs a quarter of the
// system calls, and a slow one is forwarded as it comes, as before.
const copyChunk = 256 << 10

var copyPool = sync.Pool{New: func() any {
	b := make([]byte, copyChunk)
	return &b
}}

// WriteTo streams the body to w (fasthttp's writer of the request body) a
// read at a time; fasthttp uses it instead of reading into its own buffer.
// Every read goes through Read, with its checks (Jira stopped reading, the
// caller's body ended or broke).
func (b *upBody) WriteTo(w io.Writer) (int64, error) {
	bp := copyPool.Get().(*[]byte)
	defer copyPool.Put(bp)
	buf := *bp
	var n int64
	for empty := 0; ; {
		nr, rerr := b.Read(buf)
		if nr > 0 {
			empty = 0
			nw, werr := w.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
			if nw < nr {
				return n, io.ErrShortWrite
			}
		} else if rerr == nil {
			if empty++; empty >= 100 {
				return n, io.ErrNoProgress
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
