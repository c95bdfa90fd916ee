package opstest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
)

// staticServer serves dir over plain HTTP on a loopback port of its own: a
// web origin other than the relay's.
func staticServer(t *testing.T, dir string) (origin string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// faultControl lets the Node tests switch the fake Jira's faults:
// POST {"kind":"429"|"503"|"500"|"none","retryAfter":"1","count":1}.
func faultControl(t *testing.T, jira *fakejira.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]fakejira.FaultKind{"none": fakejira.FaultNone, "429": fakejira.Fault429, "503": fakejira.Fault503, "500": fakejira.Fault500}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var f struct {
			Kind, RetryAfter string
			Count            int
		}
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil || r.Method != http.MethodPost {
			http.Error(w, "POST a fault as JSON", http.StatusBadRequest)
			return
		}
		k, ok := kinds[f.Kind]
		if !ok {
			http.Error(w, "unknown kind", http.StatusBadRequest)
			return
		}
		jira.SetFault(fakejira.Fault{Kind: k, RetryAfter: f.RetryAfter, Count: f.Count, Endpoint: fakejira.EndpointUpload})
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/fault"
}

// tapSummary reads node's TAP summary ("# pass N", "# fail N", "# skipped N").
func tapSummary(out string) map[string]int {
	res := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$`).FindAllStringSubmatch(out, -1) {
		res[m[1]], _ = strconv.Atoi(m[2])
	}
	return res
}

// runNode runs node with args in clients/js; every test must pass, none may
// be skipped, and at least minPass must run.
func runNode(t *testing.T, node, dir string, env []string, minPass int, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv("NODE_OPTIONS"), env...)
	out, err := cmd.CombinedOutput()
	sum := tapSummary(string(out))
	if err != nil || sum["fail"] != 0 || sum["cancelled"] != 0 || sum["skipped"] != 0 || sum["pass"] < minPass {
		t.Fatalf("node %s: %v, summary %v (want %d or more passed, none failed or skipped):\n%s", strings.Join(args, " "), err, sum, minPass, out)
	}
	t.Logf("node %s: %v", strings.Join(args, " "), sum)
	return string(out)
}

// TestJSClient runs clients/js against a real relay and the fake Jira: the
// client's Node tests (unit and live), and the demo page in headless
// Chromium from another origin, whose upload is then checked byte for byte
// (SHA-256) against what the fake Jira received.
func TestJSClient(t *testing.T) {
	node := lookTool(t, "node", installNode)
	js := filepath.Join(repoRoot(t), "clients", "js")
	v, err := exec.Command(node, "-p", "process.versions.node.split('.')[0]").Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	nodeMajor, _ := strconv.Atoi(strings.TrimSpace(string(v)))
	if nodeMajor < 18 {
		missing(t, "Node.js 18 or later (found "+strings.TrimSpace(string(v))+")", installNode)
	}

	jira := relaytest.StartJira(t, fakejira.Options{})
	control := faultControl(t, jira)
	allowed := staticServer(t, js)
	denied := staticServer(t, js)
	const token = "js-registration-token"
	r := startRelay(t, nil, func(c *configs.Config) {
		c.CORSOrigins = []string{allowed}
		c.RegistrationToken = token
	})
	// The download test's attachment, known to the fake Jira.
	dl := bytes.Repeat([]byte("attachment bytes "), 4096)
	attID := jira.AddAttachmentBytes("dl.txt", "text/plain", dl)
	dlSum := sha256.Sum256(dl)

	t.Run("node", func(t *testing.T) {
		runNode(t, node, js, []string{
			"RELAY_URL=" + r.URL, "REGISTRATION_TOKEN=" + token,
			"JIRA_URL=" + strings.Replace(jira.URL(), "127.0.0.1", "localhost", 1),
			"FAKEJIRA_CONTROL=" + control, "ATTACHMENT_ID=" + attID, "ATTACHMENT_SHA256=" + hex.EncodeToString(dlSum[:]),
		}, 23, "--test", "--test-reporter=tap", "test/relay-client.test.mjs")
		want := sha256.Sum256(bytes.Repeat([]byte("hello from the add-in, "), 5000))
		found := false
		for _, u := range jira.CompletedUploads() {
			found = found || (u.Filename == "notes é.txt" && u.SHA256 == hex.EncodeToString(want[:]) && u.Issue == "OPS-7")
		}
		if !found {
			t.Errorf("the fake Jira has no complete upload of notes é.txt with the client's bytes: %+v", jira.CompletedUploads())
		}
	})

	t.Run("browser", func(t *testing.T) {
		chromium := os.Getenv("CHROMIUM")
		if chromium == "" {
			chromium = "/usr/bin/chromium"
		}
		if _, err := os.Stat(chromium); err != nil {
			missing(t, "Chromium ("+chromium+")", installChromium)
		}
		if nodeMajor < 20 {
			missing(t, "Node.js 20 or later for playwright-core (found "+strconv.Itoa(nodeMajor)+")", installNode)
		}
		if _, err := os.Stat(filepath.Join(js, "node_modules", "playwright-core", "package.json")); err != nil {
			missing(t, "clients/js/node_modules/playwright-core", installNodeMods)
		}
		tn := register(t, r.URL, jira.URL(), "X-Registration-Token", token)

		// A file as a user would pick it: binary, with a name that needs encoding.
		dir := t.TempDir()
		file := filepath.Join(dir, "Quarterly report é+1.pdf")
		data := make([]byte, 700<<10+3)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		resultFile := filepath.Join(dir, "result.json")
		const issue, issueID, jiraAuth = "DEMO-7", "10077", "Basic ZGVtb0BleGFtcGxlLmNvbTp0b2tlbg=="
		conv, mail, user := "AAQkADQ2demo/conv+1=", "<demo-1@mail.example.com>", "demo-user"
		before := len(jira.Uploads())

		runNode(t, node, js, []string{
			"DEMO_URL=" + allowed + "/demo/index.html", "DENIED_DEMO_URL=" + denied + "/demo/index.html",
			"RELAY_URL=" + r.URL, "INSTANCE_ID=" + tn.ID, "CLIENT_KEY=" + tn.Client,
			"UPLOAD_FILE=" + file, "ISSUE_KEY=" + issue, "ISSUE_ID=" + issueID, "JIRA_AUTH=" + jiraAuth,
			"CONVERSATION_ID=" + conv, "MAIL_ID=" + mail, "USER_ID=" + user,
			"RESULT_FILE=" + resultFile, "CHROMIUM=" + chromium,
		}, 1, "--test-reporter=tap", "test/browser.mjs")

		var res struct {
			AttachmentID string   `json:"attachmentId"`
			Related      []string `json:"related"`
		}
		b, err := os.ReadFile(resultFile)
		if err != nil {
			t.Fatalf("browser.mjs wrote no result: %v", err)
		}
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		t.Logf("browser: %s", b)

		// The fake Jira got the file, whole, once: the unlisted origin's try
		// never reached it.
		var ours []fakejira.Upload
		for _, u := range jira.Uploads()[before:] {
			if u.Issue == issue {
				ours = append(ours, u)
			}
		}
		if len(ours) != 1 {
			t.Fatalf("the fake Jira recorded %d uploads to %s, want 1: %+v", len(ours), issue, ours)
		}
		u := ours[0]
		if !u.Complete || u.SHA256 != hex.EncodeToString(sum[:]) || u.Size != int64(len(data)) {
			t.Errorf("upload: complete %v, %d bytes, sha256 %s; want %d bytes, sha256 %x (%s)", u.Complete, u.Size, u.SHA256, len(data), sum, u.Err)
		}
		if u.Filename != filepath.Base(file) || u.ContentType != "application/pdf" || u.Authorization != jiraAuth {
			t.Errorf("upload: filename %q, type %q, authorization %q", u.Filename, u.ContentType, u.Authorization)
		}
		if len(u.Files) != 1 || u.Files[0].ID != res.AttachmentID {
			t.Errorf("the page shows attachment %q, the fake Jira made %+v", res.AttachmentID, u.Files)
		}

		// The link the page made is in the relay, as the page showed it.
		m := call(t, "GET", r.URL+"/v1/instances/"+tn.ID+"/mappings?conversationId="+url.QueryEscape(conv), nil, "X-Relay-Key", tn.Client)
		mustStatus(t, m, 200, "mappings of the demo conversation")
		var page struct {
			Mappings []struct {
				MailID, UserID string
				Jira           struct{ ID, Key string }
			}
		}
		m.Decode(t, &page)
		if len(page.Mappings) != 1 || page.Mappings[0].MailID != mail || page.Mappings[0].UserID != user ||
			page.Mappings[0].Jira.Key != issue || page.Mappings[0].Jira.ID != issueID {
			t.Errorf("the relay holds %s for the conversation", m.Body)
		}
		if len(res.Related) != 1 || res.Related[0] != issue {
			t.Errorf("the page showed related issues %v, want [%s]", res.Related, issue)
		}
	})
}
