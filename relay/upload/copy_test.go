package upload

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// readerFromWriter is a destination with ReadFrom that records its use.
type readerFromWriter struct {
	bytes.Buffer
	used bool
}

func (w *readerFromWriter) ReadFrom(r io.Reader) (int64, error) {
	w.used = true
	return w.Buffer.ReadFrom(r)
}

// writerToReader is a source with WriteTo that records its use.
type writerToReader struct {
	*bytes.Reader
	used bool
}

func (r *writerToReader) WriteTo(w io.Writer) (int64, error) {
	r.used = true
	return r.Reader.WriteTo(w)
}

func TestCopy(t *testing.T) {
	for _, size := range []int{0, 1, bufSize - 1, bufSize, bufSize + 1, 1 << 20} {
		data := randomBytes(size, uint64(size))
		t.Run(fmt.Sprintf("%d/pooled buffer", size), func(t *testing.T) {
			var dst bytes.Buffer
			n, err := Copy(writeOnly{&dst}, readOnly{bytes.NewReader(data)})
			if err != nil || n != int64(size) || !bytes.Equal(dst.Bytes(), data) {
				t.Errorf("Copy = %d, %v; want %d bytes", n, err, size)
			}
		})
		t.Run(fmt.Sprintf("%d/WriterTo", size), func(t *testing.T) {
			src := &writerToReader{Reader: bytes.NewReader(data)}
			dst := &readerFromWriter{}
			n, err := Copy(dst, src)
			if err != nil || n != int64(size) || !bytes.Equal(dst.Bytes(), data) || !src.used || dst.used {
				t.Errorf("Copy = %d, %v (WriteTo used %v, ReadFrom used %v); want %d bytes via WriteTo", n, err, src.used, dst.used, size)
			}
		})
		t.Run(fmt.Sprintf("%d/ReaderFrom", size), func(t *testing.T) {
			dst := &readerFromWriter{}
			n, err := Copy(dst, readOnly{bytes.NewReader(data)})
			if err != nil || n != int64(size) || !bytes.Equal(dst.Bytes(), data) || !dst.used {
				t.Errorf("Copy = %d, %v (ReadFrom used %v); want %d bytes via ReadFrom", n, err, dst.used, size)
			}
		})
	}
}

func TestCopyErrors(t *testing.T) {
	wrapped := fmt.Errorf("read body: %w", errBody)
	n, err := Copy(writeOnly{io.Discard}, &failAfterReader{data: []byte("abc"), err: wrapped})
	if n != 3 || err != wrapped {
		t.Errorf("source error: Copy = %d, %v; want 3, the source's error", n, err)
	}
	w := &limitedWriter{max: 10}
	n, err = Copy(w, readOnly{strings.NewReader(strings.Repeat("x", 100))})
	if n != 10 || !errors.Is(err, errWriterFull) {
		t.Errorf("destination error: Copy = %d, %v; want 10, %v", n, err, errWriterFull)
	}
}

func TestCopyDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	src := newRepeatReader(1 << 20)
	var dst io.Writer = writeOnly{io.Discard}
	Copy(dst, src) // warm the pool
	allocs := testing.AllocsPerRun(20, func() {
		src.reset()
		if _, err := Copy(dst, src); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Copy allocated %v times per call, want 0", allocs)
	}
}

func BenchmarkCopy(b *testing.B) {
	const size = 64 << 20
	src := newRepeatReader(size)
	var dst io.Writer = writeOnly{io.Discard}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		src.reset()
		if _, err := Copy(dst, src); err != nil {
			b.Fatal(err)
		}
	}
}
