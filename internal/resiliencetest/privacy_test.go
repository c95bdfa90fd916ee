package resiliencetest

// Privacy canaries: a full workload whose attachments, credentials, keys,
// file names, lookups, refused bodies and error reports carry unique canary
// strings. Afterwards no canary may be found in the etcd keyspace (keys and
// values), in the etcd member's data files, in any log line, or in the
// metrics, except the user's name and e-mail address, which the API exists
// to store (and which the scan must find, to prove it looks in the right
// places).

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// canaryTag is 12 random upper-case letters: no digit runs, nothing a
// scrubber would take for a number, a token or an address.
func canaryTag() string {
	b := make([]byte, 12)
	for i := range b {
		b[i] = byte('A' + rand.IntN(26))
	}
	return string(b)
}

// canaries are the secrets of one workload, by what they stand for.
type canaries struct {
	forbidden map[string]string // must appear nowhere
	allowed   map[string]string // stored on purpose; must be found in etcd
}

func (c *canaries) secret(what, v string) string { c.forbidden[what] = v; return v }
func (c *canaries) stored(what, v string) string { c.allowed[what] = v; return v }

// scan reports which canaries occur in b.
func (c *canaries) scan(b []byte) (forbidden, allowed []string) {
	for what, v := range c.forbidden {
		if bytes.Contains(b, []byte(v)) {
			forbidden = append(forbidden, what)
		}
	}
	for what, v := range c.allowed {
		if bytes.Contains(b, []byte(v)) {
			allowed = append(allowed, what)
		}
	}
	return forbidden, allowed
}

