package upload

import (
	"errors"
	"io"
	"strings"
)

// Multipart wraps a raw file body as a multipart/form-data body with a single
// part named "file", the shape Jira's attachment endpoint wants, while it
// streams:
//
//	--<boundary>\r\n
//	Content-Disposition: form-data; name="file"; filename="…"\r\n
//	Content-Type: …\r\n
//	\r\n
//	<body>\r\n
//	--<boundary>--\r\n
//
// The closing boundary is produced only after the body has ended cleanly and,
// when its size was declared, delivered exactly that many bytes; otherwise
// Read and WriteTo fail (with the body's own error, or a *SizeMismatchError)
// and the output stays an incomplete multipart body, so a truncated file can
// never look like a complete upload. Errors are sticky.
//
// Read and WriteTo may be mixed and produce the same bytes and errors.
// A Multipart is not safe for concurrent use.
type Multipart struct {
	body  io.Reader
	size  int64  // declared body size, -1 if unknown
	n     int64  // body bytes seen so far
	frame []byte // head followed by tail
	head  int    // len of the head within frame
	ct    string // ContentType()
	pos   int    // next frame byte to emit, in head or tail phase
	phase mpPhase
	err   error // sticky

	guard guardWriter // reused by WriteTo so it does not allocate
}

type mpPhase uint8

const (
	phaseHead mpPhase = iota
	phaseBody
	phaseTail
	phaseDone
)

// Part is a validated file part: its file name and media type, checked
// once (ParsePart) before any body byte is read.
type Part struct {
	Filename    string
	ContentType string // normalised
}

// ParsePart validates a file name and normalises a media type (empty:
// application/octet-stream) for a part.
func ParsePart(filename, contentType string) (Part, error) {
	if err := ValidateFilename(filename); err != nil {
		return Part{}, err
	}
	ct, err := NormalizeContentType(contentType)
	if err != nil {
		return Part{}, err
	}
	return Part{Filename: filename, ContentType: ct}, nil
}

// NewMultipart wraps body (size bytes, or -1 when unknown) as a
// multipart/form-data body with one part named "file" (ParsePart, then
// Part.Wrap).
func NewMultipart(body io.Reader, size int64, filename, contentType string) (*Multipart, error) {
	p, err := ParsePart(filename, contentType)
	if err != nil {
		return nil, err
	}
	return p.Wrap(body, size)
}

// Wrap builds the multipart body around body for the validated part.
func (p Part) Wrap(body io.Reader, size int64) (*Multipart, error) {
	if body == nil {
		return nil, errors.New("upload: NewMultipart: nil body")
	}
	boundary, err := newBoundary()
	if err != nil {
		return nil, err
	}
	if size < 0 {
		size = -1
	}
	var b strings.Builder
	b.WriteString("--")
	b.WriteString(boundary)
	b.WriteString("\r\nContent-Disposition: form-data; name=\"file\"; ")
	b.WriteString(EncodeDispositionParams(p.Filename))
	b.WriteString("\r\nContent-Type: ")
	b.WriteString(p.ContentType)
	b.WriteString("\r\n\r\n")
	head := b.Len()
	b.WriteString("\r\n--")
	b.WriteString(boundary)
	b.WriteString("--\r\n")
	return &Multipart{
		body:  body,
		size:  size,
		frame: []byte(b.String()),
		head:  head,
		ct:    "multipart/form-data; boundary=" + boundary,
	}, nil
}

// ContentType returns the Content-Type of the whole body,
// "multipart/form-data; boundary=…", for the request to Jira.
func (m *Multipart) ContentType() string { return m.ct }

// Size returns the exact length of the whole multipart body when the file's
// size was declared, else -1 (send it chunked). It suits
// fasthttp's Request.SetBodyStream directly.
func (m *Multipart) Size() int64 {
	if m.size < 0 {
		return -1
	}
	return int64(len(m.frame)) + m.size
}

// SupportsBodyWriteTo reports true: WriteTo is a faithful replacement for
// Read. fasthttp checks this (its BodyWriterTo interface) before using
// WriteTo on a chunked body stream.
func (m *Multipart) SupportsBodyWriteTo() bool { return true }

// Read implements io.Reader. A Read returns head bytes or body bytes (not
// both), so it never blocks on the body while it has head bytes to give.
func (m *Multipart) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	switch m.phase {
	case phaseHead:
		n := copy(p, m.frame[m.pos:m.head])
		m.pos += n
		if m.pos == m.head {
			m.phase = phaseBody
		}
		return n, nil
	case phaseBody:
		q := p
		if m.size >= 0 {
			// Read at most one byte past the declared size: enough to see an
			// overrun, and nothing more is consumed from the caller's socket.
			if room := m.size - m.n + 1; int64(len(q)) > room {
				q = q[:room]
			}
		}
		k, err := m.body.Read(q)
		k, err = m.account(k, err)
		if err != nil || m.phase != phaseTail {
			return k, err
		}
		// The body ended cleanly: append as much of the tail as fits.
		t := copy(p[k:], m.frame[m.pos:])
		m.pos += t
		if m.pos == len(m.frame) {
			m.phase = phaseDone
		}
		return k + t, nil
	case phaseTail:
		n := copy(p, m.frame[m.pos:])
		m.pos += n
		if m.pos == len(m.frame) {
			m.phase = phaseDone
		}
		return n, nil
	}
	return 0, io.EOF
}

