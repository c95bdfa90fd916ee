package upload

import (
	"encoding/base64"
	"fmt"
	"io"
)

// Classes of input bytes in b64Table. Every alphabet byte maps to its
// standard-alphabet character, which is greater than all of these.
const (
	b64Invalid = 0
	b64Space   = 1 // ' ', '\t', '\r', '\n': skipped
	b64Pad     = 2 // '='
)

// b64Table maps an input byte to its class or, for the standard and URL-safe
// alphabets, to the standard-alphabet character it stands for.
var b64Table = func() (t [256]byte) {
	const std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(std); i++ {
		t[std[i]] = std[i]
	}
	t['-'] = '+'
	t['_'] = '/'
	t[' '], t['\t'], t['\r'], t['\n'] = b64Space, b64Space, b64Space, b64Space
	t['='] = b64Pad
	return t
}()

// b64Std is 1 for the bytes of the standard alphabet, 0 for all others.
var b64Std = func() (t [256]byte) {
	for c, v := range b64Table {
		if v > b64Pad && v == byte(c) {
			t[c] = 1
		}
	}
	return t
}()

// NewBase64Decoder returns a reader that decodes the base64 text read from r,
// such as an attachment from Office.js getAttachmentContentAsync.
//
// It accepts the standard alphabet and, in the same stream, the URL-safe one
// ('-' and '_'); skips ASCII white space (space, \t, \r, \n) anywhere; and
// takes the final group with or without its '=' padding. On every input that
// base64.StdEncoding.DecodeString accepts it yields the same bytes.
//
// An invalid byte, data after padding, incomplete padding or a final group of
// a single character yields a *Base64Error (matching ErrBadBase64) holding
// the byte offset in the encoded input, after the bytes decoded before the
// problem. Errors from r are returned unchanged.
//
// The decoder works on 32 KiB chunks in pooled buffers, which it returns to
// the pool when the stream ends; it never holds the whole input. The reader
// also implements io.WriterTo, decoding straight into a pooled buffer that is
// written to the destination.
func NewBase64Decoder(r io.Reader) io.Reader {
	return &base64Decoder{r: r, padLeft: -1}
}

// base64Decoder is the reader behind NewBase64Decoder. Input is read into in
// and compacted in place: in[ib:ie] holds validated standard-alphabet
// characters not yet decoded, without white space or padding.
type base64Decoder struct {
	r      io.Reader
	in     *[bufSize]byte // pooled, nil before the first read and after the end
	ib, ie int
	pend   [3]byte // decoded bytes awaiting a Read too small to take them
	pb, pe int
	off    int64 // encoded bytes consumed from r so far
	nchars int64 // alphabet characters accepted so far
	// padLeft is -1 before any '='; afterwards the number of '=' still
	// needed to complete the final group.
	padLeft int
	eof     bool  // r returned io.EOF
	rerr    error // r's error or a *Base64Error, due once in[ib:ie] is used up
	err     error // sticky: io.EOF after the last byte, or the error returned
}

// SupportsBodyWriteTo reports true: WriteTo is a faithful replacement for
// Read (fasthttp's BodyWriterTo).
func (d *base64Decoder) SupportsBodyWriteTo() bool { return true }

// Read implements io.Reader.
func (d *base64Decoder) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if d.pb < d.pe {
		n := copy(p, d.pend[d.pb:d.pe])
		d.pb += n
		return n, nil
	}
	if d.err != nil {
		return 0, d.err
	}
	d.fill()
	if d.ie-d.ib >= 4 {
		if len(p) >= 3 {
			return d.decode(p), nil
		}
		d.pb, d.pe = 0, d.decode(d.pend[:])
		n := copy(p, d.pend[:d.pe])
		d.pb = n
		return n, nil
	}
	if d.rerr != nil {
		d.finish(d.rerr)
		return 0, d.err
	}
	if len(p) >= 2 {
		if n := d.final(p); n > 0 {
			return n, nil
		}
		return 0, d.err
	}
	d.pb, d.pe = 0, d.final(d.pend[:])
	if d.pe == 0 {
		return 0, d.err
	}
	n := copy(p, d.pend[:d.pe])
	d.pb = n
	return n, nil
}

// WriteTo implements io.WriterTo. It decodes each chunk into a pooled buffer
// and writes it to w.
func (d *base64Decoder) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if d.pb < d.pe {
		n, err := writeFull(w, d.pend[d.pb:d.pe])
		d.pb += n
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	if d.err != nil {
		return total, eofToNil(d.err)
	}
	out := getBuf()
	defer putBuf(out)
	for d.err == nil {
		d.fill()
		var n int
		switch {
		case d.ie-d.ib >= 4:
			n = d.decode(out[:])
		case d.rerr != nil:
			d.finish(d.rerr)
		default:
			n = d.final(out[:])
		}
		if n > 0 {
			m, err := writeFull(w, out[:n])
			total += int64(m)
			if err != nil {
				// Decoded bytes were lost: the stream cannot resume.
				d.finish(err)
				return total, err
			}
		}
	}
	return total, eofToNil(d.err)
}

