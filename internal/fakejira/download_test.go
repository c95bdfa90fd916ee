package fakejira

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func TestDownloads(t *testing.T) {
	for _, opts := range []Options{{}, {TLS: true, BasePath: "/ex/jira/abc"}} {
		name := "http"
		if opts.TLS {
			name = "https"
		}
		t.Run(name, func(t *testing.T) {
			s := start(t, opts)
			if !strings.HasPrefix(s.URL(), name+"://127.0.0.1:") {
				t.Fatalf("URL %q", s.URL())
			}
			const size = 1 << 20
			genID, genSum := s.AddAttachment("generated.bin", "application/octet-stream", size, 99)
			small := []byte("hello, attachment")
			bytesID := s.AddAttachmentBytes(`Q3 "final" report.txt`, "text/plain", small)
			uniID := s.AddAttachmentBytes("Größe.txt", "text/plain", small)
			full := make([]byte, size)
			if _, err := io.ReadFull(NewContent(size, 99), full); err != nil {
				t.Fatal(err)
			}
			if sha(full) != genSum {
				t.Fatalf("AddAttachment sha %s, NewContent sha %s", genSum, sha(full))
			}
			auth := map[string]string{"Authorization": testAuth}
			content := "/rest/api/3/attachment/content/"

			tests := []struct {
				name        string
				path        string
				hdr         map[string]string
				status      int
				want        []byte
				wantCT      string
				wantCD      string
				wantCR      string
				wantJSONErr bool
			}{
				{name: "generated, full", path: content + genID + "?redirect=false", hdr: auth, status: 200, want: full,
					wantCT: "application/octet-stream", wantCD: `attachment; filename="generated.bin"`},
				{name: "bytes, full", path: content + bytesID + "?redirect=false", hdr: auth, status: 200, want: small,
					wantCT: "text/plain", wantCD: `attachment; filename="Q3 \"final\" report.txt"`},
				{name: "non-ASCII filename", path: content + uniID + "?redirect=false", hdr: auth, status: 200, want: small,
					wantCD: `attachment; filename="Gr__e.txt"; filename*=UTF-8''Gr%C3%B6%C3%9Fe.txt`},
				{name: "range", path: content + genID + "?redirect=false", status: 206, want: full[1000:3000],
					hdr: map[string]string{"Authorization": testAuth, "Range": "bytes=1000-2999"}, wantCR: "bytes 1000-2999/1048576"},
				{name: "suffix range", path: "/media/" + genID, status: 206, want: full[size-10:],
					hdr: map[string]string{"Range": "bytes=-10"}, wantCR: "bytes 1048566-1048575/1048576"},
				{name: "unsatisfiable range", path: content + bytesID + "?redirect=false", status: 416,
					hdr: map[string]string{"Authorization": testAuth, "Range": "bytes=5000-"}, wantCR: "bytes */17"},
				{name: "media", path: "/media/" + bytesID, status: 200, want: small},
				{name: "redirect followed", path: content + genID, hdr: auth, status: 200, want: full},
				{name: "unknown id", path: content + "424242?redirect=false", hdr: auth, status: 404, wantJSONErr: true},
				{name: "unknown id, redirect", path: content + "424242", hdr: auth, status: 404, wantJSONErr: true},
				{name: "unknown media", path: "/media/424242", status: 404, wantJSONErr: true},
				{name: "no Authorization", path: content + genID + "?redirect=false", status: 401, wantJSONErr: true},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					status, h, b := get(t, s, tc.path, tc.hdr)
					if status != tc.status {
						t.Fatalf("status %d, want %d: %.200s", status, tc.status, b)
					}
					if tc.wantJSONErr {
						errorMessages(t, b)
						return
					}
					if tc.want != nil {
						if !bytes.Equal(b, tc.want) {
							t.Errorf("got %d bytes (sha %s), want %d", len(b), sha(b), len(tc.want))
						}
						if cl := h.Get("Content-Length"); cl != strconv.Itoa(len(tc.want)) {
							t.Errorf("Content-Length %q", cl)
						}
					}
					if tc.wantCT != "" && h.Get("Content-Type") != tc.wantCT {
						t.Errorf("Content-Type %q, want %q", h.Get("Content-Type"), tc.wantCT)
					}
					if tc.wantCD != "" && h.Get("Content-Disposition") != tc.wantCD {
						t.Errorf("Content-Disposition %q, want %q", h.Get("Content-Disposition"), tc.wantCD)
					}
					if tc.wantCR != "" && h.Get("Content-Range") != tc.wantCR {
						t.Errorf("Content-Range %q, want %q", h.Get("Content-Range"), tc.wantCR)
					}
				})
			}

			t.Run("303 without redirect=false", func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodGet, s.URL()+content+genID, nil)
				req.Header.Set("Authorization", testAuth)
				status, h, _ := do(t, noRedirect(s), req)
				if status != http.StatusSeeOther || h.Get("Location") != s.URL()+"/media/"+genID {
					t.Errorf("status %d Location %q", status, h.Get("Location"))
				}
			})

			t.Run("metadata", func(t *testing.T) {
				status, _, b := get(t, s, "/rest/api/3/attachment/"+genID, auth)
				var a map[string]any
				if err := json.Unmarshal(b, &a); status != 200 || err != nil {
					t.Fatalf("status %d: %s", status, b)
				}
				if a["id"] != genID || a["size"] != float64(size) || a["filename"] != "generated.bin" {
					t.Errorf("metadata %v", a)
				}
			})
		})
	}
}

