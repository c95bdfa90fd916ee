package upload

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"testing"
	"testing/iotest"
)

// parsedPart is what a standard multipart parser sees in a Multipart's
// output.
type parsedPart struct {
	formName    string
	filename    string // from Content-Disposition, without filepath.Base
	contentType string
	sum         [32]byte
	size        int
}

// parseMultipart parses out, the whole output of a Multipart with the given
// Content-Type, and requires exactly one part.
func parseMultipart(t testing.TB, contentType string, out []byte) parsedPart {
	t.Helper()
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil || mediaType != "multipart/form-data" {
		t.Fatalf("ContentType() = %q: %v", contentType, err)
	}
	mr := multipart.NewReader(bytes.NewReader(out), params["boundary"])
	p, err := mr.NextPart()
	if err != nil {
		t.Fatalf("NextPart: %v", err)
	}
	_, dparams, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
	if err != nil {
		t.Fatalf("part Content-Disposition %q: %v", p.Header.Get("Content-Disposition"), err)
	}
	data, err := io.ReadAll(p)
	if err != nil {
		t.Fatalf("reading part: %v", err)
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Fatalf("second NextPart: %v, want io.EOF (exactly one part)", err)
	}
	return parsedPart{
		formName:    p.FormName(),
		filename:    dparams["filename"],
		contentType: p.Header.Get("Content-Type"),
		sum:         sha256.Sum256(data),
		size:        len(data),
	}
}

// checkHead requires that the head of out (up to the blank line) is exactly
// three CRLF-terminated lines with no other CR or LF in them.
func checkHead(t testing.TB, out []byte) {
	t.Helper()
	head, _, ok := bytes.Cut(out, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no blank line after the part header in %q", out)
	}
	lines := strings.Split(string(head), "\r\n")
	if len(lines) != 3 {
		t.Fatalf("part head has %d lines, want 3: %q", len(lines), head)
	}
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\n\x00") {
			t.Fatalf("stray CR, LF or NUL in header line %q", l)
		}
	}
}

// readModes are the ways a Multipart's output is consumed.
var readModes = []struct {
	name string
	read func(r io.Reader) ([]byte, error)
}{
	{"WriteTo", func(r io.Reader) ([]byte, error) {
		var b bytes.Buffer
		_, err := r.(io.WriterTo).WriteTo(&b)
		return b.Bytes(), err
	}},
	{"Read", func(r io.Reader) ([]byte, error) { return io.ReadAll(readOnly{r}) }},
	{"Read/OneByte", func(r io.Reader) ([]byte, error) { return io.ReadAll(iotest.OneByteReader(r)) }},
}

// bodyKinds are the shapes of payload a Multipart wraps.
var bodyKinds = []struct {
	name string
	make func(payload []byte) io.Reader
}{
	{"stream", func(p []byte) io.Reader { return readOnly{bytes.NewReader(p)} }},
	{"WriterTo", func(p []byte) io.Reader { return bytes.NewReader(p) }},
}

func TestMultipartRoundTripsFilenames(t *testing.T) {
	tests := []struct {
		name     string
		filename string
	}{
		{"plain", "report.pdf"},
		{"spaces and punctuation", "Q3 report (final), v2; draft=1 [x] 100%.pdf"},
		{"double quotes", `say "hi".txt`},
		{"backslash", `C:\fakepath\a.txt`},
		{"slash kept", "dir/a.txt"},
		{"CR LF injection", "a.txt\r\nContent-Type: text/html\r\n\r\n<script>"},
		{"lone CR and LF", "a\rb\nc.txt"},
		{"tab and control bytes", "a\tb\x01\x7f.bin"},
		{"NUL", "a\x00b.txt"},
		{"unicode", "Übersicht – naïve façade.docx"},
		{"CJK", "報告書.xlsx"},
		{"emoji", "🎉 party 📎.png"},
		{"RFC 2231 lookalike", "UTF-8''%41.txt"},
		{"255 ASCII characters", strings.Repeat("a", 251) + ".pdf"},
		{"255 two-byte characters", strings.Repeat("é", 255)},
		{"255 emoji", strings.Repeat("📎", 255)},
	}
	payload := randomBytes(1000, 7)
	for _, tt := range tests {
		for _, mode := range readModes {
			t.Run(tt.name+"/"+mode.name, func(t *testing.T) {
				m, err := NewMultipart(bytes.NewReader(payload), int64(len(payload)), tt.filename, "application/pdf")
				if err != nil {
					t.Fatalf("NewMultipart: %v", err)
				}
				out, err := mode.read(m)
				if err != nil {
					t.Fatalf("reading: %v", err)
				}
				checkHead(t, out)
				got := parseMultipart(t, m.ContentType(), out)
				if got.formName != "file" {
					t.Errorf("form name %q, want file", got.formName)
				}
				if got.filename != tt.filename {
					t.Errorf("filename %q, want %q", got.filename, tt.filename)
				}
				if got.sum != sha256.Sum256(payload) {
					t.Errorf("payload differs")
				}
				if m.Size() != int64(len(out)) {
					t.Errorf("Size() = %d, produced %d bytes", m.Size(), len(out))
				}
			})
		}
	}
}