func TestPrivacyCanaries(t *testing.T) {
	t.Parallel()
	tag := canaryTag()
	cv := &canaries{forbidden: map[string]string{}, allowed: map[string]string{}}

	cl := etcdtest.StartCluster(t, 1)
	cli := etcdtest.Client(t, cl.Endpoints()...)
	logs := &relaytest.LogBuffer{}
	fj := relaytest.StartJira(t, fakejira.Options{})
	relay := relaytest.StartWith(t, relaytest.Options{Etcd: cli, Logger: logs.Logger(), Mutate: func(c *configs.Config) {
		relaxedLimits(c)
	}})
	a := newAPI(t, relay.URL)
	tn := a.MustRegister(t, fj.URL())
	cv.secret("client key", tn.Client)
	cv.secret("admin key", tn.Admin)
	p := "/v1/instances/" + tn.ID

	// Users: the name and e-mail are stored on purpose.
	name := cv.stored("user name", "CANARY-NAME-"+tag)
	email := cv.stored("user e-mail", "canary-mail-"+strings.ToLower(tag)+"@example.com")
	if res := a.Do("PUT", p+"/users/1220", tn.Client, map[string]any{"name": name, "email": email}); res.Status != 201 {
		t.Fatalf("put user: %s", res)
	}
	if res := a.Do("GET", p+"/users/1220/export", tn.Admin, nil); res.Status != 200 {
		t.Fatalf("export user: %s", res)
	}
	// Configuration, mappings and lookups.
	if res := a.Do("PUT", p+"/config", tn.Admin, `{"templates":[{"name":"Bug"}]}`); res.Status != 200 {
		t.Fatalf("put config: %s", res)
	}
	etag := a.Do("GET", p+"/config", tn.Client, nil).Header.Get("ETag")
	a.Do("GET", p+"/config", tn.Client, nil, "If-None-Match", etag)
	if res := a.Do("POST", p+"/mappings", tn.Client, relaytest.MappingBody("conv-1", "<m1@example.com>", "1220", "10710", "ITSM-34")); res.Status != 201 {
		t.Fatalf("link mapping: %s", res)
	}
	lookup := cv.secret("lookup value", "CANARY-LOOKUP-"+tag)
	if res := a.Do("GET", p+"/mappings?conversationId="+lookup, tn.Client, nil); res.Status != 200 {
		t.Fatalf("lookup: %s", res)
	}

	// Uploads, every shape, with canaries in the bytes, the file names and
	// the Jira credentials.
	bearer := cv.secret("Bearer credential", "CANARY-BEARER-"+tag)
	basicPW := cv.secret("Basic password", "CANARY-BASICPW-"+tag)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("canary@example.com:"+basicPW))
	cv.secret("Basic credential, encoded", strings.TrimPrefix(basic, "Basic "))
	body := []byte(cv.secret("attachment bytes", "CANARY-BODY-"+tag+"---") + strings.Repeat(" filler ", 4096) + "CANARY-BODY-" + tag + "---")
	cv.secret("attachment bytes, base64", base64.StdEncoding.EncodeToString(body[:21]))
	for i, kind := range []string{kindRaw, kindBase64, kindMultipart} {
		file := cv.secret("file name "+kind, fmt.Sprintf("CANARY-FILE-%s-%s.txt", tag, kind))
		req := uploadRequest(relay.URL, tn, fmt.Sprintf("PRIV-%d", i), file, body, kind)
		req.Header.Set("Authorization", []string{"Bearer " + bearer, basic, "Bearer " + bearer}[i])
		if res := a.Send(req); res.Status != 200 {
			t.Fatalf("upload %s: %s", kind, res)
		}
	}
	// A file name in Content-Disposition.
	cdName := cv.secret("file name in Content-Disposition", "CANARY-CDNAME-"+tag+".txt")
	req, _ := http.NewRequest("POST", relay.URL+p+"/issues/PRIV-9/attachments", bytes.NewReader(body))
	req.Header.Set("X-Relay-Key", tn.Client)
	req.Header.Set("Authorization", basic)
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Content-Disposition", `attachment; filename="`+cdName+`"`)
	if res := a.Send(req); res.Status != 200 {
		t.Fatalf("upload with Content-Disposition: %s", res)
	}
	if n := len(fj.CompletedUploads()); n != 4 {
		t.Fatalf("%d uploads completed at Jira, want 4", n)
	}
	// A download whose name and bytes are canaries.
	dlName := cv.secret("downloaded file name", "CANARY-DLNAME-"+tag+".bin")
	dlBody := cv.secret("downloaded bytes", "CANARY-DL-"+tag+"-content")
	id := fj.AddAttachmentBytes(dlName, "application/octet-stream", []byte(dlBody))
	dreq, _ := http.NewRequest("GET", relay.URL+p+"/attachments/"+id+"/content", nil)
	dreq.Header.Set("X-Relay-Key", tn.Client)
	dreq.Header.Set("Authorization", "Bearer "+bearer)
	if res := a.Send(dreq); res.Status != 200 || string(res.Body) != dlBody {
		t.Fatalf("download: %s", res)
	}

	// Refusals carrying canaries: wrong keys, other headers, refused bodies,
	// and malformed HTTP (fasthttp's parse errors quote the raw request).
	wrongKey := cv.secret("wrong X-Relay-Key", "CANARY-KEY-"+tag)
	cookie := cv.secret("cookie", "CANARY-COOKIE-"+tag)
	hdr := cv.secret("other header", "CANARY-HDR-"+tag)
	if res := a.Do("GET", p+"/config", wrongKey, nil, "Cookie", "s="+cookie, "X-Custom", hdr); res.Status != 401 {
		t.Errorf("wrong key: %s", res)
	}
	if res := a.Do("GET", p, tn.Client, nil, "X-Custom", hdr); res.Status != 403 {
		t.Errorf("client key on an admin route: %s", res)
	}
	field := cv.secret("refused field", "CANARY-FIELD-"+tag)
	fieldValue := cv.secret("refused value", "CANARY-FIELDVALUE-"+tag)
	a.Do("PUT", p+"/users/1221", tn.Client, `{"name":"x","email":"x@example.com","`+field+`":"`+fieldValue+`"}`)
	broken := cv.secret("broken JSON", "CANARY-BROKEN-"+tag)
	a.Do("POST", p+"/mappings", tn.Client, `{"mailId":"`+broken+`",`)
	a.Do("POST", "/v1/instances", "", `{"url":"https://`+strings.ToLower(tag)+`.example.com/?t=`+cv.secret("refused URL", "CANARY-URL-"+tag)+`","jiraVersion":"1","addinVersion":"1"}`)
	rawAuth := cv.secret("credential in a malformed request", "CANARY-RAWAUTH-"+tag)
	c, err := net.DialTimeout("tcp", relay.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "POST %s/issues/A-1/attachments HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer %s\r\nX-Relay-Key: %s\r\nBad Header\r\n\r\n", p, rawAuth, wrongKey)
	_, _ = io.ReadAll(c)
	_ = c.Close()
	// Jira refusing a credential: its answer is relayed, nothing logged.
	jreq := uploadRequest(relay.URL, tn, "PRIV-10", "x.txt", []byte("x"), kindRaw)
	jreq.Header.Set("Authorization", "Bearer "+bearer)
	jreq.URL.Path = strings.Replace(jreq.URL.Path, "PRIV-10", "not-a-key", 1)
	a.Send(jreq)

	errorReports(t, a, tn, tag, cv)

	// Everything the relay logged and exported.
	time.Sleep(200 * time.Millisecond)
	logged := logs.String()
	if !strings.Contains(logged, `"msg":"request"`) {
		t.Logf("note: the relay logged no access lines (%d bytes of log)", len(logged))
	}
	if f, _ := cv.scan([]byte(logged)); len(f) > 0 {
		t.Errorf("canaries in the relay's log: %v", f)
		for _, line := range strings.Split(logged, "\n") {
			if f, _ := cv.scan([]byte(line)); len(f) > 0 {
				t.Logf("log line: %.400s", line)
			}
		}
	}
	if ah, ok := any(relay.Server).(interface{ AdminHandler() http.Handler }); ok {
		rec := httptest.NewRecorder()
		ah.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if f, _ := cv.scan(rec.Body.Bytes()); len(f) > 0 {
			t.Errorf("canaries in /metrics: %v", f)
		}
	}

	// The whole etcd keyspace, keys and values.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	all, err := cli.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	var kv bytes.Buffer
	for _, x := range all.Kvs {
		kv.Write(x.Key)
		kv.WriteByte('\n')
		kv.Write(x.Value)
		kv.WriteByte('\n')
	}
	f, found := cv.scan(kv.Bytes())
	if len(f) > 0 {
		t.Errorf("canaries in the etcd keyspace: %v", f)
	}
	if len(found) != len(cv.allowed) {
		t.Errorf("the keyspace scan found %v of the stored canaries %v: it does not look where it should", found, keysOf(cv.allowed))
	}

	// The member's data files, raw, once it has flushed and stopped.
	relay.Stop()
	cl.Stop(0)
	files, bytesRead := 0, 0
	foundInFiles := map[string]bool{}
	err = filepath.WalkDir(cl.Members[0].Config.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		bytesRead += len(b)
		f, ok := cv.scan(b)
		if len(f) > 0 {
			t.Errorf("canaries in etcd's data file %s: %v", filepath.Base(path), f)
		}
		for _, w := range ok {
			foundInFiles[w] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(foundInFiles) != len(cv.allowed) {
		t.Errorf("the data-file scan found %v of the stored canaries: it does not look where it should", foundInFiles)
	}
	t.Logf("%d canaries planted (%d forbidden, %d stored on purpose); scanned %d etcd keys, %d data files (%d MiB), %d bytes of log",
		len(cv.forbidden)+len(cv.allowed), len(cv.forbidden), len(cv.allowed), len(all.Kvs), files, bytesRead>>20, len(logged))
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// errorReports runs the error-report routes with canaries in everything the
// scrubber must remove, if the relay has the routes.
func errorReports(t *testing.T, a *api, tn tenant, tag string, cv *canaries) {
	p := "/v1/instances/" + tn.ID + "/error-reports"
	probe := a.Do("POST", p, tn.Client, map[string]any{"message": "probe", "stack": "", "addinVersion": "4.2.0", "context": map[string]any{}})
	if code, _ := probe.RelayError(); probe.Status == 404 && code == "route_not_found" {
		t.Logf("POST %s: 404 route_not_found: the error-report route does not exist yet; its canaries are left out", "/v1/instances/{id}/error-reports")
		return
	}
	lower := strings.ToLower(tag)
	mail := cv.secret("e-mail in an error report", "canary-err-"+lower+"@example.com")
	bearerTok := cv.secret("Bearer token in an error report", "CANARYERRBEARER"+tag)
	basicTok := base64.StdEncoding.EncodeToString([]byte("canary@example.com:CANARY-ERRBASIC-" + tag))
	cv.secret("Basic credential in an error report", basicTok)
	jwtSig := cv.secret("JWT in an error report", "CANARYJWTSIG"+tag)
	jwt := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0In0." + jwtSig
	apiToken := cv.secret("API token in an error report", "ATATT3xFfGF0CANARYAPITOKEN"+tag+"xYz")
	query := cv.secret("URL query in an error report", "CANARY-ERRQUERY-"+tag)
	digits := cv.secret("digit run in an error report", fmt.Sprintf("4%015d", rand.Int64N(1e15)))
	report := map[string]any{
		"message":      "Upload failed for " + mail + " with Authorization: Bearer " + bearerTok + " card " + digits,
		"stack":        "Error: 401\n    at send (https://acme.atlassian.net/rest/api/3/issue?token=" + query + ")\n    at auth (Basic " + basicTok + ")\n    jwt=" + jwt,
		"addinVersion": "4.2.0",
		"context":      map[string]any{"user": mail, "apiToken": apiToken, "url": "https://x.example.com/p?q=" + query},
	}
	// Refused while the admin has not switched reports on: nothing stored.
	if res := a.Do("POST", p, tn.Client, report); res.Status != 403 {
		t.Errorf("error report before errorReports is on: %s, want 403", res)
	}
	if res := a.Do("PATCH", "/v1/instances/"+tn.ID, tn.Admin, map[string]any{"errorReports": true}); res.Status != 200 {
		t.Fatalf("switching error reports on: %s", res)
	}
	if res := a.Do("POST", p, tn.Client, report); res.Status < 200 || res.Status > 299 {
		t.Errorf("error report: %s", res)
	}
	list := a.Do("GET", p, tn.Admin, nil)
	if list.Status != 200 || !bytes.Contains(list.Body, []byte(`"reports"`)) || !bytes.Contains(list.Body, []byte("Upload failed for")) {
		t.Errorf("listing error reports: %s", list)
	}
	if f, _ := cv.scan(list.Body); len(f) > 0 {
		t.Errorf("the stored error report still holds %v: %s", f, list.Body)
	}
}
