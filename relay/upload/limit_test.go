package upload

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestLimitReader(t *testing.T) {
	tests := []struct {
		name      string
		max       int64
		expect    int64 // -1: no ExpectLen
		size      int
		wantN     int64
		wantErr   error // nil: clean EOF
		maxSource int64 // most bytes that may be read from the source
	}{
		{"under the limit", 100, -1, 99, 99, nil, 100},
		{"at the limit", 100, -1, 100, 100, nil, 101},
		{"one over", 100, -1, 101, 100, ErrTooLarge, 101},
		{"far over", 100, -1, 1 << 20, 100, ErrTooLarge, 101},
		{"zero limit, empty", 0, -1, 0, 0, nil, 1},
		{"zero limit, one byte", 0, -1, 1, 0, ErrTooLarge, 1},
		{"large chunks over", 3 * bufSize, -1, 5 * bufSize, 3 * bufSize, ErrTooLarge, 3*bufSize + 1},
		{"no limit", -1, -1, 1 << 20, 1 << 20, nil, 1 << 20},
		{"expected length met", 100, 50, 50, 50, nil, 51},
		{"expected length, body short", 100, 50, 49, 49, io.ErrUnexpectedEOF, 50},
		{"expected length, body empty", 100, 50, 0, 0, io.ErrUnexpectedEOF, 50},
		{"expected length, body long", 100, 50, 80, 50, ErrSizeMismatch, 51},
		{"expected length, no limit, short", -1, 50, 10, 10, io.ErrUnexpectedEOF, 50},
		{"expected length at the limit, long", 100, 100, 200, 100, ErrTooLarge, 101},
		{"expected zero", 100, 0, 0, 0, nil, 1},
	}
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/oneByte=%v", tt.name, oneByte), func(t *testing.T) {
				src := &countingReader{r: strings.NewReader(strings.Repeat("x", tt.size))}
				l := NewLimitReader(src, tt.max)
				if tt.expect >= 0 {
					if err := l.ExpectLen(tt.expect); err != nil {
						t.Fatalf("ExpectLen: %v", err)
					}
				}
				var r io.Reader = l
				if oneByte {
					r = iotest.OneByteReader(l)
				}
				got, err := io.ReadAll(r)
				if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if int64(len(got)) != tt.wantN || l.N() != tt.wantN {
					t.Errorf("passed %d bytes, N() = %d; want %d", len(got), l.N(), tt.wantN)
				}
				if src.n > tt.maxSource {
					t.Errorf("read %d bytes from the source, want at most %d", src.n, tt.maxSource)
				}
				var tl *TooLargeError
				if errors.As(err, &tl) && tl.Limit != tt.max {
					t.Errorf("TooLargeError.Limit = %d, want %d", tl.Limit, tt.max)
				}
				if _, err2 := l.Read(make([]byte, 1)); err != nil && err2 != err {
					t.Errorf("error not sticky: then %v", err2)
				}
			})
		}
	}
}

func TestLimitReaderExpectLenOverLimit(t *testing.T) {
	src := &countingReader{r: strings.NewReader("hello")}
	l := NewLimitReader(src, 4)
	err := l.ExpectLen(5)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ExpectLen(5) with limit 4 = %v, want ErrTooLarge", err)
	}
	if n, err2 := l.Read(make([]byte, 10)); n != 0 || err2 != err {
		t.Errorf("Read = %d, %v; want 0, %v", n, err2, err)
	}
	if src.n != 0 {
		t.Errorf("read %d bytes of a body already refused", src.n)
	}
}

func TestLimitReaderPassesSourceErrors(t *testing.T) {
	wrapped := fmt.Errorf("read body: %w", errBody)
	l := NewLimitReader(&failAfterReader{data: []byte("abc"), err: wrapped}, 100)
	got, err := io.ReadAll(l)
	if err != wrapped || string(got) != "abc" || l.N() != 3 {
		t.Errorf("= %q, %v, N=%d; want abc, the source's error unchanged, 3", got, err, l.N())
	}
}

func TestLimitReaderIOTest(t *testing.T) {
	data := []byte(strings.Repeat("0123456789", 10000))
	l := NewLimitReader(strings.NewReader(string(data)), int64(len(data)))
	if err := iotest.TestReader(l, data); err != nil {
		t.Error(err)
	}
}
