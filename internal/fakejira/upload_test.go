package fakejira

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestUpload(t *testing.T) {
	s := start(t, Options{BasePath: "/ex/jira/11111111-2222-3333-4444-555555555555/"})
	payload := make([]byte, 300_000)
	if _, err := io.ReadFull(NewContent(int64(len(payload)), 7), payload); err != nil {
		t.Fatal(err)
	}
	manyFiles := func(n int) []testFile {
		fs := make([]testFile, n)
		for i := range fs {
			fs[i] = testFile{name: fmt.Sprintf("f%d.txt", i), contentType: "text/plain", data: []byte(strconv.Itoa(i))}
		}
		return fs
	}

	tests := []struct {
		name     string
		issue    string
		files    []testFile
		edit     func(*http.Request)
		status   int
		wantMsg  string // substring of errorMessages[0] for errors
		complete bool
	}{
		{name: "one file", issue: "PROJ-123", files: []testFile{{"report.pdf", "application/pdf", payload}}, status: 200, complete: true},
		{name: "numeric issue id", issue: "10042", files: []testFile{{"a.bin", "", []byte("hello")}}, status: 200, complete: true},
		{name: "empty file", issue: "AB_1-1", files: []testFile{{"empty.txt", "text/plain", nil}}, status: 200, complete: true},
		{name: "image gets thumbnail", issue: "IMG-9", files: []testFile{{"pic.png", "image/png", payload[:1000]}}, status: 200, complete: true},
		{name: "unicode filename", issue: "PROJ-1", files: []testFile{{"Bericht über Ärger.docx", "application/octet-stream", []byte("x")}}, status: 200, complete: true},
		{name: "sixty files", issue: "PROJ-2", files: manyFiles(60), status: 200, complete: true},
		{name: "sixty-one files", issue: "PROJ-2", files: manyFiles(61), status: 413, wantMsg: "Too many attachments"},
		{name: "no XSRF header", issue: "PROJ-1", files: []testFile{{"a", "", []byte("a")}},
			edit: func(r *http.Request) { r.Header.Del("X-Atlassian-Token") }, status: 403, wantMsg: "XSRF check failed"},
		{name: "no Authorization", issue: "PROJ-1", files: []testFile{{"a", "", []byte("a")}},
			edit: func(r *http.Request) { r.Header.Del("Authorization") }, status: 401, wantMsg: "You are not authenticated"},
		{name: "not multipart", issue: "PROJ-1", files: []testFile{{"a", "", []byte("a")}},
			edit: func(r *http.Request) { r.Header.Set("Content-Type", "application/octet-stream") }, status: 415},
		{name: "lower-case key", issue: "proj-1", files: []testFile{{"a", "", []byte("a")}}, status: 404,
			wantMsg: "Issue does not exist or you do not have permission to see it."},
		{name: "one-letter project", issue: "P-1", files: []testFile{{"a", "", []byte("a")}}, status: 404},
		{name: "no files", issue: "PROJ-1", status: 400, wantMsg: "No file"},
	}
	idRe := regexp.MustCompile(`^[0-9]+$`)
	createdRe := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$`)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.Reset()
			body, ct := multipartBody(t, tc.files...)
			bodyLen := int64(body.Len())
			req := uploadReq(t, s, tc.issue, body, ct)
			if tc.edit != nil {
				tc.edit(req)
			}
			status, hdr, b := do(t, s.Client(), req)
			if status != tc.status {
				t.Fatalf("status %d, want %d; body %s", status, tc.status, b)
			}
			if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			ups := waitUploads(t, s, 1)
			if len(ups) != 1 {
				t.Fatalf("%d uploads recorded", len(ups))
			}
			u := ups[0]
			if u.Complete != tc.complete || u.Status != tc.status || u.Issue != tc.issue {
				t.Errorf("recorded Complete=%v Status=%d Issue=%q Err=%q", u.Complete, u.Status, u.Issue, u.Err)
			}
			if u.Header.Get("X-Atlassian-Token") != req.Header.Get("X-Atlassian-Token") || u.Authorization != req.Header.Get("Authorization") {
				t.Errorf("recorded headers %v, Authorization %q", u.Header, u.Authorization)
			}
			if tc.status != 200 {
				if tc.complete || u.Err == "" {
					t.Errorf("rejected upload recorded Err=%q", u.Err)
				}
				msgs := errorMessages(t, b)
				if !strings.Contains(msgs[0], tc.wantMsg) {
					t.Errorf("errorMessages %q, want %q", msgs, tc.wantMsg)
				}
				var raw map[string]json.RawMessage
				_ = json.Unmarshal(b, &raw)
				if string(raw["errors"]) != "{}" {
					t.Errorf("errors = %s, want {}", raw["errors"])
				}
				if len(s.CompletedUploads()) != 0 {
					t.Errorf("CompletedUploads not empty")
				}
				return
			}

			if u.Err != "" || u.Parts != len(tc.files) || len(u.Files) != len(tc.files) || u.BodyBytes != bodyLen || u.ContentLength != bodyLen {
				t.Errorf("recorded Err=%q Parts=%d Files=%d BodyBytes=%d ContentLength=%d, want %d files and %d bytes",
					u.Err, u.Parts, len(u.Files), u.BodyBytes, u.ContentLength, len(tc.files), bodyLen)
			}
			if u.Filename != tc.files[0].name || u.ContentType != tc.files[0].contentType ||
				u.Size != int64(len(tc.files[0].data)) || u.SHA256 != sha(tc.files[0].data) {
				t.Errorf("recorded %q %q %d %s, want %q %q %d %s", u.Filename, u.ContentType, u.Size, u.SHA256,
					tc.files[0].name, tc.files[0].contentType, len(tc.files[0].data), sha(tc.files[0].data))
			}
			var atts []map[string]any
			if err := json.Unmarshal(b, &atts); err != nil {
				t.Fatalf("response not a JSON array: %v: %s", err, b)
			}
			if len(atts) != len(tc.files) {
				t.Fatalf("%d attachments in response, want %d", len(atts), len(tc.files))
			}
			for i, a := range atts {
				f := tc.files[i]
				id, _ := a["id"].(string)
				if !idRe.MatchString(id) || id != u.Files[i].ID {
					t.Errorf("id %v (recorded %q)", a["id"], u.Files[i].ID)
				}
				if i > 0 {
					prev, _ := strconv.Atoi(atts[i-1]["id"].(string))
					if cur, _ := strconv.Atoi(id); cur != prev+1 {
						t.Errorf("ids not incrementing: %d after %d", cur, prev)
					}
				}
				if a["filename"] != f.name || a["size"] != float64(len(f.data)) {
					t.Errorf("attachment %d: filename %v size %v", i, a["filename"], a["size"])
				}
				if a["self"] != s.URL()+"/rest/api/3/attachment/"+id || a["content"] != s.URL()+"/rest/api/3/attachment/content/"+id {
					t.Errorf("self %v content %v", a["self"], a["content"])
				}
				if c, _ := a["created"].(string); !createdRe.MatchString(c) {
					t.Errorf("created %q", c)
				}
				author, _ := a["author"].(map[string]any)
				if author["accountId"] == "" || author["displayName"] == "" || author["active"] != true {
					t.Errorf("author %v", author)
				}
				mt, _ := a["mimeType"].(string)
				if f.contentType != "" && mt != f.contentType {
					t.Errorf("mimeType %q, want %q", mt, f.contentType)
				}
				_, hasThumb := a["thumbnail"]
				if hasThumb != strings.HasPrefix(mt, "image/") {
					t.Errorf("thumbnail %v for %s", a["thumbnail"], mt)
				}
				if u.Files[i].SHA256 != sha(f.data) {
					t.Errorf("file %d sha mismatch", i)
				}
			}
			if got := len(s.CompletedUploads()); got != 1 {
				t.Errorf("CompletedUploads: %d", got)
			}
		})
	}
	if s.Requests() == 0 || s.BytesReceived() == 0 {
		t.Errorf("counters: %d requests, %d bytes", s.Requests(), s.BytesReceived())
	}
}

func TestUploadWrongMethodAndPaths(t *testing.T) {
	s := start(t, Options{})
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/rest/api/3/issue/PROJ-1/attachments", 405},
		{http.MethodPost, "/rest/api/3/issue/PROJ-1/attachments/extra", 404},
		{http.MethodGet, "/rest/api/2/serverInfo", 404},
		{http.MethodGet, "/nothing", 404},
	} {
		req, _ := http.NewRequest(tc.method, s.URL()+tc.path, nil)
		status, _, b := do(t, s.Client(), req)
		if status != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, status, tc.status)
		}
		errorMessages(t, b)
	}
	if n := len(s.Uploads()); n != 0 {
		t.Errorf("%d uploads recorded for non-upload requests", n)
	}
}

// A 64 MiB file sent through an io.Pipe (chunked, never in memory on the
// client) arrives intact, and the fake consumes it while it is being sent.
func TestUploadLargeStreamed(t *testing.T) {
	const size = 64 << 20
	s := start(t, Options{})
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	wantSum := make(chan string, 1)
	streamed := make(chan bool, 1)
	go func() {
		part, err := mw.CreateFormFile("file", "big.bin")
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		h := sha256.New()
		src := io.TeeReader(NewContent(size, 42), h)
		if _, err := io.CopyN(part, src, size/2); err != nil {
			pw.CloseWithError(err)
			return
		}
		// Half the file is written; a streaming server has read most of it.
		deadline := time.Now().Add(5 * time.Second)
		for s.BytesReceived() < size/4 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		streamed <- s.BytesReceived() >= size/4
		if _, err := io.Copy(part, src); err != nil {
			pw.CloseWithError(err)
			return
		}
		wantSum <- hex.EncodeToString(h.Sum(nil))
		pw.CloseWithError(mw.Close())
	}()
	req := uploadReq(t, s, "BIG-1", pr, mw.FormDataContentType())
	status, _, b := do(t, s.Client(), req)
	if status != 200 {
		t.Fatalf("status %d: %s", status, b)
	}
	if !<-streamed {
		t.Errorf("fake had read only %d bytes while the client was half way", s.BytesReceived())
	}
	u := waitUploads(t, s, 1)[0]
	if !u.Complete || u.Size != size || u.SHA256 != <-wantSum || u.ContentLength != -1 {
		t.Errorf("recorded Complete=%v Size=%d SHA256=%s ContentLength=%d Err=%q", u.Complete, u.Size, u.SHA256, u.ContentLength, u.Err)
	}
}

func TestUploadNoHash(t *testing.T) {
	s := start(t, Options{NoHash: true})
	body, ct := multipartBody(t, testFile{"a.txt", "text/plain", []byte("abc")})
	if status, _, b := do(t, s.Client(), uploadReq(t, s, "PROJ-1", body, ct)); status != 200 {
		t.Fatalf("status %d: %s", status, b)
	}
	u := waitUploads(t, s, 1)[0]
	if !u.Complete || u.Size != 3 || u.SHA256 != "" {
		t.Errorf("recorded %+v", u)
	}
}

func TestUploadLimit(t *testing.T) {
	s := start(t, Options{UploadLimit: 1000})
	body, ct := multipartBody(t, testFile{"big.bin", "", make([]byte, 1001)})
	status, _, b := do(t, s.Client(), uploadReq(t, s, "PROJ-1", body, ct))
	if status != 413 {
		t.Fatalf("status %d: %s", status, b)
	}
	if u := waitUploads(t, s, 1)[0]; u.Complete || u.Status != 413 {
		t.Errorf("recorded %+v", u)
	}
	_, _, b = get(t, s, "/rest/api/3/attachment/meta", nil)
	if string(b) != `{"enabled":true,"uploadLimit":1000}` {
		t.Errorf("meta %s", b)
	}
}

// rawUpload writes an upload request by hand on a fresh connection: the
// headers with Content-Length of the full body, then only the first n bytes
// of the body; then it closes the connection.
func rawUpload(t *testing.T, s *Server, body []byte, contentType string, n int) {
	t.Helper()
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head := fmt.Sprintf("POST %s/rest/api/3/issue/PROJ-7/attachments HTTP/1.1\r\nHost: %s\r\n"+
		"Authorization: %s\r\nX-Atlassian-Token: no-check\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		s.BasePath(), s.Addr(), testAuth, contentType, len(body))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(body[:n]); err != nil {
		t.Fatal(err)
	}
}

func TestUploadBrokenBodies(t *testing.T) {
	s := start(t, Options{BasePath: "/ex/jira/x"})
	data := bytes.Repeat([]byte("0123456789"), 20_000)
	good, ct := multipartBody(t, testFile{"a.bin", "", data})
	tests := []struct {
		name        string
		send        func(t *testing.T)
		wantErrPart string
	}{
		{name: "half the body then close", send: func(t *testing.T) {
			rawUpload(t, s, good.Bytes(), ct, good.Len()/2)
		}, wantErrPart: "unexpected EOF"},
		{name: "all but the closing boundary", send: func(t *testing.T) {
			rawUpload(t, s, good.Bytes(), ct, good.Len()-4)
		}},
		{name: "headers only", send: func(t *testing.T) {
			rawUpload(t, s, good.Bytes(), ct, 0)
		}},
		{name: "body without closing boundary (Content-Length matches)", send: func(t *testing.T) {
			cut := good.Bytes()[:good.Len()-len("--\r\n")-len(strings.TrimPrefix(ct, "multipart/form-data; boundary="))-4]
			status, _, b := do(t, s.Client(), uploadReq(t, s, "PROJ-7", bytes.NewReader(cut), ct))
			if status != 400 {
				t.Errorf("status %d: %s", status, b)
			}
		}},
		{name: "garbage", send: func(t *testing.T) {
			status, _, b := do(t, s.Client(), uploadReq(t, s, "PROJ-7", strings.NewReader("this is not multipart"), ct))
			if status != 400 {
				t.Errorf("status %d: %s", status, b)
			}
		}},
		{name: "no boundary", send: func(t *testing.T) {
			status, _, b := do(t, s.Client(), uploadReq(t, s, "PROJ-7", bytes.NewReader(good.Bytes()), "multipart/form-data"))
			if status != 400 {
				t.Errorf("status %d: %s", status, b)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.Reset()
			tc.send(t)
			u := waitUploads(t, s, 1)[0]
			if u.Complete || u.Err == "" {
				t.Fatalf("broken upload recorded Complete=%v Err=%q", u.Complete, u.Err)
			}
			if !strings.Contains(u.Err, tc.wantErrPart) {
				t.Errorf("Err %q, want it to mention %q", u.Err, tc.wantErrPart)
			}
			if len(s.CompletedUploads()) != 0 {
				t.Errorf("a broken upload counts as completed")
			}
		})
	}
	// The fake still works afterwards.
	status, _, b := do(t, s.Client(), uploadReq(t, s, "PROJ-7", bytes.NewReader(good.Bytes()), ct))
	if status != 200 {
		t.Fatalf("status %d: %s", status, b)
	}
}

func TestWaitUploadsTimeout(t *testing.T) {
	s := start(t, Options{})
	begin := time.Now()
	if _, err := s.WaitUploads(1, 100*time.Millisecond); err == nil {
		t.Fatal("WaitUploads returned no error without uploads")
	}
	if d := time.Since(begin); d < 100*time.Millisecond || d > 2*time.Second {
		t.Errorf("WaitUploads took %v", d)
	}
}

func TestMaxRecords(t *testing.T) {
	s := start(t, Options{MaxRecords: 3})
	for i := range 7 {
		body, ct := multipartBody(t, testFile{fmt.Sprintf("%d.txt", i), "", []byte("x")})
		if status, _, b := do(t, s.Client(), uploadReq(t, s, "PROJ-1", body, ct)); status != 200 {
			t.Fatalf("status %d: %s", status, b)
		}
	}
	ups := waitUploads(t, s, 7)
	if len(ups) != 3 || ups[0].Filename != "4.txt" || ups[2].Filename != "6.txt" {
		t.Errorf("kept %d records: %+v", len(ups), ups)
	}
	if st := s.Stats(); st.UploadAttempts != 7 || st.UploadsCompleted != 7 || st.FileBytesCompleted != 7 {
		t.Errorf("stats %+v", st)
	}
}
