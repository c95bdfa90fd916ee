package resiliencetest

// Upstream faults: Jira Cloud failing in every way the fake can fail (5xx
// storms, resets mid-body, hangs, slow drips, 429 with and without
// Retry-After). Every caller must get a clear answer, the breaker and the
// cool-down must recover by themselves, and nothing may leak.

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
)

// upstreamRig is a relay in front of a fake Jira with one instance.
type upstreamRig struct {
	t      *testing.T
	relay  *relaytest.Relay
	api    *api
	jira   *fakejira.Server
	tenant tenant
	logs   *relaytest.LogBuffer

	issue    atomic.Int64 // distinct issue keys: the per-issue write limit never interferes
	requests atomic.Int64 // requests sent to the relay
	faults   atomic.Int64 // faults injected (requests Jira answered with a fault)
}

// upload sends data as a new file to a new issue; it returns the file name.
func (r *upstreamRig) upload(data []byte) (answer, string) {
	n := r.issue.Add(1)
	name := fmt.Sprintf("up-%d.bin", n)
	r.requests.Add(1)
	return r.api.upload(r.tenant, "RES-"+strconv.FormatInt(n, 10), name, data, kindRaw), name
}

func (r *upstreamRig) download(id string) answer {
	r.requests.Add(1)
	return r.api.download(r.tenant, id)
}

// fault sets a fault at the fake; the subtests count what it hit.
func (r *upstreamRig) fault(f fakejira.Fault) {
	r.jira.SetFault(f)
}

// faultsUsed is how many requests a fault with Count n has hit so far.
func (r *upstreamRig) faultsUsed(n int) int {
	left := r.jira.CurrentFault().Count
	if r.jira.CurrentFault().Kind == fakejira.FaultNone {
		left = 0
	}
	return n - left
}

