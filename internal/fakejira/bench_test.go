package fakejira

import (
	"io"
	"mime/multipart"
	"testing"
)

// BenchmarkUpload measures the fake's upload path over loopback with a
// 16 MiB file streamed from NewContent.
func BenchmarkUpload(b *testing.B) {
	for _, noHash := range []bool{false, true} {
		name := "sha256"
		if noHash {
			name = "nohash"
		}
		b.Run(name, func(b *testing.B) {
			const size = 16 << 20
			s, err := Start(Options{NoHash: noHash, MaxRecords: 10})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				pr, pw := io.Pipe()
				mw := multipart.NewWriter(pw)
				go func() {
					part, err := mw.CreateFormFile("file", "bench.bin")
					if err == nil {
						_, err = io.Copy(part, NewContent(size, 1))
					}
					if err == nil {
						err = mw.Close()
					}
					pw.CloseWithError(err)
				}()
				req, _ := newUploadRequest(s.URL(), "BENCH-1", pr, mw.FormDataContentType())
				resp, err := s.Client().Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