func TestTLSTrust(t *testing.T) {
	s := start(t, Options{TLS: true})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CAPEM()) {
		t.Fatalf("CAPEM is not PEM: %q", s.CAPEM())
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		url := strings.Replace(s.URL(), "127.0.0.1", host, 1) + "/rest/api/3/serverInfo"
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("%s with CAPEM: %v", host, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" {
			t.Errorf("%s: %s %s", host, resp.Proto, resp.Status)
		}
		c.CloseIdleConnections()
	}
	// An ordinary client does not trust the fake.
	c := &http.Client{Transport: &http.Transport{}}
	if resp, err := c.Get(s.URL() + "/rest/api/3/serverInfo"); err == nil {
		resp.Body.Close()
		t.Error("system roots trusted the fake's certificate")
	}
	c.CloseIdleConnections()
	if start(t, Options{}).CAPEM() != nil {
		t.Error("CAPEM without TLS")
	}
}

func TestContent(t *testing.T) {
	const size = 10_007
	full, err := io.ReadAll(NewContent(size, 5))
	if err != nil || len(full) != size {
		t.Fatalf("%d bytes, %v", len(full), err)
	}
	other, _ := io.ReadAll(NewContent(size, 6))
	if bytes.Equal(full, other) {
		t.Error("seeds 5 and 6 give the same content")
	}
	again, _ := io.ReadAll(NewContent(size, 5))
	if !bytes.Equal(full, again) {
		t.Error("content is not deterministic")
	}
	// Odd-sized reads from odd offsets give the same bytes.
	r := NewContent(size, 5)
	for _, off := range []int64{0, 1, 7, 8, 9, 1001, size - 3, size} {
		if _, err := r.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 13)
		n, err := io.ReadFull(r, got)
		want := full[off:min(off+13, size)]
		if !bytes.Equal(got[:n], want) || (n < 13 && err == nil) {
			t.Errorf("at %d: got %x (%v), want %x", off, got[:n], err, want)
		}
	}
	if pos, _ := r.Seek(-5, io.SeekEnd); pos != size-5 {
		t.Errorf("SeekEnd: %d", pos)
	}
	if _, err := r.Seek(-1, io.SeekStart); err == nil {
		t.Error("negative seek allowed")
	}
	// Hash of a large content matches what AddAttachment reports.
	s := start(t, Options{})
	_, sum := s.AddAttachment("x", "", 3<<20+5, 11)
	h := sha256.New()
	_, _ = io.Copy(h, NewContent(3<<20+5, 11))
	if hex.EncodeToString(h.Sum(nil)) != sum {
		t.Error("AddAttachment sha256 differs")
	}
}

func TestInfoEndpoints(t *testing.T) {
	s := start(t, Options{BasePath: "ex/jira/cloud-1", Admin: true})
	if !strings.HasSuffix(s.URL(), "/ex/jira/cloud-1") {
		t.Fatalf("URL %q", s.URL())
	}
	auth := map[string]string{"Authorization": testAuth}
	tests := []struct {
		name   string
		path   string
		hdr    map[string]string
		status int
		check  func(t *testing.T, m map[string]any)
	}{
		{name: "serverInfo anonymous", path: "/rest/api/3/serverInfo", status: 200, check: func(t *testing.T, m map[string]any) {
			if m["baseUrl"] != s.URL() || m["version"] != "1001.0.0-SNAPSHOT" || m["deploymentType"] != "Cloud" ||
				m["buildNumber"] != float64(100250) || m["serverTitle"] != "Jira" {
				t.Errorf("%v", m)
			}
			if v, _ := json.Marshal(m["versionNumbers"]); string(v) != "[1001,0,0]" {
				t.Errorf("versionNumbers %s", v)
			}
		}},
		{name: "myself", path: "/rest/api/3/myself", hdr: auth, status: 200, check: func(t *testing.T, m map[string]any) {
			if m["accountId"] == "" || m["accountType"] != "atlassian" || m["emailAddress"] != "relay@example.com" ||
				m["displayName"] == "" || m["active"] != true || m["timeZone"] == "" || m["locale"] != "en_US" {
				t.Errorf("%v", m)
			}
		}},
		{name: "myself bearer", path: "/rest/api/3/myself", hdr: map[string]string{"Authorization": "Bearer xyz"}, status: 200},
		{name: "myself anonymous", path: "/rest/api/3/myself", status: 401},
		{name: "attachment meta", path: "/rest/api/3/attachment/meta", status: 200, check: func(t *testing.T, m map[string]any) {
			if m["enabled"] != true || m["uploadLimit"] != float64(1<<30) {
				t.Errorf("%v", m)
			}
		}},
		{name: "outside base path", path: "/../../rest/api/3/serverInfo", status: 404},
		{name: "unknown", path: "/rest/api/3/issue/PROJ-1", status: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, h, b := get(t, s, tc.path, tc.hdr)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, b)
			}
			if !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
				t.Errorf("Content-Type %q", h.Get("Content-Type"))
			}
			if status != 200 {
				errorMessages(t, b)
				return
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("%v: %s", err, b)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}

	// Counters and the admin endpoint.
	if s.OpenConnections() < 1 {
		t.Errorf("OpenConnections %d with a kept-alive client", s.OpenConnections())
	}
	req, _ := http.NewRequest(http.MethodGet, strings.TrimSuffix(s.URL(), s.BasePath())+"/_fakejira/stats", nil)
	status, _, b := do(t, s.Client(), req)
	var st Stats
	if err := json.Unmarshal(b, &st); status != 200 || err != nil || st.Requests < int64(len(tests)) {
		t.Errorf("stats %d %s", status, b)
	}
	s.Reset()
	if s.Requests() != 0 || s.BytesReceived() != 0 {
		t.Errorf("Reset left counters %d %d", s.Requests(), s.BytesReceived())
	}
}
