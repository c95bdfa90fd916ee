package upload

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// decodeModes are the ways a decoder is driven: its own Read or WriteTo,
// tiny reads in and out, and reads that return data together with io.EOF.
var decodeModes = []struct {
	name   string
	decode func(src io.Reader) ([]byte, error)
}{
	{"ReadAll", func(src io.Reader) ([]byte, error) { return io.ReadAll(readOnly{NewBase64Decoder(src)}) }},
	{"WriteTo", func(src io.Reader) ([]byte, error) {
		var b bytes.Buffer
		_, err := NewBase64Decoder(src).(io.WriterTo).WriteTo(&b)
		return b.Bytes(), err
	}},
	{"OneByteIn", func(src io.Reader) ([]byte, error) {
		return io.ReadAll(readOnly{NewBase64Decoder(iotest.OneByteReader(src))})
	}},
	{"OneByteOut", func(src io.Reader) ([]byte, error) {
		return io.ReadAll(iotest.OneByteReader(NewBase64Decoder(src)))
	}},
	{"HalfIn/WriteTo", func(src io.Reader) ([]byte, error) {
		var b bytes.Buffer
		_, err := NewBase64Decoder(iotest.HalfReader(src)).(io.WriterTo).WriteTo(&b)
		return b.Bytes(), err
	}},
	{"DataErrIn/2ByteOut", func(src io.Reader) ([]byte, error) {
		d := NewBase64Decoder(iotest.DataErrReader(src))
		var out []byte
		buf := make([]byte, 2)
		for {
			n, err := d.Read(buf)
			out = append(out, buf[:n]...)
			if err == io.EOF {
				return out, nil
			}
			if err != nil {
				return out, err
			}
		}
	}},
}

// wrapLines inserts sep every n bytes of s.
func wrapLines(s string, n int, sep string) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n])
		b.WriteString(sep)
		s = s[n:]
	}
	b.WriteString(s)
	return b.String()
}

func TestBase64DecoderMatchesStdlib(t *testing.T) {
	var inputs []string
	for _, n := range []int{0, 1, 2, 3, 4, 5, 6, 47, 48, 49, 1000, bufSize/4*3 - 1, bufSize / 4 * 3, bufSize/4*3 + 1, 100000} {
		enc := base64.StdEncoding.EncodeToString(randomBytes(n, uint64(n)))
		inputs = append(inputs,
			enc,
			wrapLines(enc, 76, "\r\n"), // MIME
			wrapLines(enc, 64, "\n"),   // PEM
			wrapLines(enc, 1, "\r\n"),  // a break after every character
			enc+"\r\n",
		)
	}
	inputs = append(inputs, "\n", "\r\n\r\n", "QQ=\r\n=", "QQ\r\n==\r\n", "QR==", "QUJ=")
	for _, in := range inputs {
		want, err := base64.StdEncoding.DecodeString(in)
		if err != nil {
			t.Fatalf("bad test input %q: %v", in, err)
		}
		for _, mode := range decodeModes {
			name := fmt.Sprintf("%d:%.12q/%s", len(in), in, mode.name)
			t.Run(name, func(t *testing.T) {
				got, err := mode.decode(strings.NewReader(in))
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("decoded %d bytes, %v; want %d bytes like base64.StdEncoding", len(got), err, len(want))
				}
			})
		}
	}
}

func TestBase64DecoderAccepts(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"only white space", " \t\r\n", ""},
		{"spaces and tabs anywhere", " Q U\tJ D \t", "ABC"},
		{"white space inside padding", "QQ = =", "A"},
		{"white space after padding", "QQ==\r\n \t", "A"},
		{"no padding, 2 characters", "QQ", "A"},
		{"no padding, 3 characters", "QUI", "AB"},
		{"no padding after full groups", "QUJDQUI", "ABCAB"},
		{"URL-safe alphabet", "-_-_", "\xfb\xff\xbf"},
		{"mixed alphabets", "+_-/", "\xfb\xff\xbf"},
		{"URL-safe unpadded", "_w", "\xff"},
		{"non-zero trailing bits", "QR==", "A"},
	}
	for _, tt := range tests {
		for _, mode := range decodeModes {
			t.Run(tt.name+"/"+mode.name, func(t *testing.T) {
				got, err := mode.decode(strings.NewReader(tt.in))
				if err != nil || string(got) != tt.want {
					t.Fatalf("decode(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
				}
			})
		}
	}
}

