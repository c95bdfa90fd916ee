package relay

import (
	"net"
	"sync"
)

// recordBatch sits between an upstream TLS connection and its socket and
// gathers the records of one write into one write to the socket. crypto/tls
// writes every record (at most 16 KiB of payload) with a write call of its
// own, so one write of a 256 KiB body chunk (upBody.WriteTo) cost sixteen
// write system calls; batched, it costs one. (The buffer copy it adds is
// cheaper than the system calls it saves, and the socket gets larger
// segments.)
//
// idleConn brackets each write to the TLS connection with begin and end:
// between them the records are gathered in a pooled buffer, which end
// writes to the socket and gives back, so an idle pooled connection holds
// no buffer. Outside a bracket (the handshake, which crypto/tls buffers
// itself, a close_notify alert) writes go straight to the socket.
type recordBatch struct {
	net.Conn
	mu  sync.Mutex
	buf *[]byte // the gathered records while batching; nil: not batching
}

// batchSize holds the records of one write of a body chunk (copyChunk:
// sixteen full records) with their headers and tags (22 bytes each in TLS
// 1.3, 29 in TLS 1.2), with room to spare.
const batchSize = copyChunk + 4<<10

var batchPool = sync.Pool{New: func() any {
	b := make([]byte, 0, batchSize)
	return &b
}}

// begin starts gathering records.
func (b *recordBatch) begin() {
	bp := batchPool.Get().(*[]byte)
	b.mu.Lock()
	b.buf = bp
	b.mu.Unlock()
}

// end writes what was gathered to the socket, and stops gathering.
func (b *recordBatch) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.flushLocked()
	bp := b.buf
	b.buf = nil
	*bp = (*bp)[:0]
	batchPool.Put(bp)
	return err
}

// Write gathers p while batching (flushing first when p would not fit),
// else writes it to the socket.
func (b *recordBatch) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf == nil {
		return b.Conn.Write(p)
	}
	if len(*b.buf)+len(p) > cap(*b.buf) {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > cap(*b.buf) {
			return b.Conn.Write(p)
		}
	}
	*b.buf = append(*b.buf, p...)
	return len(p), nil
}

// flushLocked writes the gathered records to the socket.
func (b *recordBatch) flushLocked() error {
	if len(*b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(*b.buf)
	*b.buf = (*b.buf)[:0]
	return err
}
