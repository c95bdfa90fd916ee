package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	"github.com/jira-relay/jira-relay/relay/upload"
)

// zeroBody is n bytes of a repeated pattern, produced without cost, so the
// benchmark measures the relay and not the generator.
type zeroBody struct{ left int64 }

var pattern = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}()

func (z *zeroBody) Read(p []byte) (int, error) {
	if z.left <= 0 {
		return 0, io.EOF
	}
	n := copy(p, pattern)
	if int64(n) > z.left {
		n = int(z.left)
	}
	z.left -= int64(n)
	return n, nil
}

// BenchmarkRelayVsDirect uploads 64 MiB bodies, 4 at a time, straight to the
// fake Jira and through the relay, interleaved in one run, and reports both
// throughputs and their ratio (target: relay ≥ 0.9 × direct).
//
//	go test -run '^$' -bench RelayVsDirect -benchtime 5x ./proxy
func BenchmarkRelayVsDirect(b *testing.B) {
	const size, conc = 64 << 20, 4
	fj := relaytest.StartJira(b, fakejira.Options{NoHash: true, MaxRecords: 64})
	r := relaytest.Start(b, func(c *configs.Config) { c.InstanceBurst, c.IPBurst = 1<<20, 1<<20 })
	ten := relaytest.NewClient(b, r.URL).MustRegister(b, fj.URL())
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, DisableCompression: true}}

	direct := func(i int) error {
		mp, _ := upload.NewMultipart(&zeroBody{left: size}, size, "f.bin", "application/octet-stream")
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/rest/api/3/issue/BENCH-%d/attachments", fj.URL(), i), mp)
		req.ContentLength = mp.Size()
		req.Header.Set("Content-Type", mp.ContentType())
		req.Header.Set("X-Atlassian-Token", "no-check")
		req.Header.Set("Authorization", "Basic x")
		return do(client, req)
	}
	relay := func(i int) error {
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/v1/instances/%s/issues/BENCH-%d/attachments?filename=f.bin", r.URL, ten.ID, i), &zeroBody{left: size})
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("X-Relay-Key", ten.Client)
		req.Header.Set("Authorization", "Basic x")
		return do(client, req)
	}
	round := func(f func(int) error) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for i := range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := f(i + 1); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	round(direct) // warm both paths
	round(relay)
	var dt, rt time.Duration
	b.SetBytes(size * conc)
	b.ResetTimer()
	for range b.N {
		dt += round(direct)
		rt += round(relay)
	}
	b.StopTimer()
	mb := float64(size*conc*b.N) / (1 << 20)
	b.ReportMetric(mb/dt.Seconds(), "direct_MiB/s")
	b.ReportMetric(mb/rt.Seconds(), "relay_MiB/s")
	b.ReportMetric(dt.Seconds()/rt.Seconds(), "relay/direct")
}

func do(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
