package proxy_test

// Hostile input: requests built to break the relay, sent on raw TCP so
// that malformed HTTP reaches it exactly as written. Each gets its 4xx (with
// the JSON error shape wherever the relay or its ErrorHandler answers), and
// after each: nothing was written to etcd, nothing completed at Jira, no
// byte reached a host other than the instance's Jira, and the relay still
// answers /healthz.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	"github.com/jira-relay/jira-relay/store"
)

// hsListener counts the connections a second host receives: nothing the
// relay is asked to do may reach it.
type hsListener struct {
	ln    net.Listener
	conns atomic.Int64
}

func hsListen(t *testing.T) *hsListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &hsListener{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.conns.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return l
}

// hsReq is a raw HTTP/1.1 request: the request line, Host: relay, the
// header lines given, Content-Length when there is a body and no framing
// header was given, and the body.
func hsReq(method, target string, headers []string, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: relay\r\n", method, target)
	framed := false
	for _, h := range headers {
		lh := strings.ToLower(h)
		if strings.HasPrefix(lh, "content-length") || strings.HasPrefix(lh, "transfer-encoding") {
			framed = true
		}
		b.WriteString(h + "\r\n")
	}
	if body != "" && !framed {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

// hsSend writes raw to the relay and reads one answer; closed is true when
// the relay closed the connection without answering.
func hsSend(t *testing.T, addr, raw string) (res relaytest.Answer, closed bool, conn net.Conn, br *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil && !hsIsReset(err) {
		t.Fatalf("write: %v", err)
	}
	br = bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF || hsIsReset(err) {
			return relaytest.Answer{}, true, c, br
		}
		t.Fatalf("reading the answer: %v", err)
	}
	return relaytest.ReadAnswer(resp), false, c, br
}

func hsIsReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// hsCase is one hostile request.
type hsCase struct {
	name   string
	raw    string
	status int    // the 4xx wanted
	alt    []int  // other acceptable 4xx
	code   string // the relay's JSON error code; "" for an answer relayed from Jira
	// jira: Jira may see the request (the relay cannot know the body is
	// broken before Jira says so); it must not complete.
	jira bool
	// lone: the connection must be closed after the answer, with nothing
	// more answered (request-smuggling shapes).
	lone bool
}

func TestHostileRequests(t *testing.T) {
	evil := hsListen(t)
	j := startJira(t, false, func(c *configs.Config) {
		c.MaxAttachmentBytes = 1 << 20
		c.InstanceRPS, c.InstanceBurst, c.IPRPS, c.IPBurst = 10000, 10000, 10000, 10000
	})
	a := j.api
	addr := strings.TrimPrefix(j.relay.URL, "http://")
	evilAddr := evil.ln.Addr().String()
	A := j.tenant
	B := a.MustRegister(t, "https://other.atlassian.net")
	pA := "/v1/instances/" + A.ID
	up := pA + "/issues/ABC-1/attachments"
	user := `{"name":"Mia","email":"mia@example.com"}`
	reg := func(host string) string {
		return `{"url":"https://` + host + `.atlassian.net","jiraVersion":"1001.0.0","addinVersion":"4.2.0"}`
	}
	ck := "X-Relay-Key: " + A.Client
	ak := "X-Relay-Key: " + A.Admin
	jiraCred := "Authorization: Basic bWlhQGV4YW1wbGUuY29tOnRva2Vu"
	js := "Content-Type: application/json"
	octet := "Content-Type: application/octet-stream"
	mp := "Content-Type: multipart/form-data; boundary=XyZ"
	part := "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
	big := strings.Repeat("a", 20<<10)
	mapping := func(jira string) string {
		return `{"mailId":"<m@x>","userId":"u1","jira":` + jira + `}`
	}

	cases := []hsCase{
		// Path traversal and encoded slashes in ids.
		{name: "traversal in the instance id", raw: hsReq("GET", "/v1/instances/..%2F..%2Fetc/config", []string{ck}, ""), status: 404, code: "instance_not_found"},
		{name: "dot-dot instance id", raw: hsReq("GET", "/v1/instances/%2e%2e/config", []string{ck}, ""), status: 404, code: "instance_not_found"},
		{name: "traversal to another instance", raw: hsReq("GET", pA+"/../"+B.ID+"/config", []string{ck}, ""), status: 404, alt: []int{401}},
		{name: "encoded traversal to another instance", raw: hsReq("GET", pA+"%2F..%2F"+B.ID+"/config", []string{ck}, ""), status: 404, code: "instance_not_found"},
		{name: "user id %2e%2e", raw: hsReq("PUT", pA+"/users/%2e%2e", []string{ck, js}, user), status: 400, code: "invalid_id"},
		{name: "user id %2E", raw: hsReq("PUT", pA+"/users/%2E", []string{ck, js}, user), status: 400, code: "invalid_id"},
		{name: "user id with CR LF", raw: hsReq("PUT", pA+"/users/a%0D%0Ab", []string{ck, js}, user), status: 400, code: "invalid_id"},
		{name: "user id with NUL", raw: hsReq("PUT", pA+"/users/a%00b", []string{ck, js}, user), status: 400, code: "invalid_id"},
		{name: "user id badly percent-encoded", raw: hsReq("PUT", pA+"/users/a%zzb", []string{ck, js}, user), status: 400, code: "invalid_id"},
		{name: "user id of 1025 bytes", raw: hsReq("PUT", pA+"/users/"+strings.Repeat("u", 1025), []string{ck, js}, user), status: 400, code: "invalid_id"},
		{name: "traversal in the issue key", raw: hsReq("POST", pA+"/issues/..%2F..%2Fmyself/attachments?filename=a.txt", []string{ck, jiraCred, octet}, "hello"), status: 400, code: "invalid_issue"},
		{name: "encoded slash in the issue key", raw: hsReq("POST", pA+"/issues/ABC-1%2F..%2F..%2FserverInfo/attachments?filename=a.txt", []string{ck, jiraCred, octet}, "hello"), status: 400, code: "invalid_issue"},
		{name: "dot-dot issue key", raw: hsReq("POST", pA+"/issues/%2e%2e/attachments?filename=a.txt", []string{ck, jiraCred, octet}, "hello"), status: 400, code: "invalid_issue"},
		{name: "traversal in the attachment id", raw: hsReq("GET", pA+"/attachments/1%2F..%2F..%2Fmyself/content", []string{ck, jiraCred}, ""), status: 400, code: "invalid_attachment_id"},
		{name: "query smuggled in the attachment id", raw: hsReq("GET", pA+"/attachments/1%3Fredirect=true/content", []string{ck, jiraCred}, ""), status: 400, code: "invalid_attachment_id"},

		// File names and header values.
		{name: "empty file name", raw: hsReq("POST", up+"?filename=", []string{ck, jiraCred, octet}, "hello"), status: 400, code: "invalid_filename"},
		{name: "blank file name", raw: hsReq("POST", up+"?filename=%20%20", []string{ck, jiraCred, octet}, "hello"), status: 400, code: "invalid_filename"},
		{name: "file name of 256 characters", raw: hsReq("POST", up+"?filename="+strings.Repeat("n", 256), []string{ck, jiraCred, octet}, "hello"), status: 400, code: "invalid_filename"},
		{name: "file name not UTF-8", raw: hsReq("POST", up+"?filename=%FF%FE.txt", []string{ck, jiraCred, octet}, "hello"), status: 400, code: "invalid_filename"},
		{name: "Content-Disposition without a file name", raw: hsReq("POST", up, []string{ck, jiraCred, octet, "Content-Disposition: attachment"}, "hello"), status: 400, code: "invalid_filename"},
		{name: "file name given twice", raw: hsReq("POST", up+"?filename=a.txt&filename=b.txt", []string{ck, jiraCred, octet}, "hello"), status: 400, code: "duplicate_parameter"},
		{name: "unknown query parameter", raw: hsReq("POST", up+"?filename=a.txt&redirect=http://evil", []string{ck, jiraCred, octet}, "hello"), status: 400, code: "unknown_parameter"},
		{name: "bare CR in a header value", raw: hsReq("POST", up, []string{ck, jiraCred, octet, "Content-Disposition: attachment; filename=\"a\rX-Injected: 1.txt\""}, "hello"), status: 400, code: "bad_request"},
		{name: "NUL in a header value", raw: hsReq("GET", pA+"/config", []string{"X-Relay-Key: " + A.Client + "\x00admin"}, ""), status: 400, code: "bad_request"},
		{name: "two Authorization headers", raw: hsReq("POST", up+"?filename=a.txt", []string{ck, jiraCred, "Authorization: Bearer other", octet}, "hello"), status: 400, code: "duplicate_header"},
		{name: "two X-Relay-Key headers", raw: hsReq("GET", pA+"/config", []string{ck, "X-Relay-Key: " + B.Client}, ""), status: 400, code: "duplicate_header"},
		{name: "obs-fold continuation line", raw: hsReq("GET", pA, []string{"X-Note: a", " X-Relay-Key: " + A.Admin}, ""), status: 401, alt: []int{400}},
		{name: "space before the colon", raw: hsReq("GET", pA+"/config", []string{"X-Relay-Key : " + A.Client}, ""), status: 400, code: "bad_request"},

		// Oversized headers.
		{name: "one 20 KiB header", raw: hsReq("GET", "/healthz", []string{"X-Big: " + big}, ""), status: 431, code: "headers_too_large"},
		{name: "300 headers of 100 bytes", raw: hsReq("GET", "/healthz", strings.Split(strings.TrimSuffix(strings.Repeat("X-H: "+strings.Repeat("h", 95)+"\n", 300), "\n"), "\n"), ""), status: 431, code: "headers_too_large"},
		{name: "20 KiB request target", raw: hsReq("GET", "/healthz?"+big, nil, ""), status: 431, alt: []int{414}, code: "headers_too_large"},
		{name: "20 KiB cookie", raw: hsReq("GET", pA+"/config", []string{ck, "Cookie: a=" + big}, ""), status: 431, code: "headers_too_large"},

		// Oversized bodies.
		{name: "user JSON over 16 KiB", raw: hsReq("PUT", pA+"/users/u1", []string{ck, js}, `{"name":"`+strings.Repeat("n", 17<<10)+`","email":"a@example.com"}`), status: 413, code: "body_too_large"},
		{name: "configuration over 256 KiB", raw: hsReq("PUT", pA+"/config", []string{ak, js}, `{"blob":"`+strings.Repeat("x", 257<<10)+`"}`), status: 413, code: "body_too_large"},
		{name: "Content-Length of 1 GiB on a JSON route", raw: hsReq("POST", "/v1/instances", []string{js, "Content-Length: 1073741824"}, reg("huge")), status: 413, code: "body_too_large"},
		{name: "chunked JSON over 16 KiB", raw: hsReq("POST", "/v1/instances", []string{js, "Transfer-Encoding: chunked"}, fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", 17<<10, strings.Repeat(" ", 17<<10))), status: 413, code: "body_too_large"},
		{name: "upload over --max-attachment-bytes", raw: hsReq("POST", up+"?filename=a.bin", []string{ck, jiraCred, octet, "Content-Length: 2097152"}, "x"), status: 413, code: "attachment_too_large"},
		{name: "base64 upload over its budget", raw: hsReq("POST", up+"?filename=a.bin&encoding=base64", []string{ck, jiraCred, octet, "Content-Length: 4194304"}, "QUFB"), status: 413, code: "attachment_too_large"},

		// JSON.
		{name: "duplicate keys", raw: hsReq("PUT", pA+"/users/u1", []string{ck, js}, `{"name":"Mia","name":"Eve","email":"mia@example.com"}`), status: 400, code: "duplicate_key"},
		{name: "duplicate keys, one escaped", raw: hsReq("PUT", pA+"/users/u1", []string{ck, js}, `{"name":"Mia","n\u0061me":"Eve","email":"mia@example.com"}`), status: 400, code: "duplicate_key"},
		{name: "duplicate keys differing in case", raw: hsReq("PUT", pA+"/users/u1", []string{ck, js}, `{"name":"Mia","email":"mia@example.com","NAME":"Eve"}`), status: 400, code: "unknown_field"},
		{name: "duplicate nested keys", raw: hsReq("POST", pA+"/mappings", []string{ck, js}, mapping(`{"id":"1","id":"2","key":"AB-1"}`)), status: 400, code: "duplicate_key"},
		{name: "nesting 33 deep", raw: hsReq("PUT", pA+"/config", []string{ak, js}, strings.Repeat(`{"a":`, 33)+"1"+strings.Repeat("}", 33)), status: 400, code: "invalid_json"},
		{name: "nesting 100,000 deep", raw: hsReq("PUT", pA+"/config", []string{ak, js}, "{\"a\":"+strings.Repeat("[", 100000)+strings.Repeat("]", 100000)+"}"), status: 400, code: "invalid_json"},
		{name: "name is a number", raw: hsReq("PUT", pA+"/users/u1", []string{ck, js}, `{"name":5,"email":"mia@example.com"}`), status: 400, code: "invalid_type"},
		{name: "errorReports is a string", raw: hsReq("PATCH", pA, []string{ak, js}, `{"errorReports":"yes"}`), status: 400, code: "invalid_type"},
		{name: "seats is a string", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://seats.atlassian.net","jiraVersion":"1","addinVersion":"1","license":{"key":"k","expiresAt":"2027-01-01T00:00:00Z","seats":"many"}}`), status: 400, code: "invalid_type"},
		{name: "jira is an array", raw: hsReq("POST", pA+"/mappings", []string{ck, js}, mapping(`["1","AB-1"]`)), status: 400, code: "invalid_type"},
		{name: "body is an array", raw: hsReq("PUT", pA+"/users/u1", []string{ck, js}, `[1]`), status: 400, code: "invalid_type"},
		{name: "seats overflow", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://ovf.atlassian.net","jiraVersion":"1","addinVersion":"1","license":{"key":"k","expiresAt":"2027-01-01T00:00:00Z","seats":1e400}}`), status: 400, code: "invalid_type"},
		{name: "bad UTF-8 in a value", raw: hsReq("PUT", pA+"/users/u1", []string{ck, js}, "{\"name\":\"M\xffa\",\"email\":\"mia@example.com\"}"), status: 400, code: "invalid_json"},
		{name: "bad UTF-8 in a key", raw: hsReq("PUT", pA+"/users/u1", []string{ck, js}, "{\"na\xc3me\":\"Mia\",\"email\":\"mia@example.com\"}"), status: 400, code: "invalid_json"},
		{name: "byte order mark", raw: hsReq("PUT", pA+"/users/u1", []string{ck, js}, "\xef\xbb\xbf"+user), status: 400, code: "invalid_json"},
		{name: "escaped NUL in a value", raw: hsReq("PUT", pA+"/users/u1", []string{ck, js}, `{"name":"Mia\u0000","email":"mia@example.com"}`), status: 400, code: "invalid_field"},
		{name: "__proto__ field", raw: hsReq("PUT", pA+"/users/u1", []string{ck, js}, `{"name":"Mia","email":"mia@example.com","__proto__":{"admin":true}}`), status: 400, code: "unknown_field"},
		{name: "trailing garbage", raw: hsReq("PUT", pA+"/users/u1", []string{ck, js}, user+`garbage`), status: 400, code: "invalid_json"},
		{name: "comments", raw: hsReq("PUT", pA+"/users/u1", []string{ck, js}, `{"name":"Mia", /* x */ "email":"mia@example.com"}`), status: 400, code: "invalid_json"},
		{name: "NaN", raw: hsReq("PUT", pA+"/config", []string{ak, js}, `{"a":NaN}`), status: 400, code: "invalid_json"},
		{name: "no body and no Content-Length: register", raw: hsReq("POST", "/v1/instances", []string{js}, ""), status: 400, code: "invalid_json"},
		{name: "no body and no Content-Length: user", raw: hsReq("PUT", pA+"/users/u1", []string{ck, js}, ""), status: 400, code: "invalid_json"},
		{name: "no body and no Content-Length: configuration", raw: hsReq("PUT", pA+"/config", []string{ak, js}, ""), status: 400, code: "invalid_json"},
		{name: "no body and no Content-Length: instance patch", raw: hsReq("PATCH", pA, []string{ak, js}, ""), status: 400, code: "invalid_json"},
		{name: "no body and no Content-Length: mapping", raw: hsReq("POST", pA+"/mappings", []string{ck, js}, ""), status: 400, code: "invalid_json"},
		{name: "upload with no body and no Content-Length", raw: hsReq("POST", up+"?filename=a.txt", []string{ck, jiraCred, octet}, ""), status: 411, code: "length_required"},
		{name: "base64 upload with no body and no Content-Length", raw: hsReq("POST", up+"?filename=a.txt&encoding=base64", []string{ck, jiraCred, octet}, ""), status: 411, code: "length_required"},
		{name: "field names in another case", raw: hsReq("PUT", pA+"/users/u1", []string{ck, js}, `{"NAME":"Mia","EMAIL":"mia@example.com"}`), status: 400, code: "unknown_field"},
		{name: "one field name in another case", raw: hsReq("POST", "/v1/instances", []string{js}, `{"URL":"https://case.atlassian.net","jiraVersion":"1","addinVersion":"1"}`), status: 400, code: "unknown_field"},
		{name: "nested field name in another case", raw: hsReq("POST", pA+"/mappings", []string{ck, js}, mapping(`{"ID":"1","key":"AB-1"}`)), status: 400, code: "unknown_field"},
		{name: "charset latin1", raw: hsReq("PUT", pA+"/users/u1", []string{ck, "Content-Type: application/json; charset=latin1"}, user), status: 415, code: "unsupported_media_type"},
		{name: "no Content-Type", raw: hsReq("PUT", pA+"/users/u1", []string{ck}, user), status: 415, code: "unsupported_media_type"},
		{name: "JSON sent as multipart", raw: hsReq("PUT", pA+"/users/u1", []string{ck, mp}, user), status: 415, code: "unsupported_media_type"},

		// Ports and paging cursors.
		{name: "instance URL with port 65536", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://p.atlassian.net:65536","jiraVersion":"1","addinVersion":"1"}`), status: 400, code: "invalid_url"},
		{name: "instance URL with @ in its path", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://api.atlassian.com/ex/@evil.com","jiraVersion":"1","addinVersion":"1"}`), status: 400, code: "invalid_url"},
		{name: "instance URL with port 0", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://p.atlassian.net:0","jiraVersion":"1","addinVersion":"1"}`), status: 400, code: "invalid_url"},
		{name: "instance URL with ..; (Tomcat's ..)", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://x.atlassian.net/x/..;/y","jiraVersion":"1","addinVersion":"1"}`), status: 400, code: "invalid_url"},
		{name: "instance URL with ..; segments after a cloud id", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://api.atlassian.com/ex/jira/abc/..;/..;/admin","jiraVersion":"1","addinVersion":"1"}`), status: 400, code: "invalid_url"},
		{name: "instance URL with an empty path segment", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://acme.atlassian.net//evil.example/","jiraVersion":"1","addinVersion":"1"}`), status: 400, code: "invalid_url"},
		{name: "instance URL with a ; segment", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://acme.atlassian.net/;","jiraVersion":"1","addinVersion":"1"}`), status: 400, code: "invalid_url"},
		{name: "instance URL with a wildcard host", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://*.atlassian.net","jiraVersion":"1","addinVersion":"1"}`), status: 400, code: "invalid_url"},
		{name: "instance URL with an empty host label", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://a..atlassian.net","jiraVersion":"1","addinVersion":"1"}`), status: 400, code: "invalid_url"},
		{name: "instance URL with a percent-encoded host", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://%C3%A9.atlassian.net","jiraVersion":"1","addinVersion":"1"}`), status: 400, code: "invalid_url"},
		{name: "instance URL with an invalid punycode label", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://xn--a.atlassian.net","jiraVersion":"1","addinVersion":"1"}`), status: 400, code: "invalid_url"},
		{name: "instance URL with a label ending in -", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://acme-.atlassian.net","jiraVersion":"1","addinVersion":"1"}`), status: 400, code: "invalid_url"},
		{name: "instance URL with an encoded dot segment", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://api.atlassian.com/ex/%2e%2e/x","jiraVersion":"1","addinVersion":"1"}`), status: 400, code: "invalid_url"},
		{name: "deploymentType in the wrong case", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://jira.corp.example.com","jiraVersion":"1","addinVersion":"1","deploymentType":"server"}`), status: 400, code: "invalid_field"},
		{name: "deploymentType not a type", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://jira.corp.example.com","jiraVersion":"1","addinVersion":"1","deploymentType":"Datacenter"}`), status: 400, code: "invalid_field"},
		{name: "Server URL with user info", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://u:p@jira.corp.example.com","jiraVersion":"1","addinVersion":"1","deploymentType":"Server"}`), status: 400, code: "invalid_url"},
		{name: "Server URL with a dot-dot segment", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://jira.corp.example.com/a/../b","jiraVersion":"1","addinVersion":"1","deploymentType":"Server"}`), status: 400, code: "invalid_url"},
		{name: "Server URL with port 65536", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"http://10.1.2.3:65536","jiraVersion":"1","addinVersion":"1","deploymentType":"DataCenter"}`), status: 400, code: "invalid_url"},
		{name: "cloudId that is not a UUID", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://c.atlassian.net","jiraVersion":"1","addinVersion":"1","cloudId":"../x"}`), status: 400, code: "invalid_field"},
		{name: "licence date in year 10000 in UTC", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://d.atlassian.net","jiraVersion":"1","addinVersion":"1","license":{"key":"L","expiresAt":"9999-12-31T23:59:59-23:59","seats":1}}`), status: 400, code: "invalid_field"},
		{name: "file name given twice, the first empty", raw: hsReq("POST", up+"?filename=&filename=evil.html", []string{ck, jiraCred, octet}, "hello"), status: 400, code: "duplicate_parameter"},
		{name: "encoding given twice, the first empty", raw: hsReq("POST", up+"?filename=a.txt&encoding=&encoding=base64", []string{ck, jiraCred, octet}, "aGVsbG8="), status: 400, code: "duplicate_parameter"},
		{name: "conversationId given twice, the first empty", raw: hsReq("GET", pA+"/mappings?conversationId=&conversationId=c1", []string{ck}, ""), status: 400, code: "duplicate_parameter"},
		{name: "userId given twice, the first empty", raw: hsReq("GET", pA+"/mappings?conversationId=c1&userId=&userId=u1", []string{ck}, ""), status: 400, code: "duplicate_parameter"},
		{name: "PATCH changing the licence to year 10000 in UTC", raw: hsReq("PATCH", pA, []string{ak, js}, `{"license":{"key":"L","expiresAt":"9999-12-31T23:59:59-23:59","seats":1}}`), status: 400, code: "invalid_field"},
		{name: "PATCH renaming onto a URL outside the policy", raw: hsReq("PATCH", pA, []string{ak, js}, `{"url":"https://jira.corp.example.com"}`), status: 400, code: "invalid_url"},
		{name: "PATCH renaming with ..; in the path", raw: hsReq("PATCH", pA, []string{ak, js}, `{"url":"https://acme.atlassian.net/x/..;/y"}`), status: 400, code: "invalid_url"},
		{name: "two Content-Type headers", raw: hsReq("PUT", pA+"/users/u9", []string{ck, "Content-Type: text/plain", js}, user), status: 400, code: "duplicate_header", lone: true},
		{name: "two Range headers", raw: hsReq("GET", pA+"/attachments/10001/content", []string{ck, jiraCred, "Range: bytes=0-1", "Range: bytes=5-9"}, ""), status: 400, code: "duplicate_header", lone: true},
		{name: "query parameter on a route that takes none", raw: hsReq("GET", pA+"?a=1", []string{ak}, ""), status: 400, code: "unknown_parameter"},
		{name: "query parameter on key rotation", raw: hsReq("POST", pA+"/keys/rotate?a=1", []string{ak}, ""), status: 400, code: "unknown_parameter"},
		{name: "query parameter on registration", raw: hsReq("POST", "/v1/instances?x=1", []string{js}, reg("qp")), status: 400, code: "unknown_parameter"},
		{name: "empty cloudId", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://e.atlassian.net","jiraVersion":"1","addinVersion":"1","cloudId":""}`), status: 400, code: "invalid_field"},
		{name: "cloudId other than the URL's", raw: hsReq("POST", "/v1/instances", []string{js}, `{"url":"https://api.atlassian.com/ex/jira/0b6f1e3c-2a4d-4c5e-9f70-8a1b2c3d4e5f","jiraVersion":"1","addinVersion":"1","cloudId":"11111111-2222-4333-8444-555555555555"}`), status: 400, code: "invalid_field"},
		{name: "PATCH giving a cloudId", raw: hsReq("PATCH", pA, []string{ak, js}, `{"cloudId":"3f1c2b9a-5d4e-4f6a-8b7c-9d0e1f2a3b4c"}`), status: 400, code: "invalid_field"},
		{name: "mapping cursor not given out by the relay", raw: hsReq("GET", pA+"/mappings?conversationId=c1&cursor=garbage", []string{ck}, ""), status: 400, code: "invalid_field"},
		{name: "error-report cursor not given out by the relay", raw: hsReq("GET", pA+"/error-reports?cursor=zz", []string{ak}, ""), status: 400, code: "invalid_field"},

		// Base64 uploads.
		{name: "base64 with invalid characters", raw: hsReq("POST", up+"?filename=a.bin&encoding=base64", []string{ck, jiraCred, octet}, "QUFB!!!!QUFB"), status: 400, code: "invalid_base64", jira: true},
		{name: "base64 cut short", raw: hsReq("POST", up+"?filename=a.bin&encoding=base64", []string{ck, jiraCred, octet}, "QUFBQ"), status: 400, code: "invalid_base64", jira: true},
		{name: "base64 data after the padding", raw: hsReq("POST", up+"?filename=a.bin&encoding=base64", []string{ck, jiraCred, octet}, "QQ==QUFB"), status: 400, code: "invalid_base64", jira: true},
		{name: "encoding=hex", raw: hsReq("POST", up+"?filename=a.bin&encoding=hex", []string{ck, jiraCred, octet}, "4142"), status: 400, code: "invalid_query"},
		{name: "base64 declared as multipart", raw: hsReq("POST", up+"?filename=a.bin&encoding=base64", []string{ck, jiraCred, mp}, "QUFB"), status: 400, code: "invalid_content_type"},

		// Broken multipart: Jira refuses it, the relay relays Jira's 400.
		{name: "multipart body that is not multipart", raw: hsReq("POST", up, []string{ck, jiraCred, mp}, "this is not multipart at all"), status: 400, jira: true},
		{name: "multipart without its closing boundary", raw: hsReq("POST", up, []string{ck, jiraCred, mp}, part), status: 400, jira: true},
		{name: "multipart without a file part", raw: hsReq("POST", up, []string{ck, jiraCred, mp}, "--XyZ\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nhi\r\n--XyZ--\r\n"), status: 400, jira: true},
		{name: "multipart with another boundary", raw: hsReq("POST", up, []string{ck, jiraCred, "Content-Type: multipart/form-data; boundary=Other"}, part+"--XyZ--\r\n"), status: 400, jira: true},
		{name: "multipart without a boundary", raw: hsReq("POST", up, []string{ck, jiraCred, "Content-Type: multipart/form-data"}, part+"--XyZ--\r\n"), status: 400, code: "invalid_multipart"},
		{name: "multipart boundary of 71 characters", raw: hsReq("POST", up, []string{ck, jiraCred, "Content-Type: multipart/form-data; boundary=" + strings.Repeat("b", 71)}, part), status: 400, code: "invalid_multipart"},

		// Absolute-form request targets and Host tricks.
		{name: "absolute URL naming another host, no key", raw: hsReq("POST", "http://"+evilAddr+up+"?filename=a.txt", []string{jiraCred, octet}, "hello"), status: 401, code: "unauthorized"},
		{name: "absolute URL naming another host, other instance's key", raw: hsReq("POST", "http://"+evilAddr+up+"?filename=a.txt", []string{"X-Relay-Key: " + B.Client, jiraCred, octet}, "hello"), status: 401, code: "unauthorized"},
		{name: "absolute URL with another scheme", raw: hsReq("GET", "ftp://"+evilAddr+pA+"/config", nil, ""), status: 401, alt: []int{400}},
		{name: "CONNECT to another host", raw: "CONNECT " + evilAddr + " HTTP/1.1\r\nHost: " + evilAddr + "\r\n\r\n", status: 404, alt: []int{400, 405}},
		{name: "asterisk-form target", raw: "OPTIONS * HTTP/1.1\r\nHost: relay\r\n\r\n", status: 404, alt: []int{400, 405}},
		{name: "scheme-relative target", raw: hsReq("POST", "//"+evilAddr+up+"?filename=a.txt", []string{jiraCred, octet}, "hello"), status: 404, alt: []int{401}},
		{name: "two Host headers", raw: "GET " + pA + "/config HTTP/1.1\r\nHost: relay\r\nHost: " + evilAddr + "\r\n" + ck + "\r\n\r\n", status: 400, code: "bad_request"},

		// Request-smuggling shapes: refused and the connection closed; a
		// lenient parse would register the instance (and write to etcd).
		{name: "Content-Length and Transfer-Encoding", raw: hsReq("POST", "/v1/instances", []string{js, "Content-Length: 4", "Transfer-Encoding: chunked"}, fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(reg("smug1")), reg("smug1"))), status: 400, code: "ambiguous_framing", lone: true},
		{name: "Transfer-Encoding and Content-Length", raw: hsReq("POST", "/v1/instances", []string{js, "Transfer-Encoding: chunked", "Content-Length: 4"}, fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(reg("smug2")), reg("smug2"))), status: 400, code: "ambiguous_framing", lone: true},
		{name: "two different Content-Lengths", raw: hsReq("POST", "/v1/instances", []string{js, "Content-Length: 4", fmt.Sprintf("Content-Length: %d", len(reg("smug3")))}, reg("smug3")), status: 400, code: "bad_request", lone: true},
		{name: "Transfer-Encoding: chunked, identity", raw: hsReq("POST", "/v1/instances", []string{js, "Transfer-Encoding: chunked, identity"}, fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(reg("smug4")), reg("smug4"))), status: 400, alt: []int{501}, code: "bad_request", lone: true},
		{name: "Transfer-Encoding: identity", raw: hsReq("POST", "/v1/instances", []string{js, "Transfer-Encoding: identity", fmt.Sprintf("Content-Length: %d", len(reg("smug5")))}, reg("smug5")), status: 400, alt: []int{501}, code: "ambiguous_framing", lone: true},
		{name: "Transfer-Encoding: xchunked", raw: hsReq("POST", "/v1/instances", []string{js, "Transfer-Encoding: xchunked"}, fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(reg("smug6")), reg("smug6"))), status: 400, alt: []int{501}, code: "bad_request", lone: true},
		{name: "Transfer-Encoding with a space before the colon", raw: hsReq("POST", "/v1/instances", []string{js, "Transfer-Encoding : chunked", fmt.Sprintf("Content-Length: %d", len(reg("smug7")))}, reg("smug7")), status: 400, code: "bad_request", lone: true},
		{name: "negative Content-Length", raw: hsReq("POST", "/v1/instances", []string{js, "Content-Length: -1"}, reg("smug8")), status: 400, code: "bad_request", lone: true},
		{name: "Content-Length with a plus sign", raw: hsReq("POST", "/v1/instances", []string{js, fmt.Sprintf("Content-Length: +%d", len(reg("smug9")))}, reg("smug9")), status: 400, code: "bad_request", lone: true},
		{name: "Content-Length in hex", raw: hsReq("POST", "/v1/instances", []string{js, fmt.Sprintf("Content-Length: 0x%x", len(reg("smug10")))}, reg("smug10")), status: 400, code: "bad_request", lone: true},
		{name: "chunk size overflowing 64 bits", raw: hsReq("POST", "/v1/instances", []string{js, "Transfer-Encoding: chunked"}, "ffffffffffffffffff1\r\n"+reg("smug11")+"\r\n0\r\n\r\n"), status: 400, alt: []int{413}, code: "", lone: true},
		{name: "chunk size not hex", raw: hsReq("POST", "/v1/instances", []string{js, "Transfer-Encoding: chunked"}, "zz\r\n"+reg("smug12")+"\r\n0\r\n\r\n"), status: 400, lone: true},
		{name: "HTTP/1.0 with chunked", raw: strings.Replace(hsReq("POST", "/v1/instances", []string{js, "Transfer-Encoding: chunked"}, fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(reg("smug13")), reg("smug13"))), "HTTP/1.1", "HTTP/1.0", 1), status: 400, code: "bad_request", lone: true},
		{name: "space in the request target", raw: "GET /v1/instances/a b/config HTTP/1.1\r\nHost: relay\r\n\r\n", status: 400, code: "bad_request"},
		{name: "NUL in the request line", raw: "GET /healthz\x00 HTTP/1.1\r\nHost: relay\r\n\r\n", status: 400, code: "bad_request"},
		{name: "lower-case method", raw: hsReq("put", pA+"/users/u1", []string{ck, js}, user), status: 405, alt: []int{400}},

		// Keys of another instance, and near misses.
		{name: "other instance's client key reads config", raw: hsReq("GET", pA+"/config", []string{"X-Relay-Key: " + B.Client}, ""), status: 401, code: "unauthorized"},
		{name: "other instance's admin key writes a user", raw: hsReq("PUT", pA+"/users/u1", []string{"X-Relay-Key: " + B.Admin, js}, user), status: 401, code: "unauthorized"},
		{name: "other instance's admin key writes config", raw: hsReq("PUT", pA+"/config", []string{"X-Relay-Key: " + B.Admin, js}, `{"x":1}`), status: 401, code: "unauthorized"},
		{name: "other instance's admin key deletes", raw: hsReq("DELETE", pA, []string{"X-Relay-Key: " + B.Admin}, ""), status: 401, code: "unauthorized"},
		{name: "other instance's admin key rotates", raw: hsReq("POST", pA+"/keys/rotate", []string{"X-Relay-Key: " + B.Admin}, ""), status: 401, code: "unauthorized"},
		{name: "other instance's key uploads", raw: hsReq("POST", up+"?filename=a.txt", []string{"X-Relay-Key: " + B.Client, jiraCred, octet}, "hello"), status: 401, code: "unauthorized"},
		{name: "other instance's key downloads", raw: hsReq("GET", pA+"/attachments/10000/content", []string{"X-Relay-Key: " + B.Client, jiraCred}, ""), status: 401, code: "unauthorized"},
		{name: "key cut by one character", raw: hsReq("GET", pA+"/config", []string{"X-Relay-Key: " + A.Client[:len(A.Client)-1]}, ""), status: 401, code: "unauthorized"},
		{name: "key with one character more", raw: hsReq("GET", pA+"/config", []string{"X-Relay-Key: " + A.Client + "x"}, ""), status: 401, code: "unauthorized"},
		{name: "key in upper case", raw: hsReq("GET", pA+"/config", []string{"X-Relay-Key: " + strings.ToUpper(A.Client)}, ""), status: 401, code: "unauthorized"},
		{name: "client key on an admin route", raw: hsReq("GET", pA+"/users/u1/export", []string{ck}, ""), status: 403, code: "forbidden"},
		{name: "wrong key first, right key second", raw: hsReq("PUT", pA+"/config", []string{"X-Relay-Key: " + B.Admin, ak, js}, `{"x":1}`), status: 400, code: "duplicate_header"},
		{name: "the key's hash as key", raw: hsReq("GET", pA+"/config", []string{"X-Relay-Key: " + relaytest.SHA256([]byte(A.Client))}, ""), status: 401, code: "unauthorized"},
	}
	if len(cases) < 50 {
		t.Fatalf("only %d hostile requests", len(cases))
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys := j.relay.KeyCount(t)
			// A case before this one may have sent Jira a request that is
			// still arriving (an aborted upload): count from a settled value.
			jiraReqs := j.jira.Requests()
			relaytest.Eventually(2*time.Second, func() bool {
				time.Sleep(30 * time.Millisecond)
				n := j.jira.Requests()
				settled := n == jiraReqs
				jiraReqs = n
				return settled
			})
			res, closed, conn, br := hsSend(t, addr, tc.raw)
			switch {
			case closed:
				t.Errorf("the relay closed the connection without an answer, want %d", tc.status)
			case res.Status != tc.status && !slices.Contains(tc.alt, res.Status):
				t.Errorf("got %d %s, want %d", res.Status, relaytest.Clip(res.Body), tc.status)
			case tc.code != "" && res.Status == tc.status:
				if code, _ := res.RelayError(); code != tc.code {
					t.Errorf("got %d %s, want the JSON error code %q", res.Status, relaytest.Clip(res.Body), tc.code)
				}
			case tc.jira && tc.code == "":
				if !bytes.Contains(res.Body, []byte(`"errorMessages"`)) {
					t.Errorf("got %d %s, want Jira's error relayed", res.Status, relaytest.Clip(res.Body))
				}
			default:
				// Whoever answered (the relay or fasthttp through the relay's
				// ErrorHandler), the body is the JSON error shape.
				if code, _ := res.RelayError(); code == "" {
					t.Errorf("got %d %s: not the JSON error shape", res.Status, relaytest.Clip(res.Body))
				}
			}
			if !closed && res.Header.Get("X-Request-Id") == "" {
				t.Errorf("got %d without an X-Request-Id", res.Status)
			}
			if tc.lone && !closed {
				_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				if extra, err := br.ReadString('\n'); extra != "" || (err != io.EOF && !hsIsReset(err)) {
					t.Errorf("after the answer the connection was not closed (read %q, %v)", extra, err)
				}
			}
			if !tc.jira && j.jira.Requests() != jiraReqs {
				t.Errorf("Jira got %d requests", j.jira.Requests()-jiraReqs)
			}
			if n := len(j.jira.CompletedUploads()); n != 0 {
				t.Fatalf("%d uploads completed at Jira", n)
			}
			if n := evil.conns.Load(); n != 0 {
				t.Fatalf("the other host got %d connections", n)
			}
			if now := j.relay.KeyCount(t); now != keys {
				t.Fatalf("etcd keys: %d before, %d after", keys, now)
			}
			if res := a.Do("GET", "/healthz", "", nil); res.Status != 200 {
				t.Fatalf("healthz after it: %d", res.Status)
			}
		})
	}
	t.Logf("%d hostile requests sent", len(cases))
}

// TestHostileButContained: requests that look hostile but are legitimate
// and must be carried out safely: CR/LF in file names reach Jira encoded,
// not as headers; a traversal-shaped user id is one opaque key segment; an
// absolute URL or a Host naming another host still goes only to the
// instance's Jira.
func TestHostileButContained(t *testing.T) {
	t.Parallel()
	evil := hsListen(t)
	j := startJira(t, false, nil)
	a := j.api
	addr := strings.TrimPrefix(j.relay.URL, "http://")
	evilAddr := evil.ln.Addr().String()
	A := j.tenant
	pA := "/v1/instances/" + A.ID
	ck := "X-Relay-Key: " + A.Client
	jiraCred := "Authorization: Basic bWlhQGV4YW1wbGUuY29tOnRva2Vu"
	octet := "Content-Type: application/octet-stream"

	for _, tc := range []struct {
		name, raw, filename string
	}{
		{"CR LF in the query file name", hsReq("POST", pA+"/issues/ABC-1/attachments?filename=a%0D%0AX-Injected:%201%0D%0A%0D%0Ab.txt", []string{ck, jiraCred, octet}, "hello"), "a\r\nX-Injected: 1\r\n\r\nb.txt"},
		{"CR LF in filename*", hsReq("POST", pA+"/issues/ABC-2/attachments", []string{ck, jiraCred, octet, "Content-Disposition: attachment; filename*=UTF-8''evil%0D%0AContent-Type%3A%20text%2Fhtml.txt"}, "hello"), "evil\r\nContent-Type: text/html.txt"},
		{"quotes and backslashes in the file name", hsReq("POST", pA+"/issues/ABC-3/attachments?filename=%22%3B%20name%3D%22x%5C.txt", []string{ck, jiraCred, octet}, "hello"), `"; name="x\.txt`},
		{"absolute URL naming another host", hsReq("POST", "http://"+evilAddr+pA+"/issues/ABC-4/attachments?filename=abs.txt", []string{ck, jiraCred, octet}, "hello"), "abs.txt"},
		{"Host naming another host", strings.Replace(hsReq("POST", pA+"/issues/ABC-5/attachments?filename=host.txt", []string{ck, jiraCred, octet}, "hello"), "Host: relay", "Host: "+evilAddr, 1), "host.txt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(j.jira.Uploads())
			res, closed, _, _ := hsSend(t, addr, tc.raw)
			if closed || res.Status != 200 {
				t.Fatalf("got %d %s (closed %v), want 200", res.Status, relaytest.Clip(res.Body), closed)
			}
			ups := j.jira.Uploads()[before:]
			if len(ups) != 1 || !ups[0].Complete || ups[0].Parts != 1 || len(ups[0].Files) != 1 {
				t.Fatalf("Jira saw %+v", ups)
			}
			u := ups[0]
			if u.Filename != tc.filename || u.Size != 5 || u.SHA256 != relaytest.SHA256([]byte("hello")) {
				t.Errorf("Jira got file %q (%d bytes, content type %q), want %q exactly", u.Filename, u.Size, u.ContentType, tc.filename)
			}
			if strings.ContainsAny(u.ContentType, "\r\n") || strings.Contains(u.ContentType, "html") {
				t.Errorf("the part's Content-Type was injected: %q", u.ContentType)
			}
			if _, ok := u.Header["X-Injected"]; ok {
				t.Errorf("a header was injected into the request to Jira")
			}
			if n := evil.conns.Load(); n != 0 {
				t.Fatalf("the other host got %d connections", n)
			}
		})
	}

	t.Run("traversal-shaped user id", func(t *testing.T) {
		res := a.Do("PUT", pA+"/users/..%2F..%2Finstance", A.Client, map[string]any{"name": "Eve", "email": "eve@example.com"})
		if res.Status != 201 {
			t.Fatalf("put: %d %s", res.Status, res.Body)
		}
		got := a.Do("GET", pA, A.Admin, nil)
		if got.Status != 200 || got.JSON(t)["url"] != j.jira.URL() {
			t.Fatalf("the instance record after a traversal-shaped user id: %d %s", got.Status, got.Body)
		}
		kv, err := j.relay.Etcd.Get(t.Context(), j.relay.DataPrefix(t, A.ID)+"users/"+store.Token("../../instance"))
		if err != nil || len(kv.Kvs) != 1 {
			t.Fatalf("the user is not stored under its id's token: %v %v", kv, err)
		}
		if back := a.Do("GET", pA+"/users/..%2F..%2Finstance", A.Client, nil); back.JSON(t)["userId"] != "../../instance" {
			t.Fatalf("read back: %s", back.Body)
		}
	})
	if res := a.Do("GET", "/healthz", "", nil); res.Status != 200 {
		t.Fatalf("healthz: %d", res.Status)
	}
}
