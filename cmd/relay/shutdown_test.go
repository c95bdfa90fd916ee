package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/fakejira"
)

// shutdownUpload is one upload in flight when SIGTERM arrives: its body is
// fed through a pipe, piece by piece.
type shutdownUpload struct {
	name     string
	body     []byte // what is sent (base64 text for the base64 ones)
	file     []byte // the file Jira must get
	finishes bool   // fed fast enough to end within the drain deadline
	status   int
	err      error
	answered time.Time
}

// TestGracefulShutdownWithUploadsInFlight: the relay binary gets SIGTERM
// while 20 uploads stream to a (fake) Jira. Half of them end within the
// drain deadline and must complete; the other half keep dragging and must be
// cut off upstream by the deadline: the caller gets an error and Jira holds
// no complete upload for them. The relay exits 0.
func TestGracefulShutdownWithUploadsInFlight(t *testing.T) {
	fj, err := fakejira.Start(fakejira.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fj.Close()
	const drain = 3 * time.Second
	args, base := relayArgs(t, t.TempDir())
	for i := range args {
		if args[i] == "--drain-timeout" {
			args[i+1] = drain.String()
		}
	}
	args = append(args, "--allow-http-upstream", "--allowed-upstreams", "127.0.0.1")
	p := startRelay(t, args...)
	waitHTTP(t, http.DefaultClient, base+"/readyz")

	resp, err := http.Post(base+"/v1/instances", "application/json", strings.NewReader(
		`{"url":"`+fj.URL()+`","jiraVersion":"1001.0.0","addinVersion":"4.2.0"}`))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("register: %v %v\n%s", resp, err, p.out)
	}
	var reg struct{ InstanceID, ClientKey string }
	_ = json.NewDecoder(resp.Body).Decode(&reg)
	resp.Body.Close()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	const n, piece = 20, 16 << 10
	ups := make([]*shutdownUpload, n)
	for i := range ups {
		u := &shutdownUpload{name: fmt.Sprintf("inflight-%02d.bin", i), finishes: i%2 == 0}
		size := 256 << 10 // fed in 16 pieces: done about 0.6 s after SIGTERM
		if !u.finishes {
			size = 8 << 20 // 512 pieces at 10 per second: never done within the drain
		}
		u.file, _ = io.ReadAll(io.LimitReader(fakejira.NewContent(int64(size), int64(i)), int64(size)))
		u.body = u.file
		if i%4 >= 2 {
			u.body = []byte(base64.StdEncoding.EncodeToString(u.file))
		}
		ups[i] = u
	}

	term := make(chan struct{})
	var wg sync.WaitGroup
	before := fj.Requests()
	for i, u := range ups {
		pr, pw := io.Pipe()
		q := "filename=" + u.name
		if i%4 >= 2 {
			q += "&encoding=base64"
		}
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/v1/instances/%s/issues/SD-%d/attachments?%s", base, reg.InstanceID, i, q), pr)
		req.ContentLength = int64(len(u.body))
		req.Header.Set("X-Relay-Key", reg.ClientKey)
		req.Header.Set("Authorization", "Basic bWlhQGV4YW1wbGUuY29tOnRva2Vu")
		req.Header.Set("Content-Type", "application/octet-stream")
		wg.Add(2)
		go func() { // the caller
			defer wg.Done()
			resp, err := client.Do(req)
			u.answered = time.Now()
			if err != nil {
				u.err = err
				_ = pr.CloseWithError(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			u.status = resp.StatusCode
		}()
		go func() { // the feeder: half the pieces before SIGTERM at most
			defer wg.Done()
			rest := u.body
			sent := 0
			for len(rest) > 0 {
				k := min(piece, len(rest))
				if _, err := pw.Write(rest[:k]); err != nil {
					return
				}
				rest, sent = rest[k:], sent+1
				pause := 40 * time.Millisecond
				if !u.finishes {
					pause = 100 * time.Millisecond
				}
				if u.finishes && sent >= 8 {
					<-term // hold the second half until SIGTERM
				}
				time.Sleep(pause)
			}
			_ = pw.Close()
		}()
	}
	// Every upload streams to Jira before the signal.
	deadline := time.Now().Add(10 * time.Second)
	for fj.Requests()-before < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d uploads reached Jira\n%s", fj.Requests()-before, n, p.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	sigterm := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	close(term)
	// New callers are turned away as soon as the signal is handled (well
	// within the drain: a busy machine may take a moment to deliver it).
	for refusedBy := time.Now().Add(drain / 2); ; time.Sleep(20 * time.Millisecond) {
		resp, err := client.Get(base + "/healthz")
		if err != nil {
			break
		}
		resp.Body.Close()
		if resp.StatusCode == 503 {
			break
		}
		if time.Now().After(refusedBy) {
			t.Errorf("a new request %v into the drain: %d, want refused (connection or 503)", drain/2, resp.StatusCode)
			break
		}
	}

	code := p.exitCode(t, drain+15*time.Second)
	exited := time.Since(sigterm)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("callers still waiting 15 s after the relay exited")
	}
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0\n%s", code, p.out)
	}
	if exited > drain+5*time.Second {
		t.Errorf("the relay exited %v after SIGTERM (drain deadline %v)", exited, drain)
	}

	// Jira's view: at most one record per file name, complete only for the
	// uploads whose caller got 200.
	records, err := fj.WaitUploads(n, 5*time.Second)
	if err != nil {
		t.Errorf("Jira did not record every upload as ended: %v", err)
	}
	jira := map[string][]fakejira.Upload{}
	for _, r := range records {
		jira[r.Filename] = append(jira[r.Filename], r)
	}
	completed, aborted := 0, 0
	for _, u := range ups {
		var complete []fakejira.Upload
		for _, r := range jira[u.name] {
			if r.Complete {
				complete = append(complete, r)
			}
		}
		ok := u.err == nil && u.status == 200
		switch {
		case ok && (len(complete) != 1 || complete[0].Size != int64(len(u.file)) || complete[0].SHA256 != fmt.Sprintf("%x", sha256Sum(u.file))):
			t.Errorf("%s: the caller got 200 but Jira holds %d complete records for it (%+v)", u.name, len(complete), complete)
		case !ok && len(complete) != 0:
			t.Errorf("%s: the caller got %v / %d but Jira completed the upload: a half-finished upload recorded as complete, or an answer lost", u.name, u.err, u.status)
		case u.finishes && !ok:
			t.Errorf("%s: ended within the drain deadline but failed: %v / %d", u.name, u.err, u.status)
		case !u.finishes && ok:
			t.Errorf("%s: could not have ended within the drain deadline, yet got 200", u.name)
		case len(jira[u.name]) != 1:
			t.Errorf("%s: Jira holds %d records for it, want 1", u.name, len(jira[u.name]))
		case !ok && u.answered.Sub(sigterm) > drain+3*time.Second:
			t.Errorf("%s: the caller learnt of the abort %v after SIGTERM (drain %v)", u.name, u.answered.Sub(sigterm), drain)
		}
		if ok {
			completed++
		} else {
			aborted++
		}
	}
	if strings.Contains(p.out.String(), "panic") {
		t.Errorf("the relay panicked:\n%s", p.out)
	}
	// Every upload has its access line: 200 for those that completed, 503
	// (shutting_down) for those cut off at the drain deadline.
	statuses := map[float64]int{}
	for line := range strings.SplitSeq(p.out.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "request" && m["route"] == "/v1/instances/{id}/issues/{issue}/attachments" {
			st, _ := m["status"].(float64)
			statuses[st]++
		}
	}
	if statuses[200] != completed || statuses[503] != aborted || len(statuses) > 2 {
		t.Errorf("access lines of the uploads by status: %v; want %d × 200 and %d × 503", statuses, completed, aborted)
	}
	t.Logf("SIGTERM with %d uploads in flight: %d completed, %d aborted upstream; exit %d after %v (drain %v)",
		n, completed, aborted, code, exited.Round(time.Millisecond), drain)
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
