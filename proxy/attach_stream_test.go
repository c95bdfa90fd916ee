package proxy_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
)

// content is size deterministic bytes as a stream, and their sha256.
func content(size, seed int64) (io.Reader, string) {
	h := sha256.New()
	io.Copy(h, io.LimitReader(fakejira.NewContent(size, seed), size))
	return io.LimitReader(fakejira.NewContent(size, seed), size), hex.EncodeToString(h.Sum(nil))
}

// TestUploadBytesArriveIdentical: multipart, raw and base64 bodies of 0 bytes
// to 300 MiB reach Jira byte for byte, with the caller's filename and type.
func TestUploadBytesArriveIdentical(t *testing.T) {
	t.Parallel()
	j := startJira(t, false, nil)
	sizes := []int64{0, 1, 32<<10 + 1, 5 << 20}
	if !testing.Short() {
		sizes = append(sizes, 300<<20)
	}
	for _, size := range sizes {
		for _, kind := range []string{"raw", "raw-chunked", "multipart", "base64"} {
			if size > 5<<20 && kind != "raw" {
				continue // the 300 MiB case once, as the add-in's main path
			}
			t.Run(fmt.Sprintf("%s/%d", kind, size), func(t *testing.T) {
				j.jira.Reset()
				body, want := content(size, size+7)
				if size == 0 && kind == "raw" {
					body = http.NoBody
				}
				name := `Q3 "report"` + "\r\n" + `ünïcode €.pdf`
				var req *http.Request
				switch kind {
				case "raw":
					req = j.uploadReq(t, "ITSM-34", "filename="+urlq(name), "application/pdf", body, size)
				case "raw-chunked":
					req = j.uploadReq(t, "ITSM-34", "", "application/pdf", io.MultiReader(body), -1)
					req.Header.Set("Content-Disposition", `attachment; filename*=UTF-8''`+urlq(name))
				case "multipart":
					pr, pw := io.Pipe()
					mw := multipart.NewWriter(pw)
					go func() {
						h := make(map[string][]string)
						h["Content-Disposition"] = []string{`form-data; name="file"; filename="` + strings.NewReplacer("\"", "%22", "\r", "%0D", "\n", "%0A").Replace(name) + `"`}
						h["Content-Type"] = []string{"application/pdf"}
						w, _ := mw.CreatePart(h)
						io.Copy(w, body)
						mw.Close()
						pw.Close()
					}()
					req = j.uploadReq(t, "ITSM-34", "", mw.FormDataContentType(), pr, -1)
				case "base64":
					pr, pw := io.Pipe()
					go func() {
						enc := base64.NewEncoder(base64.StdEncoding, pw)
						io.Copy(enc, body)
						enc.Close()
						pw.Close()
					}()
					req = j.uploadReq(t, "10710", "encoding=base64&filename="+urlq(name), "application/pdf", pr, -1)
				}
				res := send(t, req)
				if res.Status != 200 {
					t.Fatalf("upload: %d %s", res.Status, res.Body)
				}
				var atts []map[string]any
				if err := json.Unmarshal(res.Body, &atts); err != nil || len(atts) != 1 || atts[0]["size"] != float64(size) {
					t.Fatalf("Jira's answer did not come back: %s", res.Body)
				}
				ups := j.jira.CompletedUploads()
				if len(ups) != 1 {
					t.Fatalf("completed uploads at Jira: %d", len(ups))
				}
				u := ups[0]
				if u.SHA256 != want || u.Size != size {
					t.Fatalf("bytes differ at Jira: size %d sha %s, want %d %s", u.Size, u.SHA256, size, want)
				}
				if u.Filename != name && kind != "multipart" {
					t.Fatalf("filename at Jira = %q, want %q", u.Filename, name)
				}
				if u.ContentType != "application/pdf" {
					t.Fatalf("part type at Jira = %q", u.ContentType)
				}
				if kind == "raw" && u.ContentLength < 0 {
					t.Fatal("a raw upload with Content-Length went chunked to Jira; want an exact Content-Length")
				}
			})
		}
	}
}

