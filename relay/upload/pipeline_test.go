package upload

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"testing"
)

// TestPipeline runs the relay's chain for an Office.js upload: the caller's
// base64 body, limited and counted, decoded, and wrapped as multipart.
func TestPipeline(t *testing.T) {
	raw := randomBytes(1<<20+3, 11)
	enc := []byte(wrapLines(base64.StdEncoding.EncodeToString(raw), 76, "\r\n"))
	tests := []struct {
		name    string
		max     int64
		cut     int // bytes of enc the caller sends; -1: all
		wantErr error
	}{
		{"complete", int64(len(enc)), -1, nil},
		{"over the limit", int64(len(enc)) - 1, -1, ErrTooLarge},
		{"connection cut mid-body", int64(len(enc)), len(enc) / 2, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		for _, mode := range readModes[:2] {
			t.Run(tt.name+"/"+mode.name, func(t *testing.T) {
				sent := enc
				if tt.cut >= 0 {
					sent = enc[:tt.cut]
				}
				body := NewLimitReader(readOnly{bytes.NewReader(sent)}, tt.max)
				if err := body.ExpectLen(int64(len(enc))); err != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("ExpectLen: %v", err)
				}
				m, err := NewMultipart(NewBase64Decoder(body), -1, "€ invoice.pdf", "application/pdf")
				if err != nil {
					t.Fatal(err)
				}
				out, err := mode.read(m)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("err = %v, want %v", err, tt.wantErr)
					}
					_, params, _ := mime.ParseMediaType(m.ContentType())
					if bytes.Contains(out, []byte("--"+params["boundary"]+"--")) {
						t.Error("closing boundary after a failed body")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				got := parseMultipart(t, m.ContentType(), out)
				if got.sum != sha256.Sum256(raw) || got.filename != "€ invoice.pdf" {
					t.Errorf("part %q with %d bytes differs from the upload", got.filename, got.size)
				}
				if body.N() != int64(len(enc)) {
					t.Errorf("N() = %d, want %d", body.N(), len(enc))
				}
			})
		}
	}
}

// BenchmarkPipeline: 27 MB of base64 through LimitReader, the decoder and
// Multipart.WriteTo, as fasthttp would drive it.
func BenchmarkPipeline(b *testing.B) {
	enc := encoded27MB(b, 0)
	src := bytes.NewReader(nil)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(enc)
		body := NewLimitReader(readOnly{src}, 30<<20)
		m, err := NewMultipart(NewBase64Decoder(body), -1, "a.pdf", "application/pdf")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
