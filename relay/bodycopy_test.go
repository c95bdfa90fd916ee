package relay

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// writeCounter records the writes it is given.
type writeCounter struct {
	bytes.Buffer
	writes []int
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, len(p))
	return w.Buffer.Write(p)
}

// upBody.WriteTo hands fasthttp each read of the caller's body as it comes,
// up to copyChunk at a time: a caller with plenty sent costs one write per
// 256 KiB, a trickle is forwarded a piece at a time, the bytes arrive whole
// and in order, and the caller's errors are told apart from its EOF.
func TestUpBodyWriteTo(t *testing.T) {
	body := make([]byte, 3*copyChunk+123)
	for i := range body {
		body[i] = byte(i * 31)
	}
	t.Run("plenty", func(t *testing.T) {
		var w writeCounter
		b := &upBody{r: bytes.NewReader(body), size: int64(len(body))}
		n, err := b.WriteTo(&w)
		if err != nil || n != int64(len(body)) || !bytes.Equal(w.Bytes(), body) || !b.done {
			t.Fatalf("WriteTo = %d, %v (done %v); want the %d bytes whole", n, err, b.done, len(body))
		}
		if len(w.writes) != 4 || w.writes[0] != copyChunk {
			t.Errorf("writes %v, want 3 of %d and the rest", w.writes, copyChunk)
		}
	})
	t.Run("trickle", func(t *testing.T) {
		var w writeCounter
		b := &upBody{r: iotest.OneByteReader(bytes.NewReader(body[:1000])), size: 1000}
		if n, err := b.WriteTo(&w); err != nil || n != 1000 || !bytes.Equal(w.Bytes(), body[:1000]) {
			t.Fatalf("WriteTo = %d, %v", n, err)
		}
		if len(w.writes) != 1000 {
			t.Errorf("%d writes for 1000 reads of a byte: a read was held back", len(w.writes))
		}
	})
	t.Run("caller breaks", func(t *testing.T) {
		boom := errors.New("connection reset")
		b := &upBody{r: io.MultiReader(bytes.NewReader(body[:5000]), iotest.ErrReader(boom)), size: int64(len(body))}
		var w writeCounter
		if n, err := b.WriteTo(&w); !errors.Is(err, boom) || n != 5000 || !errors.Is(b.err, boom) || b.done {
			t.Fatalf("WriteTo = %d, %v (err %v, done %v); want 5000 bytes and the caller's error", n, err, b.err, b.done)
		}
	})
	t.Run("no progress", func(t *testing.T) {
		b := &upBody{r: readerFunc(func([]byte) (int, error) { return 0, nil }), size: 10}
		if _, err := b.WriteTo(io.Discard); !errors.Is(err, io.ErrNoProgress) {
			t.Fatalf("WriteTo of a reader that never moves: %v, want io.ErrNoProgress", err)
		}
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