func TestBase64DecoderRejects(t *testing.T) {
	tests := []struct {
		name, in  string
		offset    int64
		reason    string
		delivered string // decoded before the error, by Read and WriteTo
	}{
		{"invalid character", "QQ*=", 2, "invalid character '*'", ""},
		{"NUL", "QUJD\x00", 4, "invalid character '\\x00'", "ABC"},
		{"non-ASCII", "QUJDé", 4, "invalid character '\\xc3'", "ABC"},
		{"vertical tab is not white space", "QQ\v==", 2, "invalid character '\\v'", ""},
		{"dot", "QUJD.QUJD", 4, "invalid character '.'", "ABC"},
		{"error after many groups", "QUJDQUJDQUJD!", 12, "invalid character '!'", "ABCABCABC"},
		{"data after padding", "QQ==QQ==", 4, "data after padding", ""},
		{"extra padding", "QQ===", 4, "data after padding", ""},
		{"padding at group start", "QUJD=", 4, "misplaced padding", "ABC"},
		{"padding after one character", "Q===", 1, "misplaced padding", ""},
		{"only padding", "=", 0, "misplaced padding", ""},
		{"one character", "Q", 1, "final group of a single character", ""},
		{"one character after groups", "QUJD\r\nQ\r\n", 9, "final group of a single character", "ABC"},
		{"incomplete padding", "QQ=", 3, "incomplete padding", ""},
		{"incomplete padding, 3+1", "QUJDQQ=\n", 8, "incomplete padding", "ABC"},
		{"character inside padding", "QQ=Q=", 3, "data after padding", ""},
	}
	for _, tt := range tests {
		for _, mode := range decodeModes {
			t.Run(tt.name+"/"+mode.name, func(t *testing.T) {
				got, err := mode.decode(strings.NewReader(tt.in))
				var be *Base64Error
				if !errors.Is(err, ErrBadBase64) || !errors.As(err, &be) {
					t.Fatalf("decode(%q) = %q, %v; want ErrBadBase64", tt.in, got, err)
				}
				if be.Offset != tt.offset || be.Reason != tt.reason {
					t.Errorf("error at %d %q, want at %d %q", be.Offset, be.Reason, tt.offset, tt.reason)
				}
				if string(got) != tt.delivered {
					t.Errorf("delivered %q before the error, want %q", got, tt.delivered)
				}
			})
		}
	}
}

func TestBase64DecoderErrorIsSticky(t *testing.T) {
	d := NewBase64Decoder(strings.NewReader("QQ*="))
	_, err := io.ReadAll(d)
	if _, err2 := d.Read(make([]byte, 8)); err2 != err || err == nil {
		t.Errorf("first %v, then %v; want the same error", err, err2)
	}
	if _, err3 := d.(io.WriterTo).WriteTo(io.Discard); err3 != err {
		t.Errorf("WriteTo after error = %v, want %v", err3, err)
	}
}

// TestBase64DecoderReaderErrorPassesThrough: the source's error comes back
// unchanged after the bytes decoded before it.
func TestBase64DecoderReaderErrorPassesThrough(t *testing.T) {
	wrapped := fmt.Errorf("read body: %w", errBody)
	for _, mode := range decodeModes {
		t.Run(mode.name, func(t *testing.T) {
			got, err := mode.decode(&failAfterReader{data: []byte("QUJDQUJD"), err: wrapped})
			if err != wrapped || !errors.Is(err, errBody) {
				t.Fatalf("err = %v, want the source's error unchanged", err)
			}
			if string(got) != "ABCABC" {
				t.Errorf("delivered %q before the error, want ABCABC", got)
			}
		})
	}
}

func TestBase64DecoderWriteToDestinationError(t *testing.T) {
	enc := base64.StdEncoding.EncodeToString(randomBytes(100000, 4))
	d := NewBase64Decoder(strings.NewReader(enc))
	w := &limitedWriter{max: 1000}
	n, err := d.(io.WriterTo).WriteTo(w)
	if err != errWriterFull || n != 1000 {
		t.Errorf("WriteTo = %d, %v; want 1000, %v", n, err, errWriterFull)
	}
}

// TestBase64DecoderIOTest checks the io.Reader contract with testing/iotest.
func TestBase64DecoderIOTest(t *testing.T) {
	raw := randomBytes(70000, 5)
	enc := wrapLines(base64.StdEncoding.EncodeToString(raw), 76, "\r\n")
	if err := iotest.TestReader(NewBase64Decoder(strings.NewReader(enc)), raw); err != nil {
		t.Error(err)
	}
}