func urlq(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func TestUploadOverTLSToJira(t *testing.T) {
	t.Parallel()
	j := startJira(t, true, nil)
	body, want := content(1<<20, 3)
	res := send(t, j.uploadReq(t, "ITSM-1", "filename=a.bin", "application/octet-stream", body, 1<<20))
	if res.Status != 200 {
		t.Fatalf("upload over TLS: %d %s", res.Status, res.Body)
	}
	if u := j.jira.CompletedUploads(); len(u) != 1 || u[0].SHA256 != want {
		t.Fatalf("at Jira: %+v", u)
	}
}

func TestDownloadStreamsBackIdentical(t *testing.T) {
	t.Parallel()
	j := startJira(t, false, nil)
	id, want := j.jira.AddAttachment("big report.pdf", "application/pdf", 40<<20, 11)
	get := func(rng string) relaytest.Answer {
		req, _ := http.NewRequest("GET", j.downloadPath(id), nil)
		req.Header.Set("X-Relay-Key", j.tenant.Client)
		req.Header.Set("Authorization", "Bearer t")
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		return send(t, req)
	}
	res := get("")
	if res.Status != 200 || relaytest.SHA256(res.Body) != want || res.Header.Get("Content-Length") != fmt.Sprint(40<<20) ||
		res.Header.Get("Content-Type") != "application/pdf" || !strings.Contains(res.Header.Get("Content-Disposition"), "big report.pdf") {
		t.Fatalf("download: %d len %d headers %v", res.Status, len(res.Body), res.Header)
	}
	res = get("bytes=100-199")
	full, _ := io.ReadAll(io.LimitReader(fakejira.NewContent(40<<20, 11), 200))
	if res.Status != 206 || !bytes.Equal(res.Body, full[100:200]) || res.Header.Get("Content-Range") == "" {
		t.Fatalf("range: %d %q", res.Status, res.Header.Get("Content-Range"))
	}
	if res := get("bytes=999999999-"); res.Status != 416 {
		t.Fatalf("unsatisfiable range: %d", res.Status)
	}
	if res := get("items=0-1"); res.Status != 400 || res.ErrCode(t) != "invalid_range" {
		t.Fatalf("malformed range: %d %s", res.Status, res.Body)
	}
}

// goroutines counts goroutines after letting finished ones exit.
func goroutines() int {
	for range 20 {
		runtime.Gosched()
		time.Sleep(5 * time.Millisecond)
	}
	return runtime.NumGoroutine()
}

// TestCallerAbortLeavesNoCompleteUpload: the caller promises 10 MiB, sends
// 1 MiB and hangs up. Jira must not record a complete upload, and nothing leaks.
func TestCallerAbortLeavesNoCompleteUpload(t *testing.T) {
	j := startJira(t, false, nil)
	before := goroutines()
	for _, kind := range []string{"raw", "base64", "multipart"} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(j.relay.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		q, ct := "?filename=x.bin", "application/octet-stream"
		switch kind {
		case "base64":
			q += "&encoding=base64"
		case "multipart":
			q, ct = "", "multipart/form-data; boundary=XyZ"
		}
		fmt.Fprintf(conn, "POST /v1/instances/%s/issues/ITSM-9/attachments%s HTTP/1.1\r\nHost: relay\r\nX-Relay-Key: %s\r\nAuthorization: Basic x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
			j.tenant.ID, q, j.tenant.Client, ct, 10<<20)
		chunk := bytes.Repeat([]byte("QUFB"), 1<<18) // 1 MiB of valid base64 / raw bytes
		if kind == "multipart" {
			conn.Write([]byte("--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n"))
		}
		conn.Write(chunk)
		time.Sleep(200 * time.Millisecond)
		conn.Close()
	}
	ups, _ := j.jira.WaitUploads(3, 5*time.Second)
	for _, u := range ups {
		if u.Complete {
			t.Fatalf("Jira recorded a complete upload from an aborted caller: %+v", u)
		}
	}
	if n := len(j.jira.CompletedUploads()); n != 0 {
		t.Fatalf("%d completed uploads", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for goroutines() > before+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if g := goroutines(); g > before+2 {
		t.Fatalf("goroutines: %d before, %d after the aborts", before, g)
	}
	if n := j.jira.OpenConnections(); n > 4 {
		t.Fatalf("%d connections left open at Jira", n)
	}
}

// TestChunkedBodyOverLimit: with no Content-Length the relay counts and stops
// at the limit; Jira never gets a complete upload.
func TestChunkedBodyOverLimit(t *testing.T) {
	t.Parallel()
	j := startJira(t, false, func(c *configs.Config) { c.MaxAttachmentBytes = 1 << 20 })
	for _, q := range []string{"filename=big.bin", "filename=big.bin&encoding=base64"} {
		// A raw socket, so the test sees exactly what a caller that keeps
		// sending gets: the 413 arrives although the body is still coming.
		conn, err := net.Dial("tcp", strings.TrimPrefix(j.relay.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /v1/instances/%s/issues/ITSM-2/attachments?%s HTTP/1.1\r\nHost: relay\r\nX-Relay-Key: %s\r\nAuthorization: Basic x\r\nTransfer-Encoding: chunked\r\n\r\n", j.tenant.ID, q, j.tenant.Client)
		chunk := strings.Repeat("QUFB", 1<<16) // 256 KiB, valid base64 too
		go func() {
			for range 16 { // 4 MiB in all
				fmt.Fprintf(conn, "%x\r\n%s\r\n", len(chunk), chunk)
			}
			fmt.Fprintf(conn, "0\r\n\r\n")
		}()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: no answer: %v", q, err)
		}
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != 413 || !strings.Contains(string(b), "attachment_too_large") {
			t.Fatalf("%s: %d %s", q, resp.StatusCode, b)
		}
	}
	if ups, _ := j.jira.WaitUploads(2, 5*time.Second); len(ups) != 2 || ups[0].Complete || ups[1].Complete {
		t.Fatalf("Jira saw %+v; want 2 incomplete attempts", ups)
	}
	// Exactly at the limit still works.
	body, want := content(1<<20, 5)
	res := send(t, j.uploadReq(t, "ITSM-2", "filename=ok.bin", "", io.MultiReader(body), -1))
	if res.Status != 200 {
		t.Fatalf("at the limit: %d %s", res.Status, res.Body)
	}
	done := j.jira.CompletedUploads()
	if len(done) != 1 || done[0].SHA256 != want {
		t.Fatalf("completed uploads: %+v", done)
	}
}

func TestBadBase64IsRefusedAndNothingCompletes(t *testing.T) {
	t.Parallel()
	j := startJira(t, false, nil)
	good := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("x"), 100<<10))
	res := send(t, j.uploadReq(t, "ITSM-3", "encoding=base64&filename=a.txt", "text/plain", strings.NewReader(good[:50000]+"!!!!"+good[50000:]), -1))
	if res.Status != 400 || res.ErrCode(t) != "invalid_base64" {
		t.Fatalf("bad base64: %d %s", res.Status, res.Body)
	}
	if n := len(j.jira.CompletedUploads()); n != 0 {
		t.Fatalf("%d completed uploads at Jira", n)
	}
}

// heapDuring runs f and returns the heap in use before it and the highest
// heap in use sampled (every 20 ms) while it ran.
func heapDuring(f func()) (idle, peak uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	idle = ms.HeapInuse
	var top atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				runtime.ReadMemStats(&m)
				if m.HeapInuse > top.Load() {
					top.Store(m.HeapInuse)
				}
			}
		}
	}()
	f()
	close(stop)
	<-done
	return idle, max(top.Load(), idle)
}

// TestUploadMemoryStaysFlat measures the heap while 256 MiB cross the relay:
// it must not grow with the attachment (target: within 64 MiB of idle).
func TestUploadMemoryStaysFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 256 MiB")
	}
	j := startJira(t, false, nil)
	const size = 256 << 20
	var res relaytest.Answer
	idle, peak := heapDuring(func() {
		res = send(t, j.uploadReq(t, "ITSM-4", "filename=big.bin", "application/octet-stream", io.LimitReader(fakejira.NewContent(size, 9), size), size))
	})
	if res.Status != 200 {
		t.Fatalf("upload: %d %s", res.Status, res.Body)
	}
	t.Logf("heap in use: idle %d MiB, peak %d MiB during a 256 MiB upload", idle>>20, peak>>20)
	if grew := int64(peak) - int64(idle); grew > 64<<20 {
		t.Fatalf("heap grew by %d MiB during a 256 MiB upload; want < 64 MiB", grew>>20)
	}
}
