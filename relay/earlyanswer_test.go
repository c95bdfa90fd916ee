package relay_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
)

// TestJiraEarlyAnswerIsRelayed: Jira answers 401 at once without reading
// the upload (as its edge does for a bad credential) and closes the way
// net/http does. The caller gets Jira's 401 with Jira's body, not 502;
// Jira's 4xx are no breaker failures, so the breaker stays closed; nothing
// completes at Jira; and the relay's next uploads, on fresh connections,
// succeed. Bodies of 8-16 MiB are larger than the socket buffers, so the
// relay is still sending when Jira closes: with a Content-Length and
// chunked (the length unknown), to plain and TLS Jira.
func TestJiraEarlyAnswerIsRelayed(t *testing.T) {
	for _, tlsJira := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[tlsJira], func(t *testing.T) {
			rg := startRig(t, tlsJira, func(c *configs.Config) {
				c.BreakerFailures = 3
				c.BreakerOpenTimeout = time.Minute // an open breaker would show for the rest of the test
				c.StreamIdleTimeout = 10 * time.Second
			})
			sizes := []int64{8 << 20, 16 << 20, 12 << 20, 9 << 20, 14 << 20, 10 << 20}
			rg.jira.SetFault(fakejira.Fault{Kind: fakejira.Fault401, Endpoint: fakejira.EndpointUpload})
			var total int64
			for i, size := range sizes {
				total += size
				chunked := i%2 == 1
				what := fmt.Sprintf("upload %d (%d MiB, chunked %v) while Jira refuses the credential", i+1, size>>20, chunked)
				res, err := rg.tryUpload("ITSM-1", size, int64(i), chunked)
				if err != nil {
					t.Errorf("%s: %v, want Jira's 401", what, err)
					continue
				}
				if res.Status != 401 {
					t.Errorf("%s: %s, want Jira's 401", what, res)
					continue
				}
				var jiraErr struct {
					ErrorMessages []string `json:"errorMessages"`
				}
				if err := json.Unmarshal(res.Body, &jiraErr); err != nil || len(jiraErr.ErrorMessages) != 1 ||
					!strings.Contains(jiraErr.ErrorMessages[0], "not authenticated") {
					t.Errorf("%s: the body is not Jira's: %q", what, res.Body)
				}
				if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("%s: Content-Type %q, want Jira's", what, ct)
				}
			}
			// Not asserted (it depends on the socket buffers): the relay stops
			// reading a caller once Jira has stopped reading.
			t.Logf("the relay read %.1f MiB of the %d MiB the callers sent", rg.metric(t, "relay_attachment_bytes_up_total")/(1<<20), total>>20)
			ups, err := rg.jira.WaitUploads(len(sizes), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for i, u := range ups {
				if u.Complete || u.Status != 401 {
					t.Fatalf("Jira recorded upload %d as complete %v, status %d", i+1, u.Complete, u.Status)
				}
			}
			rg.jira.ClearFault()
			// The breaker is closed (an open one answers 503 at once), and
			// no connection Jira closed is used again.
			for i, size := range []int64{64 << 10, 8 << 20} {
				res := rg.upload(t, "ITSM-1", size, 100+int64(i), false)
				if res.Status != 200 {
					t.Fatalf("upload of %d KiB after the 401s: %d %s, want 200", size>>10, res.Status, res.Body)
				}
			}
			if n := len(rg.jira.CompletedUploads()); n != 2 {
				t.Fatalf("%d uploads completed at Jira, want the 2 after the 401s", n)
			}
		})
	}
}

// rig is a relay, a fake Jira, and one instance registered at the fake.
type rig struct {
	relay *relaytest.Relay
	jira  *fakejira.Server
	id    string // instance id
	key   string // client key
}