// TestBase64DecoderConstantMemory: decoding allocates nothing per chunk, so
// 4 MiB costs the same allocations as 4 KiB.
func TestBase64DecoderConstantMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	allocs := func(mode string, size int) float64 {
		enc := []byte(wrapLines(base64.StdEncoding.EncodeToString(randomBytes(size, 6)), 76, "\r\n"))
		src := bytes.NewReader(nil)
		buf := make([]byte, bufSize)
		return testing.AllocsPerRun(5, func() {
			src.Reset(enc)
			d := NewBase64Decoder(readOnly{src})
			var err error
			if mode == "WriteTo" {
				_, err = d.(io.WriterTo).WriteTo(io.Discard)
			} else {
				_, err = io.CopyBuffer(writeOnly{io.Discard}, readOnly{d}, buf)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, mode := range []string{"WriteTo", "Read"} {
		small, large := allocs(mode, 4<<10), allocs(mode, 4<<20)
		if large != small {
			t.Errorf("%s: %v allocations for 4 KiB but %v for 4 MiB", mode, small, large)
		}
	}
}

// refDecode is the specification of NewBase64Decoder in terms of the
// standard library: drop white space, map the URL-safe alphabet to the
// standard one, pad an unpadded final group, and decode with StdEncoding.
func refDecode(in []byte) ([]byte, bool) {
	var b []byte
	for _, c := range in {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '-':
			c = '+'
		case '_':
			c = '/'
		}
		b = append(b, c)
	}
	if len(b)%4 != 0 && bytes.IndexByte(b, '=') < 0 {
		b = append(b, "==="[:4-len(b)%4]...)
	}
	out, err := base64.StdEncoding.DecodeString(string(b))
	return out, err == nil
}

// FuzzBase64Decoder: the decoder equals refDecode (and so the standard
// library on its inputs) whether read in large, small or one-byte pieces,
// whatever white space is inserted; anything else is an ErrBadBase64.
func FuzzBase64Decoder(f *testing.F) {
	for _, s := range []string{
		"", "QQ==", "QUI=", "QUJD", "QQ", "QUI", "Q", "QQ=", "QQ===", "QQ==QQ==", "=", "-_-_",
		"QUJD\r\nQUJD\r\n", "Q Q = =", "QQ*=", "QR==", "QUJD=", "\x00", "QUJDé",
		base64.StdEncoding.EncodeToString(randomBytes(100, 8)),
	} {
		f.Add([]byte(s), uint8(0))
	}
	f.Add([]byte(base64.StdEncoding.EncodeToString(randomBytes(bufSize/4*3+10, 9))), uint8(13)) // spans two buffers
	f.Fuzz(func(t *testing.T, in []byte, every uint8) {
		want, valid := refDecode(in)

		inputs := [][]byte{in}
		if every > 0 {
			// The same input with white space inserted every few bytes.
			var spaced []byte
			for i, c := range in {
				if i%int(every) == 0 {
					spaced = append(spaced, " \t\r\n"[i%4])
				}
				spaced = append(spaced, c)
			}
			inputs = append(inputs, spaced)
		}
		for _, input := range inputs {
			for _, mode := range decodeModes {
				got, err := mode.decode(bytes.NewReader(input))
				if valid {
					if err != nil || !bytes.Equal(got, want) {
						t.Fatalf("%s(%q) = %q, %v; want %q", mode.name, input, got, err, want)
					}
					continue
				}
				var be *Base64Error
				if !errors.As(err, &be) || !errors.Is(err, ErrBadBase64) {
					t.Fatalf("%s(%q) = %q, %v; want ErrBadBase64", mode.name, input, got, err)
				}
				if be.Offset < 0 || be.Offset > int64(len(input)) {
					t.Fatalf("%s(%q): offset %d outside the input", mode.name, input, be.Offset)
				}
			}
		}
	})
}

// encoded27MB is base64 the size of Outlook's largest attachment as
// Office.js hands it over: 27,000,000 characters (20,250,000 bytes).
func encoded27MB(b *testing.B, lineLen int) []byte {
	b.Helper()
	enc := base64.StdEncoding.EncodeToString(randomBytes(27_000_000/4*3, 10))
	if lineLen > 0 {
		enc = wrapLines(enc, lineLen, "\r\n")
	}
	return []byte(enc)
}

func BenchmarkBase64Decode(b *testing.B) {
	for _, c := range []struct {
		name    string
		lineLen int
	}{{"27MB", 0}, {"27MB-CRLF76", 76}} {
		enc := encoded27MB(b, c.lineLen)
		src := bytes.NewReader(nil)
		b.Run(c.name+"/WriteTo", func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(enc)
				if _, err := NewBase64Decoder(readOnly{src}).(io.WriterTo).WriteTo(io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/Read", func(b *testing.B) {
			buf := make([]byte, bufSize)
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(enc)
				if _, err := io.CopyBuffer(writeOnly{io.Discard}, readOnly{NewBase64Decoder(readOnly{src})}, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("27MB/stdlib-DecodeString-baseline", func(b *testing.B) {
		enc := string(encoded27MB(b, 0))
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := base64.StdEncoding.DecodeString(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
