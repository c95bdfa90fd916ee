package upload

import "io"

// LimitReader passes a body through, counts its bytes and stops it with a
// *TooLargeError (matching ErrTooLarge) as soon as it runs past a limit. It
// never reads more than limit+1 bytes from the underlying reader, so an
// oversized body is rejected after at most one extra byte.
//
// With ExpectLen it also checks a declared length (an HTTP Content-Length):
// a body that ends early yields io.ErrUnexpectedEOF, one that runs past it
// a *SizeMismatchError.
//
// A LimitReader is not safe for concurrent use.
type LimitReader struct {
	r      io.Reader
	max    int64 // < 0: no limit
	expect int64 // < 0: no declared length
	n      int64 // bytes delivered
	err    error // sticky error of our own making
}

// NewLimitReader returns a LimitReader reading from r that permits at most
// max bytes. A negative max means no limit: the reader only counts.
func NewLimitReader(r io.Reader, max int64) *LimitReader {
	return &LimitReader{r: r, max: max, expect: -1}
}

// ExpectLen declares that the body is exactly n bytes long, typically its
// Content-Length; a negative n removes the declaration. Call it before the
// first Read. If n already exceeds the limit it returns a *TooLargeError
// right away, so a handler can refuse the request without reading the body;
// the reader then fails every Read with that error.
func (l *LimitReader) ExpectLen(n int64) error {
	if n < 0 {
		l.expect = -1
		return nil
	}
	l.expect = n
	if l.max >= 0 && n > l.max {
		l.err = &TooLargeError{Limit: l.max}
		return l.err
	}
	return nil
}

// N returns the number of bytes passed through so far. It never exceeds the
// limit.
func (l *LimitReader) N() int64 { return l.n }

// Read implements io.Reader. Errors of the underlying reader are returned
// unchanged.
func (l *LimitReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	// bound is the most bytes the body may have; read at most one past it,
	// just enough to detect an overrun.
	bound := l.max
	if l.expect >= 0 && (bound < 0 || l.expect < bound) {
		bound = l.expect
	}
	if bound >= 0 {
		if room := bound - l.n + 1; int64(len(p)) > room {
			p = p[:room]
		}
	}
	k, err := l.r.Read(p)
	if bound >= 0 && l.n+int64(k) > bound {
		seen := l.n + int64(k)
		k = int(bound - l.n)
		l.n = bound
		if l.max >= 0 && seen > l.max {
			l.err = &TooLargeError{Limit: l.max}
		} else {
			l.err = &SizeMismatchError{Want: l.expect, Got: seen}
		}
		return k, l.err
	}
	l.n += int64(k)
	if err == io.EOF && l.expect >= 0 && l.n < l.expect {
		l.err = io.ErrUnexpectedEOF
		return k, l.err
	}
	return k, err
}