// eofToNil maps io.EOF, the normal end, to nil.
func eofToNil(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}

// fill reads from r until in holds a full group of four characters, r has
// ended or failed, or the input turned out malformed.
func (d *base64Decoder) fill() {
	if d.in == nil {
		d.in = getBuf()
	}
	for empty := 0; d.ie-d.ib < 4 && d.rerr == nil && !d.eof; {
		if d.ib > 0 {
			d.ie = copy(d.in[:], d.in[d.ib:d.ie])
			d.ib = 0
		}
		k, err := d.r.Read(d.in[d.ie:])
		if k > 0 {
			d.compact(d.ie, d.ie+k)
		}
		switch {
		case err == io.EOF:
			d.eof = true
		case err != nil:
			if d.rerr == nil {
				d.rerr = err
			}
		case k == 0:
			if empty++; empty >= 100 {
				d.rerr = io.ErrNoProgress
			}
		}
	}
}

// compact validates the raw input in[start:end], drops white space and
// padding, translates the URL-safe alphabet, and moves the characters left
// so that they end at the new ie. On malformed input it keeps the characters
// before the problem and records a *Base64Error in rerr.
//
// Runs of standard-alphabet characters, the bulk of any input, are found
// eight bytes at a time and moved with one copy (no move at all until the
// first byte that is dropped); only the bytes between runs are looked at one
// by one.
func (d *base64Decoder) compact(start, end int) {
	buf := d.in[:end]
	w := start
	padLeft := d.padLeft
	i := start
	var reason string
	for i < len(buf) {
		// The run of standard-alphabet characters at i.
		run := buf[i:]
		for len(run) >= 8 && b64Std[run[0]]&b64Std[run[1]]&b64Std[run[2]]&b64Std[run[3]]&
			b64Std[run[4]]&b64Std[run[5]]&b64Std[run[6]]&b64Std[run[7]] != 0 {
			run = run[8:]
		}
		for len(run) > 0 && b64Std[run[0]] != 0 {
			run = run[1:]
		}
		if j := len(buf) - len(run); j > i {
			if padLeft >= 0 {
				reason = "data after padding"
				break
			}
			if w != i {
				copy(buf[w:], buf[i:j])
			}
			w += j - i
			i = j
			if i == len(buf) {
				break
			}
		}

		// buf[i] is anything but a standard-alphabet character.
		switch t := b64Table[buf[i]]; t {
		case b64Space:
		case b64Invalid:
			if c := buf[i]; c < 0x80 {
				reason = fmt.Sprintf("invalid character %q", rune(c))
			} else {
				reason = fmt.Sprintf("invalid character '\\x%02x'", c)
			}
		case b64Pad:
			switch {
			case padLeft == 0:
				reason = "data after padding"
			case padLeft > 0:
				padLeft--
			default:
				q := (d.nchars + int64(w-start)) & 3
				if q < 2 {
					reason = "misplaced padding"
				} else {
					padLeft = 3 - int(q)
				}
			}
		default: // URL-safe alphabet
			if padLeft >= 0 {
				reason = "data after padding"
				break
			}
			buf[w] = t
			w++
		}
		if reason != "" {
			break
		}
		i++
	}
	if reason != "" {
		d.rerr = &Base64Error{Offset: d.off + int64(i-start), Reason: reason}
	}
	d.off += int64(i - start)
	d.nchars += int64(w - start)
	d.padLeft = padLeft
	d.ie = w
}

// decode decodes as many whole groups of in[ib:ie] as fit in dst, which must
// hold at least 3 bytes, and returns the number of bytes written.
func (d *base64Decoder) decode(dst []byte) int {
	k := (d.ie - d.ib) &^ 3
	if m := len(dst) / 3 * 4; k > m {
		k = m
	}
	// The characters were validated by compact: Decode cannot fail.
	n, _ := base64.StdEncoding.Decode(dst, d.in[d.ib:d.ib+k])
	d.ib += k
	return n
}

// final ends a stream that reached EOF with fewer than four characters left:
// it decodes a last group of 2 or 3 characters into dst (at least 2 bytes)
// and returns its length, or records the error of an unfinished stream.
func (d *base64Decoder) final(dst []byte) int {
	left := d.ie - d.ib
	switch {
	case d.padLeft > 0:
		d.finish(&Base64Error{Offset: d.off, Reason: "incomplete padding"})
		return 0
	case left == 1:
		d.finish(&Base64Error{Offset: d.off, Reason: "final group of a single character"})
		return 0
	}
	n, _ := base64.RawStdEncoding.Decode(dst, d.in[d.ib:d.ie])
	d.ib = d.ie
	d.finish(io.EOF)
	return n
}

// finish makes err the sticky result and returns the input buffer to the
// pool.
func (d *base64Decoder) finish(err error) {
	d.err = err
	if d.in != nil {
		putBuf(d.in)
		d.in = nil
		d.ib, d.ie = 0, 0
	}
}