func TestMultipartRoundTripsSizes(t *testing.T) {
	sizes := []int{0, 1, 2, bufSize - 1, bufSize, bufSize + 1, 5 << 20}
	for _, size := range sizes {
		payload := randomBytes(size, uint64(size))
		for _, known := range []bool{true, false} {
			for _, body := range bodyKinds {
				for _, mode := range readModes {
					if mode.name == "Read/OneByte" && size > 2*bufSize {
						continue // byte-at-a-time through the race detector is slow
					}
					name := fmt.Sprintf("%d/known=%v/%s/%s", size, known, body.name, mode.name)
					t.Run(name, func(t *testing.T) {
						declared := int64(-1)
						if known {
							declared = int64(size)
						}
						m, err := NewMultipart(body.make(payload), declared, "data.bin", "")
						if err != nil {
							t.Fatalf("NewMultipart: %v", err)
						}
						out, err := mode.read(m)
						if err != nil {
							t.Fatalf("reading: %v", err)
						}
						got := parseMultipart(t, m.ContentType(), out)
						if got.size != size || got.sum != sha256.Sum256(payload) {
							t.Fatalf("payload differs: got %d bytes", got.size)
						}
						if got.contentType != DefaultContentType {
							t.Errorf("part Content-Type %q, want %q", got.contentType, DefaultContentType)
						}
						wantSize := int64(len(out))
						if !known {
							wantSize = -1
						}
						if m.Size() != wantSize {
							t.Errorf("Size() = %d, want %d", m.Size(), wantSize)
						}
					})
				}
			}
		}
	}
}

