package fakejira

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testAuth = "Basic cmVsYXlAZXhhbXBsZS5jb206dG9rZW4=" // relay@example.com:token

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// testFile is one file part of a test upload.
type testFile struct {
	name, contentType string
	data              []byte
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// multipartBody builds a multipart/form-data body with the given file parts
// (all named "file") and returns it with its Content-Type.
func multipartBody(t *testing.T, files ...testFile) (*bytes.Buffer, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range files {
		h := make(textproto.MIMEHeader)
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, f.name))
		if f.contentType != "" {
			h.Set("Content-Type", f.contentType)
		}
		pw, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf, mw.FormDataContentType()
}

// uploadReq is a well-formed upload request for issue.
func uploadReq(t *testing.T, s *Server, issue string, body io.Reader, contentType string) *http.Request {
	t.Helper()
	req, err := newUploadRequest(s.URL(), issue, body, contentType)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func newUploadRequest(base, issue string, body io.Reader, contentType string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/rest/api/3/issue/"+issue+"/attachments", body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Atlassian-Token", "no-check")
	req.Header.Set("Authorization", testAuth)
	req.Header.Set("Content-Type", contentType)
	return req, nil
}

// do sends req with the server's client and returns status, headers, body.
func do(t *testing.T, c *http.Client, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp.StatusCode, resp.Header, b
}

func get(t *testing.T, s *Server, path string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return do(t, s.Client(), req)
}

// errorMessages decodes a Jira error body, failing the test if it is not one.
func errorMessages(t *testing.T, b []byte) []string {
	t.Helper()
	var e struct {
		ErrorMessages []string `json:"errorMessages"`
	}
	if err := json.Unmarshal(b, &e); err != nil || len(e.ErrorMessages) == 0 {
		t.Fatalf("not a Jira error body: %q (%v)", b, err)
	}
	return e.ErrorMessages
}

func waitUploads(t *testing.T, s *Server, n int) []Upload {
	t.Helper()
	ups, err := s.WaitUploads(n, 5*time.Second)
	if err != nil {
		t.Fatalf("WaitUploads(%d): %v (have %+v)", n, err, ups)
	}
	return ups
}

// noRedirect is a client like s.Client() that does not follow redirects.
func noRedirect(s *Server) *http.Client {
	c := *s.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}
