package fakejira

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFaultRoute: a fault set over HTTP acts as one set with SetFault (a
// per-issue 429 with Retry-After and reason, used up after Count), GET
// shows it, DELETE clears it, a bad document is refused, and without
// Options.Admin the route does not exist.
func TestFaultRoute(t *testing.T) {
	s := start(t, Options{BasePath: "/ex/jira/cloud-1", Admin: true})
	root := strings.TrimSuffix(s.URL(), s.BasePath())
	send := func(method, body string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, root+FaultPath, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		status, _, b := do(t, s.Client(), req)
		return status, b
	}
	upload := func(issue string) (int, http.Header) {
		t.Helper()
		body, ct := multipartBody(t, testFile{"a.txt", "text/plain", []byte("hello")})
		status, h, _ := do(t, s.Client(), uploadReq(t, s, issue, body, ct))
		return status, h
	}

	status, b := send("POST", `{"kind":"429","count":1,"retryAfter":"30","reason":"jira-per-issue-on-write","issue":"ABC-1","endpoint":"upload"}`)
	if status != 200 {
		t.Fatalf("POST fault: %d %s", status, b)
	}
	want := Fault{Kind: Fault429, Count: 1, RetryAfter: "30", Reason: ReasonPerIssue, Issue: "ABC-1", Endpoint: EndpointUpload}
	if got := s.CurrentFault(); got != want {
		t.Fatalf("fault set %+v, want %+v", got, want)
	}
	var echoed Fault
	if err := json.Unmarshal(b, &echoed); err != nil || echoed != want {
		t.Errorf("POST answered %s (%v)", b, err)
	}
	if st, _ := upload("ABC-2"); st != 200 {
		t.Errorf("another issue: %d, want 200 (outside the fault)", st)
	}
	st, h := upload("ABC-1")
	if st != 429 || h.Get("Retry-After") != "30" || h.Get("RateLimit-Reason") != ReasonPerIssue {
		t.Errorf("the issue: %d Retry-After %q RateLimit-Reason %q", st, h.Get("Retry-After"), h.Get("RateLimit-Reason"))
	}
	if st, _ := upload("ABC-1"); st != 200 {
		t.Errorf("after Count: %d, want 200", st)
	}
	if status, b := send("GET", ""); status != 200 || strings.TrimSpace(string(b)) != `{"kind":"none"}` {
		t.Errorf("GET after the fault was used up: %d %s", status, b)
	}

	if status, b := send("PUT", `{"kind":"slow","delay":"250ms","endpoint":"download","host":"localhost:1"}`); status != 200 {
		t.Fatalf("PUT fault: %d %s", status, b)
	}
	if got := s.CurrentFault(); got != (Fault{Kind: FaultSlow, Delay: 250 * time.Millisecond, Endpoint: EndpointDownload, Host: "localhost:1"}) {
		t.Errorf("PUT set %+v", got)
	}
	if status, _ := send("DELETE", ""); status != 204 || s.CurrentFault().Kind != FaultNone {
		t.Errorf("DELETE: %d, fault %+v", status, s.CurrentFault())
	}

	for _, bad := range []string{`{"kind":"418"}`, `{"kind":"429","endpoint":"everywhere"}`, `{"kind":"slow","delay":"soon"}`,
		`{"kind":"429","colour":"red"}`, `not json`, `{"kind":"429"} {}`} {
		if status, b := send("POST", bad); status != 400 {
			t.Errorf("POST %s: %d %s, want 400", bad, status, b)
		} else {
			errorMessages(t, b)
		}
	}
	if status, _ := send("POST", `{"kind":"429","issue":"`+strings.Repeat("x", maxFaultJSON)+`"}`); status != 413 {
		t.Errorf("a 16 KiB fault: %d, want 413", status)
	}
	if status, _ := send("PATCH", `{}`); status != 405 {
		t.Errorf("PATCH: %d, want 405", status)
	}
	if s.CurrentFault().Kind != FaultNone {
		t.Errorf("a refused document set %+v", s.CurrentFault())
	}

	off := start(t, Options{})
	req, _ := http.NewRequest("POST", off.URL()+FaultPath, strings.NewReader(`{"kind":"500"}`))
	if status, _, _ := do(t, off.Client(), req); status != 404 || off.CurrentFault().Kind != FaultNone {
		t.Errorf("without Admin: %d, fault %+v", status, off.CurrentFault())
	}
}