func TestMultipartContentType(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "application/octet-stream"},
		{"  ", "application/octet-stream"},
		{"application/pdf", "application/pdf"},
		{"Text/Plain; Charset=UTF-8", "text/plain; charset=UTF-8"},
		{`text/plain; charset="utf-8"; format=flowed`, "text/plain; charset=utf-8; format=flowed"},
		{`text/plain; name="a b.txt"`, `text/plain; name="a b.txt"`},
		{"application/vnd.openxmlformats-officedocument.wordprocessingml.document", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := NewMultipart(strings.NewReader("x"), 1, "a.txt", tt.in)
			if err != nil {
				t.Fatalf("NewMultipart: %v", err)
			}
			out, err := io.ReadAll(m)
			if err != nil {
				t.Fatal(err)
			}
			checkHead(t, out)
			if got := parseMultipart(t, m.ContentType(), out).contentType; got != tt.want {
				t.Errorf("part Content-Type %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewMultipartRejects(t *testing.T) {
	tests := []struct {
		name, filename, contentType string
		want                        error
	}{
		{"empty filename", "", "", ErrBadFilename},
		{"blank filename", " \t ", "", ErrBadFilename},
		{"invalid UTF-8 filename", "a\xffb.pdf", "", ErrBadFilename},
		{"256-character filename", strings.Repeat("a", 256), "", ErrBadFilename},
		{"CR LF in content type", "a.txt", "text/plain\r\nX-Evil: 1", ErrBadContentType},
		{"LF in parameter", "a.txt", "text/plain; charset=\"a\nb\"", ErrBadContentType},
		{"no subtype", "a.txt", "text", ErrBadContentType},
		{"two slashes", "a.txt", "a/b/c", ErrBadContentType},
		{"junk", "a.txt", "@@@", ErrBadContentType},
		{"bad parameter", "a.txt", "text/plain; =x", ErrBadContentType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMultipart(strings.NewReader(""), 0, tt.filename, tt.contentType)
			if !errors.Is(err, tt.want) {
				t.Fatalf("NewMultipart = %v, %v; want %v", m, err, tt.want)
			}
		})
	}
	if _, err := NewMultipart(nil, 0, "a", ""); err == nil {
		t.Error("NewMultipart(nil body) succeeded")
	}
}

// TestMultipartWireFormat pins the exact bytes and checks the io.Reader
// contract with testing/iotest.
func TestMultipartWireFormat(t *testing.T) {
	body := "hello, jira"
	m, err := NewMultipart(strings.NewReader(body), int64(len(body)), "a.pdf", "application/pdf")
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := mime.ParseMediaType(m.ContentType())
	b := params["boundary"]
	if len(b) < 32 || len(b) > 70 || strings.Trim(b, "0123456789abcdef") != "" {
		t.Errorf("boundary %q: want 32 to 70 hex characters", b)
	}
	if want := "multipart/form-data; boundary=" + b; m.ContentType() != want {
		t.Errorf("ContentType() = %q, want %q", m.ContentType(), want)
	}
	want := "--" + b + "\r\n" +
		`Content-Disposition: form-data; name="file"; filename="a.pdf"` + "\r\n" +
		"Content-Type: application/pdf\r\n" +
		"\r\n" +
		body +
		"\r\n--" + b + "--\r\n"
	if m.Size() != int64(len(want)) {
		t.Errorf("Size() = %d, want %d", m.Size(), len(want))
	}
	if err := iotest.TestReader(m, []byte(want)); err != nil {
		t.Error(err)
	}

	m2, _ := NewMultipart(strings.NewReader(body), -1, "a.pdf", "application/pdf")
	if m2.ContentType() == m.ContentType() {
		t.Error("two Multiparts share a boundary")
	}
}

// TestMultipartMixedReadAndWriteTo reads the start with Read and the rest
// with WriteTo.
func TestMultipartMixedReadAndWriteTo(t *testing.T) {
	payload := randomBytes(3*bufSize+5, 3)
	for _, body := range bodyKinds {
		for _, first := range []int{1, 50, 200, 40000} {
			t.Run(fmt.Sprintf("%s/%d", body.name, first), func(t *testing.T) {
				m, _ := NewMultipart(body.make(payload), int64(len(payload)), "a.bin", "")
				var out bytes.Buffer
				if _, err := io.CopyN(&out, readOnly{m}, int64(first)); err != nil {
					t.Fatal(err)
				}
				if _, err := m.WriteTo(&out); err != nil {
					t.Fatal(err)
				}
				if got := parseMultipart(t, m.ContentType(), out.Bytes()); got.sum != sha256.Sum256(payload) {
					t.Error("payload differs")
				}
				if int64(out.Len()) != m.Size() {
					t.Errorf("produced %d bytes, Size() = %d", out.Len(), m.Size())
				}
			})
		}
	}
}

// TestMultipartSizeMismatch: a body shorter or longer than declared must fail
// and never get its closing boundary.
func TestMultipartSizeMismatch(t *testing.T) {
	tests := []struct {
		name     string
		declared int64
		actual   int
	}{
		{"empty, 1 declared", 1, 0},
		{"short by one", 100, 99},
		{"half", 2 * bufSize, bufSize},
		{"long by one", 100, 101},
		{"1 byte, 0 declared", 0, 1},
		{"much longer", 10, 5 * bufSize},
	}
	for _, tt := range tests {
		for _, body := range bodyKinds {
			for _, mode := range readModes {
				t.Run(tt.name+"/"+body.name+"/"+mode.name, func(t *testing.T) {
					cr := &countingReader{r: body.make(randomBytes(tt.actual, 1))}
					var src io.Reader = cr
					if body.name == "WriterTo" {
						src = &countingWriterTo{cr}
					}
					m, err := NewMultipart(src, tt.declared, "a.bin", "")
					if err != nil {
						t.Fatal(err)
					}
					out, err := mode.read(m)
					var sm *SizeMismatchError
					if !errors.Is(err, ErrSizeMismatch) || !errors.As(err, &sm) {
						t.Fatalf("err = %v, want ErrSizeMismatch", err)
					}
					if sm.Want != tt.declared {
						t.Errorf("Want = %d, want %d", sm.Want, tt.declared)
					}
					if tt.actual < int(tt.declared) && sm.Got != int64(tt.actual) {
						t.Errorf("Got = %d, want %d", sm.Got, tt.actual)
					}
					if tt.actual > int(tt.declared) && sm.Got <= tt.declared {
						t.Errorf("Got = %d, want > %d", sm.Got, tt.declared)
					}
					_, params, _ := mime.ParseMediaType(m.ContentType())
					if bytes.Contains(out, []byte("--"+params["boundary"]+"--")) {
						t.Error("closing boundary emitted after a size mismatch")
					}
					if max := m.Size() - int64(len("\r\n--"+params["boundary"]+"--\r\n")); int64(len(out)) > max {
						t.Errorf("produced %d bytes, more than head+declared size %d", len(out), max)
					}
					if body.name == "stream" && cr.n > tt.declared+1 {
						t.Errorf("read %d bytes of the body, want at most declared+1 = %d", cr.n, tt.declared+1)
					}
					if _, err2 := m.Read(make([]byte, 10)); err2 != err {
						t.Errorf("error not sticky: next Read = %v", err2)
					}
				})
			}
		}
	}
}

// countingWriterTo gives a countingReader a WriteTo.
type countingWriterTo struct{ *countingReader }

func (c *countingWriterTo) WriteTo(w io.Writer) (int64, error) {
	n, err := c.r.(io.WriterTo).WriteTo(w)
	c.n += n
	return n, err
}

var errBody = errors.New("connection reset by peer")

// TestMultipartBodyErrorPassesThrough: the body's error comes back unchanged,
// and the closing boundary is never produced.
func TestMultipartBodyErrorPassesThrough(t *testing.T) {
	wrapped := fmt.Errorf("read body: %w", errBody)
	for _, declared := range []int64{-1, 10, 1 << 20} {
		for _, failing := range []string{"stream", "WriterTo"} {
			for _, mode := range readModes {
				t.Run(fmt.Sprintf("%d/%s/%s", declared, failing, mode.name), func(t *testing.T) {
					var body io.Reader = &failAfterReader{data: []byte("hello"), err: wrapped}
					if failing == "WriterTo" {
						body = &failAfterWriterTo{failAfterReader{data: []byte("hello"), err: wrapped}}
					}
					m, _ := NewMultipart(body, declared, "a.bin", "")
					out, err := mode.read(m)
					if err != wrapped || !errors.Is(err, errBody) {
						t.Fatalf("err = %v, want the body's error unchanged", err)
					}
					if !bytes.HasSuffix(out, []byte("hello")) {
						t.Errorf("output %q does not end with the body bytes read before the error", out)
					}
					if _, err2 := m.Read(make([]byte, 10)); err2 != wrapped {
						t.Errorf("error not sticky: next Read = %v", err2)
					}
				})
			}
		}
	}
}

// TestMultipartWriteToDestinationError: a failing destination stops WriteTo
// with the destination's error.
func TestMultipartWriteToDestinationError(t *testing.T) {
	payload := randomBytes(3*bufSize, 9)
	for _, body := range bodyKinds {
		for _, max := range []int{0, 10, 200, 2 * bufSize} {
			t.Run(fmt.Sprintf("%s/%d", body.name, max), func(t *testing.T) {
				m, _ := NewMultipart(body.make(payload), int64(len(payload)), "a.bin", "")
				w := &limitedWriter{max: max}
				n, err := m.WriteTo(w)
				if err != errWriterFull {
					t.Fatalf("err = %v, want %v", err, errWriterFull)
				}
				if n != int64(max) || len(w.buf) != max {
					t.Errorf("WriteTo = %d, destination has %d, want %d", n, len(w.buf), max)
				}
			})
		}
	}
}

// TestMultipartConstantMemory: wrapping allocates nothing per chunk, so
// 8 MiB costs the same allocations as 8 KiB, through WriteTo and Read alike.
func TestMultipartConstantMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	allocs := func(mode string, size int64) float64 {
		src := newRepeatReader(size)
		buf := make([]byte, bufSize)
		return testing.AllocsPerRun(5, func() {
			src.reset()
			m, err := NewMultipart(src, size, "a.bin", "")
			if err != nil {
				t.Fatal(err)
			}
			if mode == "WriteTo" {
				_, err = m.WriteTo(io.Discard)
			} else {
				_, err = io.CopyBuffer(writeOnly{io.Discard}, readOnly{m}, buf)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, mode := range []string{"WriteTo", "Read"} {
		small, large := allocs(mode, 8<<10), allocs(mode, 8<<20)
		if large != small {
			t.Errorf("%s: %v allocations for 8 KiB but %v for 8 MiB", mode, small, large)
		}
	}
}

func BenchmarkMultipartWriteTo(b *testing.B) {
	const size = 64 << 20
	b.Run("stream-body", func(b *testing.B) {
		src := newRepeatReader(size)
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			src.reset()
			m, err := NewMultipart(src, size, "a.bin", "application/pdf")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := m.WriteTo(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bytes.Reader-body", func(b *testing.B) {
		payload := make([]byte, size)
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			m, err := NewMultipart(bytes.NewReader(payload), size, "a.bin", "application/pdf")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := m.WriteTo(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Read", func(b *testing.B) {
		src := newRepeatReader(size)
		buf := make([]byte, bufSize)
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			src.reset()
			m, err := NewMultipart(src, size, "a.bin", "application/pdf")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(writeOnly{io.Discard}, readOnly{m}, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzMultipart: any filename, content type and payload either round-trips
// through mime/multipart with the head free of stray CR/LF, or is refused
// with a typed error.
func FuzzMultipart(f *testing.F) {
	f.Add("report.pdf", "application/pdf", []byte("%PDF-1.7"), true)
	f.Add("", "", []byte{}, false)
	f.Add(`q"u\o"te.txt`, "text/plain; charset=utf-8", []byte("hi"), true)
	f.Add("a\r\nContent-Type: text/html\r\n\r\n.txt", "text/plain\r\nX-Evil: 1", []byte("x"), true)
	f.Add("a.txt", `text/plain; name="a\r\nb"`, []byte("x"), false)
	f.Add("€ 🎉.png", "image/png; x*=UTF-8''%E2%82%AC", []byte{0, 1, 2}, true)
	f.Add(strings.Repeat("é", 255), "application/octet-stream", randomBytes(100, 2), false)
	f.Add("a\xffb", "text", []byte("x"), true)
	f.Fuzz(func(t *testing.T, filename, contentType string, payload []byte, known bool) {
		declared := int64(-1)
		if known {
			declared = int64(len(payload))
		}
		m, err := NewMultipart(bytes.NewReader(payload), declared, filename, contentType)
		if err != nil {
			switch {
			case errors.Is(err, ErrBadFilename):
				if ValidateFilename(filename) == nil {
					t.Fatalf("ErrBadFilename for a valid name: %v", err)
				}
			case errors.Is(err, ErrBadContentType):
				if _, err2 := NormalizeContentType(contentType); err2 == nil {
					t.Fatalf("ErrBadContentType for a valid type: %v", err)
				}
			default:
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		out, err := io.ReadAll(m)
		if err != nil {
			t.Fatal(err)
		}
		checkHead(t, out)
		got := parseMultipart(t, m.ContentType(), out)
		if got.formName != "file" || got.filename != filename {
			t.Errorf("part name %q filename %q, want file and %q", got.formName, got.filename, filename)
		}
		if want, _ := NormalizeContentType(contentType); got.contentType != want {
			t.Errorf("part Content-Type %q, want %q", got.contentType, want)
		}
		if got.sum != sha256.Sum256(payload) {
			t.Error("payload differs")
		}
		if known && m.Size() != int64(len(out)) {
			t.Errorf("Size() = %d, produced %d", m.Size(), len(out))
		}
	})
}