// recovers polls uploads until one succeeds (bounded), checking that every
// failure on the way is a clear answer, then wants three more in a row to
// succeed and to be complete at Jira.
func (r *upstreamRig) recovers(what string, within time.Duration) {
	t := r.t
	t.Helper()
	start := time.Now()
	statuses := map[int]int{}
	data := content(4<<10, 7)
	for {
		res, name := r.upload(data)
		if res.Err == nil && res.Status == 200 {
			if len(completedWith(r.jira, name)) != 1 {
				t.Errorf("%s: 200 but Jira has no complete upload %s", what, name)
			}
			break
		}
		statuses[res.Status]++
		if !clearError(res) {
			t.Errorf("%s: unclear answer while recovering: %s", what, res)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: uploads did not succeed again within %v (answers %v, last %s)", what, within, statuses, res)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range 3 {
		res, name := r.upload(data)
		if res.Err != nil || res.Status != 200 || len(completedWith(r.jira, name)) != 1 {
			t.Errorf("%s: upload %d after recovery: %s", what, i+1, res)
		}
	}
	t.Logf("%s: recovered after %v (answers on the way: %v)", what, time.Since(start).Round(time.Millisecond), statuses)
}

func TestUpstreamFaults(t *testing.T) {
	// The shared member and the client are there before the first count.
	cli, prefix := etcdtest.Shared(t)
	atStart := settled()
	var sent, injected int64
	t.Run("faults", func(t *testing.T) {
		logs := &relaytest.LogBuffer{}
		fj := relaytest.StartJira(t, fakejira.Options{})
		relay := relaytest.StartWith(t, relaytest.Options{Etcd: cli, Logger: logs.Logger(), Mutate: func(c *configs.Config) {
			c.EtcdPrefix = prefix
			relaxedLimits(c)
			c.BreakerFailures = 3
			c.BreakerOpenTimeout = time.Second
			c.UpstreamResponseTimeout = time.Second
			c.StreamIdleTimeout = time.Second
			c.UpstreamMaxConns = 4
		}})
		a := newAPI(t, relay.URL)
		r := &upstreamRig{t: t, relay: relay, api: a, jira: fj, tenant: a.MustRegister(t, fj.URL()), logs: logs}
		defer func() { sent, injected = r.requests.Load(), r.faults.Load() }()

		smallID, _ := fj.AddAttachment("small.bin", "application/octet-stream", 64<<10, 1)
		bigID, bigSHA := fj.AddAttachment("big.bin", "application/octet-stream", 256<<10, 2)
		// Warm up: one upload and one download, so the pools hold what they hold.
		if res, _ := r.upload(content(1<<10, 1)); res.Status != 200 {
			t.Fatalf("warm-up upload: %s", res)
		}
		if res := r.download(smallID); res.Status != 200 || len(res.Body) != 64<<10 {
			t.Fatalf("warm-up download: %s", res)
		}
		a.HTTP.CloseIdleConnections()
		warm := settled()

		t.Run("500 storm opens the breaker, which recovers", func(t *testing.T) {
			r.t = t
			const n = 6
			r.fault(fakejira.Fault{Kind: fakejira.Fault500, Count: n, Endpoint: fakejira.EndpointUpload})
			seen := map[string]int{}
			for i := range 3 {
				// A body larger than socket buffers: Jira answers without reading it.
				res, name := r.upload(content(512<<10, int64(i)))
				switch code, _ := res.RelayError(); {
				case res.Status == 500 && jiraErr(res):
					seen["500 relayed"]++
				case res.Status == 502 && code == "upstream_unreachable":
					seen["502 upstream_unreachable"]++
				default:
					t.Errorf("upload %d during the storm: %s, want Jira's 500 or 502 upstream_unreachable", i+1, res)
				}
				if len(completedWith(fj, name)) != 0 {
					t.Errorf("upload %d during the storm completed at Jira", i+1)
				}
			}
			before := fj.Requests()
			res, _ := r.upload(content(1<<10, 9))
			wantErr(t, "upload with the breaker open", res, 503, "upstream_circuit_open")
			if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra != 1 {
				t.Errorf("breaker open: Retry-After %q, want 1", res.Header.Get("Retry-After"))
			}
			if res := r.download(smallID); res.Status != 503 {
				t.Errorf("download with the breaker open: %s", res)
			}
			if fj.Requests() != before {
				t.Errorf("Jira was called while the breaker was open")
			}
			r.recovers("after the 500 storm", 15*time.Second)
			r.faults.Add(int64(r.faultsUsed(n)))
			fj.ClearFault()
			t.Logf("storm answers: %v", seen)
		})

		t.Run("concurrent 503 storm with Retry-After, uploads and downloads", func(t *testing.T) {
			r.t = t
			r.fault(fakejira.Fault{Kind: fakejira.Fault503, RetryAfter: "1"})
			before := fj.Requests()
			var wg sync.WaitGroup
			var mu sync.Mutex
			seen := map[string]int{}
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 6 {
						var res answer
						if (w+i)%3 == 0 {
							res = r.download(smallID)
						} else {
							res, _ = r.upload(content(8<<10, int64(w*10+i)))
						}
						code, _ := res.RelayError()
						key := fmt.Sprintf("%d %s", res.Status, code)
						if res.Status == 503 && code == "" && jiraErr(res) {
							key = "503 relayed from Jira"
							if res.Header.Get("Retry-After") != "1" {
								t.Errorf("Jira's 503: Retry-After %q not relayed", res.Header.Get("Retry-After"))
							}
						} else if res.Status != 503 || code != "upstream_circuit_open" {
							t.Errorf("during the 503 storm: %s, want Jira's 503 or 503 upstream_circuit_open", res)
						}
						mu.Lock()
						seen[key]++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			r.faults.Add(fj.Requests() - before)
			fj.ClearFault()
			t.Logf("48 requests during the storm: %v; Jira saw %d of them", seen, fj.Requests()-before)
			if n := fj.Requests() - before; n > 20 {
				t.Errorf("the breaker let %d of 48 requests reach a failing Jira", n)
			}
			r.recovers("after the 503 storm", 15*time.Second)
		})

		t.Run("reset mid-body", func(t *testing.T) {
			r.t = t
			r.fault(fakejira.Fault{Kind: fakejira.FaultResetMidBody, AfterBytes: 16 << 10, Count: 2, Endpoint: fakejira.EndpointUpload})
			for i := range 2 {
				res, name := r.upload(content(256<<10, int64(i)))
				wantErr(t, fmt.Sprintf("upload %d reset mid-body", i+1), res, 502, "upstream_unreachable")
				if len(completedWith(fj, name)) != 0 {
					t.Errorf("a reset upload completed at Jira")
				}
			}
			r.faults.Add(2)
			// A download whose body Jira cuts: the caller must see a broken
			// body, never a short one that looks complete.
			r.fault(fakejira.Fault{Kind: fakejira.FaultResetMidBody, AfterBytes: 32 << 10, Count: 1, Endpoint: fakejira.EndpointDownload})
			res := r.download(bigID)
			r.faults.Add(1)
			switch {
			case res.Err == nil && res.Status == 200:
				t.Errorf("download cut by Jira after 32 KiB: the caller got a clean 200 with %d of %d bytes (silent truncation): %q %v", len(res.Body), 256<<10, res.Body, res.Header)
			case res.Err == nil && !clearError(res):
				t.Errorf("download cut by Jira: %s", res)
			default:
				t.Logf("download cut mid-body: caller sees %v (status %d, %d bytes)", res.Err, res.Status, len(res.Body))
			}
			// Reset before any answer: a clear 502.
			r.fault(fakejira.Fault{Kind: fakejira.FaultResetMidBody, AfterBytes: 0, Count: 1, Endpoint: fakejira.EndpointDownload})
			wantErr(t, "download reset before the answer", r.download(bigID), 502, "upstream_unreachable")
			r.faults.Add(1)
			r.recovers("after resets", 15*time.Second)
			if res := r.download(bigID); res.Status != 200 || relaytest.SHA256(res.Body) != bigSHA {
				t.Errorf("download after resets: %s", res)
			}
		})

		t.Run("hang", func(t *testing.T) {
			r.t = t
			r.fault(fakejira.Fault{Kind: fakejira.FaultHang, Count: 1, Endpoint: fakejira.EndpointUpload})
			start := time.Now()
			res, _ := r.upload(content(4<<10, 3))
			wantErr(t, "upload to a hung Jira", res, 504, "upstream_timeout")
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("hung upload answered after %v (response timeout 1s)", d)
			}
			r.fault(fakejira.Fault{Kind: fakejira.FaultHang, Count: 1, Endpoint: fakejira.EndpointDownload})
			start = time.Now()
			wantErr(t, "download from a hung Jira", r.download(smallID), 504, "upstream_timeout")
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("hung download answered after %v", d)
			}
			r.faults.Add(2)
			r.recovers("after hangs", 15*time.Second)
		})

		t.Run("slow drip", func(t *testing.T) {
			r.t = t
			// Slow but steady: 256 KiB in 4 KiB pieces every 10 ms arrives whole.
			r.fault(fakejira.Fault{Kind: fakejira.FaultSlowDrip, DripSize: 4 << 10, Delay: 10 * time.Millisecond, Count: 1, Endpoint: fakejira.EndpointDownload})
			start := time.Now()
			req, _ := http.NewRequest("GET", relay.URL+"/v1/instances/"+r.tenant.ID+"/attachments/"+bigID+"/content", nil)
			req.Header.Set("X-Relay-Key", r.tenant.Client)
			req.Header.Set("Authorization", jiraAuth)
			r.requests.Add(1)
			var res answer
			var firstByte time.Duration
			if resp, err := a.HTTP.Do(req); err != nil {
				res.Err = err
			} else {
				firstByte = time.Since(start)
				res = relaytest.ReadAnswer(resp)
			}
			total := time.Since(start)
			if res.Err != nil || res.Status != 200 || relaytest.SHA256(res.Body) != bigSHA {
				t.Errorf("slow-drip download: %s", res)
			}
			// Streamed, not buffered: the answer starts long before Jira's last byte.
			if firstByte > total/2 {
				t.Errorf("slow-drip download: first byte after %v of %v: the relay buffered Jira's answer instead of streaming it", firstByte, total)
			}
			t.Logf("slow-drip download of 256 KiB: first byte after %v, all after %v", firstByte.Round(time.Millisecond), total.Round(time.Millisecond))
			// Jira reading an upload slowly exerts back-pressure; it still completes.
			r.fault(fakejira.Fault{Kind: fakejira.FaultSlowDrip, DripSize: 16 << 10, Delay: 10 * time.Millisecond, Count: 1, Endpoint: fakejira.EndpointUpload})
			up, name := r.upload(content(256<<10, 5))
			if up.Status != 200 || len(completedWith(fj, name)) != 1 {
				t.Errorf("slow-drip upload: %s", up)
			}
			// A drip slower than the idle timeouts is cut off: a broken
			// body for the caller, in bounded time.
			r.fault(fakejira.Fault{Kind: fakejira.FaultSlowDrip, DripSize: 8 << 10, Delay: 2500 * time.Millisecond, Count: 1, Endpoint: fakejira.EndpointDownload})
			start = time.Now()
			res = r.download(bigID)
			switch {
			case res.Err == nil && res.Status == 200:
				t.Errorf("stalled drip: clean 200 with %d of %d bytes: %q %v", len(res.Body), 256<<10, res.Body, res.Header)
			case res.Err == nil && !clearError(res):
				t.Errorf("stalled drip: %s", res)
			}
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("stalled drip: the caller waited %v", d)
			}
			t.Logf("stalled drip: caller sees %v / status %d after %v", res.Err, res.Status, time.Since(start).Round(time.Millisecond))
			r.faults.Add(3)
			r.recovers("after drips", 15*time.Second)
		})

		t.Run("429 with Retry-After", func(t *testing.T) {
			r.t = t
			r.fault(fakejira.Fault{Kind: fakejira.Fault429, RetryAfter: "2", Count: 1})
			tripped := time.Now()
			res, _ := r.upload(content(2<<10, 1))
			if res.Status != 429 || !jiraErr(res) || res.Header.Get("Retry-After") != "2" {
				t.Errorf("Jira's 429: %s (Retry-After %q)", res, res.Header.Get("Retry-After"))
			}
			before := fj.Requests()
			res, _ = r.upload(content(2<<10, 2))
			wantErr(t, "upload during the cool-down", res, 429, "rate_limited_jira_cooldown")
			if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
				t.Errorf("cool-down Retry-After %q, want 1..2", res.Header.Get("Retry-After"))
			}
			if got := res.Header.Get("RateLimit-Reason"); got != "jira-burst-based" {
				t.Errorf("cool-down RateLimit-Reason %q, want Jira's jira-burst-based", got)
			}
			if fj.Requests() != before {
				t.Errorf("Jira was called during the cool-down")
			}
			// Jira's burst limit is per endpoint and method: downloads go on.
			if res := r.download(smallID); res.Status != 200 {
				t.Errorf("download while uploads cool down: %s, want 200", res)
			}
			time.Sleep(time.Until(tripped.Add(2100 * time.Millisecond)))
			r.faults.Add(1)
			r.recovers("after 429 with Retry-After", 5*time.Second)
		})

		t.Run("429 without Retry-After", func(t *testing.T) {
			r.t = t
			r.fault(fakejira.Fault{Kind: fakejira.Fault429, Count: 1, Endpoint: fakejira.EndpointDownload})
			res := r.download(smallID)
			if res.Status != 429 || !jiraErr(res) {
				t.Errorf("Jira's 429 without Retry-After: %s", res)
			}
			res = r.download(smallID)
			wantErr(t, "download during the backoff", res, 429, "rate_limited_jira_cooldown")
			if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
				t.Errorf("backoff Retry-After %q, want 1..2", res.Header.Get("Retry-After"))
			}
			if res, _ := r.upload(content(2<<10, 3)); res.Status != 200 {
				t.Errorf("upload while downloads back off: %s, want 200", res)
			}
			r.faults.Add(1)
			r.recovers("after 429 without Retry-After", 5*time.Second)
		})

		r.t = t
		if res := a.Do("GET", "/healthz", "", nil); res.Status != 200 {
			t.Errorf("healthz after the faults: %s", res)
		}
		noPanics(t, logs)
		a.HTTP.CloseIdleConnections()
		// Pooled connections to Jira (at most UpstreamMaxConns, 2 fds and a
		// server goroutine each at the fake) may outlive the faults.
		noLeak(t, "relay running, after the faults", warm, 12, 10, 10*time.Second)
	})
	noLeak(t, "after teardown", atStart, 8, 4, 15*time.Second)
	t.Logf("requests sent to the relay: %d; faults injected at Jira: %d", sent, injected)
}
