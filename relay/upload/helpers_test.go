package upload

import (
	"errors"
	"io"
	"math/rand/v2"
)

// readOnly hides every method of a reader but Read (such as WriterTo), the
// way a socket stream looks.
type readOnly struct{ r io.Reader }

func (r readOnly) Read(p []byte) (int, error) { return r.r.Read(p) }

// writeOnly hides every method of a writer but Write (such as ReaderFrom).
type writeOnly struct{ w io.Writer }

func (w writeOnly) Write(p []byte) (int, error) { return w.w.Write(p) }

// countingReader counts the bytes read from r.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// failAfterReader yields data, then fails with err instead of io.EOF.
type failAfterReader struct {
	data []byte
	err  error
}

func (f *failAfterReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

// failAfterWriterTo is a body whose WriteTo writes data, then fails with err.
type failAfterWriterTo struct {
	failAfterReader
}

func (f *failAfterWriterTo) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(f.data)
	f.data = f.data[n:]
	if err != nil {
		return int64(n), err
	}
	return int64(n), f.err
}

// limitedWriter accepts max bytes, then fails with errWriterFull.
type limitedWriter struct {
	buf []byte
	max int
}

var errWriterFull = errors.New("test writer full")

func (w *limitedWriter) Write(p []byte) (int, error) {
	room := w.max - len(w.buf)
	if len(p) > room {
		w.buf = append(w.buf, p[:room]...)
		return room, errWriterFull
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// repeatReader yields size bytes of a fixed pattern and then io.EOF. It has
// only Read, like a socket, and costs one memmove per Read.
type repeatReader struct {
	pattern []byte
	size    int64
	off     int64
}

func newRepeatReader(size int64) *repeatReader {
	return &repeatReader{pattern: randomBytes(1<<20, 1), size: size}
}

func (r *repeatReader) reset() { r.off = 0 }

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if rem := r.size - r.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	n := copy(p, r.pattern[r.off%int64(len(r.pattern)):])
	r.off += int64(n)
	return n, nil
}

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}