// startRig starts a fake Jira (TLS when tlsJira; no hashing) and a relay
// that trusts it, with limits no test here reaches unless mutate sets them,
// and registers an instance at the fake.
func startRig(t *testing.T, tlsJira bool, mutate func(*configs.Config)) *rig {
	t.Helper()
	fj, err := fakejira.Start(fakejira.Options{TLS: tlsJira, NoHash: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fj.Close)
	// An etcd of the test's own: the package has no TestMain for a shared one.
	_, cli := etcdtest.Start(t)
	r := relaytest.StartWithEtcd(t, cli, func(c *configs.Config) {
		c.IPRPS, c.IPBurst = 1000, 1000
		c.InstanceRPS, c.InstanceBurst = 1000, 1000
		if tlsJira {
			ca := filepath.Join(t.TempDir(), "ca.pem")
			if err := os.WriteFile(ca, fj.CAPEM(), 0o600); err != nil {
				t.Fatal(err)
			}
			c.UpstreamCA = ca
		}
		if mutate != nil {
			mutate(c)
		}
	})
	return (&rig{relay: r, jira: fj}).register(t, fj.URL())
}

// register registers an instance at url with rg's relay; the rig returned
// is rg's for that instance.
func (rg *rig) register(t *testing.T, url string) *rig {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"url": url, "jiraVersion": "1001.0.0-SNAPSHOT", "addinVersion": "4.2.0"})
	resp, err := http.Post(rg.relay.URL+"/v1/instances", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var reg struct {
		InstanceID string `json:"instanceId"`
		ClientKey  string `json:"clientKey"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reg); err != nil || resp.StatusCode != 201 || reg.InstanceID == "" {
		t.Fatalf("register %s: %d %v", url, resp.StatusCode, err)
	}
	return &rig{relay: rg.relay, jira: rg.jira, id: reg.InstanceID, key: reg.ClientKey}
}

// answer is what a caller got.
type answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// upload sends size bytes of content seed to issue as a raw upload, with a
// Content-Length or (chunked) without one.
func (rg *rig) upload(t *testing.T, issue string, size, seed int64, chunked bool) answer {
	t.Helper()
	res, err := rg.tryUpload(issue, size, seed, chunked)
	if err != nil {
		t.Fatalf("upload of %d bytes: %v", size, err)
	}
	return res
}

func (rg *rig) tryUpload(issue string, size, seed int64, chunked bool) (answer, error) {
	var body io.Reader = io.LimitReader(fakejira.NewContent(size, seed), size)
	length := size
	if chunked {
		body, length = io.MultiReader(body), -1
	}
	req, err := http.NewRequest("POST", rg.relay.URL+"/v1/instances/"+rg.id+"/issues/"+issue+"/attachments?filename=a.bin", body)
	if err != nil {
		return answer{}, err
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", "application/octet-stream")
	return rg.trySend(req)
}

// download gets attachment id through the relay.
func (rg *rig) download(t *testing.T, id string) answer {
	t.Helper()
	req, err := http.NewRequest("GET", rg.relay.URL+"/v1/instances/"+rg.id+"/attachments/"+id+"/content", nil)
	if err != nil {
		t.Fatal(err)
	}
	return rg.send(t, req)
}

// send sends req with the client key and a Jira credential and reads the
// whole answer, within a minute.
func (rg *rig) send(t *testing.T, req *http.Request) answer {
	t.Helper()
	res, err := rg.trySend(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	return res
}

func (rg *rig) trySend(req *http.Request) (answer, error) {
	req.Header.Set("X-Relay-Key", rg.key)
	req.Header.Set("Authorization", "Basic bWlhQGV4YW1wbGUuY29tOnRva2Vu")
	c := &http.Client{Timeout: time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, fmt.Errorf("reading the answer: %w", err)
	}
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// metric is the value of the relay's metric name (without labels).
func (rg *rig) metric(t *testing.T, name string) float64 {
	t.Helper()
	var b bytes.Buffer
	rg.relay.Metrics.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %q", name, line)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func (a answer) String() string {
	b := a.Body
	if len(b) > 200 {
		b = b[:200]
	}
	return fmt.Sprintf("%d %q", a.Status, b)
}