// account books k body bytes just read along with the body's error, and moves
// to the tail on a clean end. It returns how many of the k bytes may be
// passed on and the error to report, which it also makes sticky.
func (m *Multipart) account(k int, err error) (int, error) {
	m.n += int64(k)
	if m.size >= 0 && m.n > m.size {
		k -= int(m.n - m.size)
		m.err = &SizeMismatchError{Want: m.size, Got: m.n}
		return k, m.err
	}
	switch err {
	case nil:
		return k, nil
	case io.EOF:
		if m.size >= 0 && m.n != m.size {
			m.err = &SizeMismatchError{Want: m.size, Got: m.n}
			return k, m.err
		}
		m.phase = phaseTail
		m.pos = m.head
		return k, nil
	}
	m.err = err
	return k, err
}

// WriteTo implements io.WriterTo: it writes the rest of the multipart body to
// w and returns the bytes written. If the body implements io.WriterTo (a
// bytes.Reader, the base64 decoder of this package, …) the body writes
// straight into w; otherwise it is copied through a pooled 32 KiB buffer.
// Either way no more than one byte past a declared size is read from the
// body, except that a body's own WriteTo may consume more before the overrun
// is reported.
func (m *Multipart) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for m.err == nil {
		switch m.phase {
		case phaseHead, phaseTail:
			end := m.head
			if m.phase == phaseTail {
				end = len(m.frame)
			}
			n, err := writeFull(w, m.frame[m.pos:end])
			total += int64(n)
			m.pos += n
			if err != nil {
				m.err = err
				break
			}
			if m.phase == phaseHead {
				m.phase = phaseBody
			} else {
				m.phase = phaseDone
			}
		case phaseBody:
			n, err := m.writeBody(w)
			total += n
			if err != nil {
				m.err = err
			}
		case phaseDone:
			return total, nil
		}
	}
	return total, m.err
}

// writeBody copies the body to w and, on a clean end, leaves m in the tail
// phase.
func (m *Multipart) writeBody(w io.Writer) (int64, error) {
	if wt, ok := m.body.(io.WriterTo); ok {
		m.guard = guardWriter{w: w, remaining: m.size - m.n}
		if m.size < 0 {
			m.guard.remaining = -1
		}
		_, err := wt.WriteTo(&m.guard)
		g := m.guard
		m.guard = guardWriter{}
		// Bytes that reached the guard count as read from the body.
		m.n += g.seen
		switch {
		case g.overrun:
			return g.written, &SizeMismatchError{Want: m.size, Got: m.n}
		case g.werr != nil:
			return g.written, g.werr // w's own error
		case err != nil:
			return g.written, err // the body's error, unchanged
		case m.size >= 0 && m.n != m.size:
			return g.written, &SizeMismatchError{Want: m.size, Got: m.n}
		}
		m.phase = phaseTail
		m.pos = m.head
		return g.written, nil
	}

	buf := getBuf()
	defer putBuf(buf)
	var total int64
	for {
		q := buf[:]
		if m.size >= 0 {
			if room := m.size - m.n + 1; int64(len(q)) > room {
				q = q[:room]
			}
		}
		k, rerr := m.body.Read(q)
		k, rerr = m.account(k, rerr)
		if k > 0 {
			n, err := writeFull(w, q[:k])
			total += int64(n)
			if err != nil {
				return total, err
			}
		}
		if rerr != nil {
			return total, rerr
		}
		if m.phase != phaseBody {
			return total, nil
		}
	}
}

// writeFull writes p to w, turning a short write without error into
// io.ErrShortWrite.
func writeFull(w io.Writer, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := w.Write(p)
	if n < 0 || n > len(p) {
		n = 0
		if err == nil {
			err = errors.New("upload: invalid write result")
		}
	}
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return n, err
}

// guardWriter forwards a body's WriteTo output to w, counting it and refusing
// anything past remaining bytes (remaining < 0: no limit).
type guardWriter struct {
	w         io.Writer
	remaining int64 // bytes still allowed; < 0: unlimited
	seen      int64 // bytes offered by the body
	written   int64 // bytes accepted by w
	overrun   bool  // the body offered more than allowed
	werr      error // w's error
}

// Write implements io.Writer.
func (g *guardWriter) Write(p []byte) (int, error) {
	g.seen += int64(len(p))
	if g.werr != nil {
		return 0, g.werr
	}
	q := p
	if g.remaining >= 0 && int64(len(q)) > g.remaining {
		q = q[:g.remaining]
		g.overrun = true
	}
	n, err := writeFull(g.w, q)
	g.written += int64(n)
	if g.remaining >= 0 {
		g.remaining -= int64(n)
	}
	if err != nil {
		g.werr = err
		return n, err
	}
	if g.overrun {
		return n, ErrSizeMismatch
	}
	return len(p), nil
}
