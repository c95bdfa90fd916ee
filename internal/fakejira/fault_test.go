package fakejira

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestUploadFaults(t *testing.T) {
	s := start(t, Options{})
	data := bytes.Repeat([]byte("abcdefgh"), 64<<10) // 512 KiB
	body, ct := multipartBody(t, testFile{"f.bin", "application/octet-stream", data})
	raw := body.Bytes()

	type result struct {
		status int
		header http.Header
		body   []byte
		err    error
		took   time.Duration
		closed bool // the server announced Connection: close
	}
	send := func(timeout time.Duration) result {
		c := *s.Client()
		c.Timeout = timeout
		req := uploadReq(t, s, "PROJ-5", bytes.NewReader(raw), ct)
		begin := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return result{err: err, took: time.Since(begin)}
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return result{status: resp.StatusCode, header: resp.Header, body: b, err: err, took: time.Since(begin), closed: resp.Close}
	}

	tests := []struct {
		name  string
		fault Fault
		// timeout of the client
		timeout  time.Duration
		check    func(t *testing.T, r result, u Upload)
		complete bool
	}{
		{name: "500", fault: Fault{Kind: Fault500}, check: func(t *testing.T, r result, u Upload) {
			if r.err != nil {
				t.Fatalf("error %v", r.err)
			}
			if r.status != 500 || !r.closed {
				t.Errorf("status %d, Connection: close %v", r.status, r.closed)
			}
			errorMessages(t, r.body)
			if u.BodyBytes > int64(len(raw))/2 {
				t.Errorf("500 read %d body bytes", u.BodyBytes)
			}
		}},
		{name: "401 without reading", fault: Fault{Kind: Fault401}, check: func(t *testing.T, r result, u Upload) {
			if r.err != nil {
				t.Fatalf("error %v", r.err)
			}
			// net/http closes: more than 256 KiB of the body was left unread.
			if r.status != 401 || !r.closed {
				t.Errorf("status %d, Connection: close %v", r.status, r.closed)
			}
			if msgs := errorMessages(t, r.body); len(msgs) != 1 || msgs[0] != msgNotAuthenticated {
				t.Errorf("errorMessages %q", msgs)
			}
			if u.Status != 401 || u.BodyBytes > int64(len(raw))/2 {
				t.Errorf("recorded Status=%d BodyBytes=%d", u.Status, u.BodyBytes)
			}
		}},
		{name: "503 with Retry-After", fault: Fault{Kind: Fault503, RetryAfter: "7"}, check: func(t *testing.T, r result, u Upload) {
			if r.status != 503 || r.header.Get("Retry-After") != "7" {
				t.Errorf("status %d Retry-After %q (err %v)", r.status, r.header.Get("Retry-After"), r.err)
			}
			errorMessages(t, r.body)
		}},
		{name: "429", fault: Fault{Kind: Fault429, RetryAfter: "3"}, check: func(t *testing.T, r result, u Upload) {
			if r.status != 429 {
				t.Fatalf("status %d (err %v)", r.status, r.err)
			}
			h := r.header
			if h.Get("Retry-After") != "3" || h.Get("X-RateLimit-Limit") != "100" || h.Get("X-RateLimit-Remaining") != "0" ||
				h.Get("RateLimit-Reason") != "jira-burst-based" {
				t.Errorf("headers %v", h)
			}
			reset, err := time.Parse(time.RFC3339, h.Get("X-RateLimit-Reset"))
			if err != nil || reset.Before(time.Now()) || reset.After(time.Now().Add(time.Minute)) {
				t.Errorf("X-RateLimit-Reset %q (%v)", h.Get("X-RateLimit-Reset"), err)
			}
			if string(r.body) != `{"errorMessages":["Rate limit exceeded."]}` {
				t.Errorf("body %s", r.body)
			}
		}},
		{name: "429 without Retry-After", fault: Fault{Kind: Fault429}, check: func(t *testing.T, r result, u Upload) {
			if r.status != 429 || r.header.Get("Retry-After") != "" || r.header.Get("X-RateLimit-Reset") == "" {
				t.Errorf("status %d headers %v", r.status, r.header)
			}
		}},
		{name: "slow", fault: Fault{Kind: FaultSlow, Delay: 300 * time.Millisecond}, complete: true, check: func(t *testing.T, r result, u Upload) {
			if r.status != 200 || r.took < 300*time.Millisecond {
				t.Errorf("status %d after %v (err %v)", r.status, r.took, r.err)
			}
		}},
		{name: "hang", fault: Fault{Kind: FaultHang}, timeout: 300 * time.Millisecond, complete: true, check: func(t *testing.T, r result, u Upload) {
			if r.err == nil {
				t.Fatalf("hung request answered %d", r.status)
			}
			if u.Status != 0 {
				t.Errorf("hang recorded Status %d", u.Status)
			}
		}},
		{name: "reset mid body", fault: Fault{Kind: FaultResetMidBody, AfterBytes: 100_000}, check: func(t *testing.T, r result, u Upload) {
			if r.err == nil {
				t.Fatalf("reset request answered %d", r.status)
			}
			if u.BodyBytes != 100_000 || u.Status != 0 || !strings.Contains(u.Err, "reset") {
				t.Errorf("recorded BodyBytes=%d Status=%d Err=%q", u.BodyBytes, u.Status, u.Err)
			}
		}},
		{name: "reset after a short body", fault: Fault{Kind: FaultResetMidBody, AfterBytes: 10 << 20}, check: func(t *testing.T, r result, u Upload) {
			if r.err == nil {
				t.Fatalf("reset request answered %d", r.status)
			}
			if u.BodyBytes != int64(len(raw)) {
				t.Errorf("recorded BodyBytes=%d", u.BodyBytes)
			}
		}},
		{name: "slow drip reads slowly", fault: Fault{Kind: FaultSlowDrip, DripSize: 64 << 10, Delay: 30 * time.Millisecond}, complete: true,
			check: func(t *testing.T, r result, u Upload) {
				// 512 KiB in 64 KiB pieces: at least 7 pauses.
				if r.status != 200 || r.took < 7*30*time.Millisecond {
					t.Errorf("status %d after %v (err %v)", r.status, r.took, r.err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.Reset()
			s.SetFault(tc.fault)
			defer s.ClearFault()
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			r := send(timeout)
			u := waitUploads(t, s, 1)[0]
			if u.Fault != tc.fault.Kind || u.Complete != tc.complete {
				t.Errorf("recorded Fault=%v Complete=%v Err=%q", u.Fault, u.Complete, u.Err)
			}
			if u.Complete && (u.SHA256 != sha(data) || u.Size != int64(len(data))) {
				t.Errorf("recorded Size=%d SHA256=%s", u.Size, u.SHA256)
			}
			tc.check(t, r, u)

			// ClearFault restores normal answers.
			s.ClearFault()
			if r := send(10 * time.Second); r.err != nil || r.status != 200 {
				t.Errorf("after ClearFault: status %d err %v", r.status, r.err)
			}
		})
	}
}

func TestFaultCountAndEndpoint(t *testing.T) {
	s := start(t, Options{})
	id := s.AddAttachmentBytes("a.txt", "text/plain", []byte("hello"))
	info := func() int {
		status, _, _ := get(t, s, "/rest/api/3/serverInfo", nil)
		return status
	}
	download := func() int {
		status, _, _ := get(t, s, "/rest/api/3/attachment/content/"+id+"?redirect=false", map[string]string{"Authorization": testAuth})
		return status
	}

	s.SetFault(Fault{Kind: Fault503, Count: 2})
	if got := []int{info(), info(), info()}; got[0] != 503 || got[1] != 503 || got[2] != 200 {
		t.Errorf("Count 2: statuses %v", got)
	}
	if f := s.CurrentFault(); f.Kind != FaultNone {
		t.Errorf("fault still set after Count: %+v", f)
	}

	s.SetFault(Fault{Kind: Fault500, Count: 1, Endpoint: EndpointDownload})
	if st := info(); st != 200 {
		t.Errorf("download fault hit serverInfo: %d", st)
	}
	if f := s.CurrentFault(); f.Kind != Fault500 || f.Count != 1 {
		t.Errorf("non-matching request used up the fault: %+v", f)
	}
	if st := download(); st != 500 {
		t.Errorf("download under fault: %d", st)
	}
	if st := download(); st != 200 {
		t.Errorf("download after fault: %d", st)
	}

	s.SetFault(Fault{Kind: Fault429})
	for range 3 {
		if st := info(); st != 429 {
			t.Errorf("Count 0 fault: %d", st)
		}
	}
	s.ClearFault()
	if st := info(); st != 200 {
		t.Errorf("after ClearFault: %d", st)
	}

	// Unknown paths never use up a fault.
	s.SetFault(Fault{Kind: Fault500, Count: 1})
	if st, _, _ := get(t, s, "/nope", nil); st != 404 {
		t.Errorf("unknown path: %d", st)
	}
	if st := info(); st != 500 {
		t.Errorf("fault used up by an unknown path: %d", st)
	}
}

func TestDownloadFaults(t *testing.T) {
	s := start(t, Options{})
	const size = 200_000
	id, sum := s.AddAttachment("data.bin", "application/octet-stream", size, 3)
	path := "/rest/api/3/attachment/content/" + id + "?redirect=false"
	fetch := func() (int, []byte, error, time.Duration) {
		req, _ := http.NewRequest(http.MethodGet, s.URL()+path, nil)
		req.Header.Set("Authorization", testAuth)
		begin := time.Now()
		resp, err := s.Client().Do(req)
		if err != nil {
			return 0, nil, err, time.Since(begin)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err, time.Since(begin)
	}

	t.Run("slow drip", func(t *testing.T) {
		s.SetFault(Fault{Kind: FaultSlowDrip, DripSize: 50_000, Delay: 50 * time.Millisecond, Count: 1})
		status, b, err, took := fetch()
		if err != nil || status != 200 || sha(b) != sum {
			t.Fatalf("status %d, %d bytes, err %v", status, len(b), err)
		}
		if took < 150*time.Millisecond {
			t.Errorf("slow drip took only %v", took)
		}
	})
	t.Run("reset mid body", func(t *testing.T) {
		s.SetFault(Fault{Kind: FaultResetMidBody, AfterBytes: 50_000, Count: 1})
		status, b, err, _ := fetch()
		if err == nil || len(b) >= size {
			t.Fatalf("reset download: status %d, %d bytes, err %v", status, len(b), err)
		}
	})
	t.Run("reset before answering", func(t *testing.T) {
		s.SetFault(Fault{Kind: FaultResetMidBody, Count: 1})
		if _, _, err, _ := fetch(); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("slow", func(t *testing.T) {
		s.SetFault(Fault{Kind: FaultSlow, Delay: 200 * time.Millisecond, Count: 1})
		status, b, err, took := fetch()
		if err != nil || status != 200 || sha(b) != sum || took < 200*time.Millisecond {
			t.Fatalf("status %d, %d bytes, err %v, took %v", status, len(b), err, took)
		}
	})
	t.Run("hang until client gives up", func(t *testing.T) {
		s.SetFault(Fault{Kind: FaultHang, Count: 1})
		c := *s.Client()
		c.Timeout = 200 * time.Millisecond
		req, _ := http.NewRequest(http.MethodGet, s.URL()+path, nil)
		req.Header.Set("Authorization", testAuth)
		_, err := c.Do(req)
		if err == nil {
			t.Fatal("hung download answered")
		}
	})
	s.ClearFault()
	if status, b, err, _ := fetch(); err != nil || status != 200 || sha(b) != sum {
		t.Fatalf("after faults: status %d, %d bytes, err %v", status, len(b), err)
	}
}

// Close returns promptly with a request hanging in the fake, and the client
// sees its connection go.
func TestCloseWithHungRequests(t *testing.T) {
	s, err := Start(Options{TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetFault(Fault{Kind: FaultHang})
	id := s.AddAttachmentBytes("a", "", []byte("a"))

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	body, ct := multipartBody(t, testFile{"a", "", []byte("a")})
	upload := uploadReq(t, s, "PROJ-1", body, ct)
	go func() {
		defer wg.Done()
		resp, err := s.Client().Do(upload)
		if err == nil {
			resp.Body.Close()
			errs <- errors.New("hung upload answered " + resp.Status)
			return
		}
		errs <- nil
	}()
	go func() {
		defer wg.Done()
		req, _ := http.NewRequest(http.MethodGet, s.URL()+"/rest/api/3/attachment/content/"+id+"?redirect=false", nil)
		req.Header.Set("Authorization", testAuth)
		resp, err := s.Client().Do(req)
		if err == nil {
			resp.Body.Close()
			errs <- errors.New("hung download answered " + resp.Status)
			return
		}
		errs <- nil
	}()
	waitUploads(t, s, 1)
	deadline := time.Now().Add(5 * time.Second)
	for s.Requests() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := s.OpenConnections(); n != 2 {
		t.Errorf("OpenConnections %d, want 2", n)
	}
	begin := time.Now()
	s.Close()
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := s.OpenConnections(); n != 0 {
		t.Errorf("OpenConnections after Close: %d", n)
	}
	s.Close() // idempotent
}
