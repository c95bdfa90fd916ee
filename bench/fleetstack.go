package bench

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// MaxRelays is the largest fleet --relays starts.
const MaxRelays = 16

// fleetEndpoints are the endpoints of every relay of a fleet, first (relay
// 1's, which the caller made) first, the others pooling their share of
// concurrency connections; it returns once every relay answers the
// tenant's configuration as relay 1 does (GET config, If-None-Match: its
// ETag → 304), within 10 s. The caller closes the others.
func fleetEndpoints(ctx context.Context, urls []string, first *Endpoint, concurrency int, t *Tenant) ([]*Endpoint, error) {
	es := []*Endpoint{first}
	fail := func(err error) ([]*Endpoint, error) {
		for _, e := range es[1:] {
			e.Close()
		}
		return nil, err
	}
	per := (concurrency+len(urls)-1)/len(urls) + 8
	for _, u := range urls[1:] {
		e, err := NewEndpoint(u, per, "", false)
		if err != nil {
			return fail(err)
		}
		e.AbortOn(ctx)
		es = append(es, e)
	}
	path := "/v1/instances/" + t.ID + "/config"
	deadline := time.Now().Add(10 * time.Second)
	for i, e := range es[1:] {
		for {
			st, _, err := rawCall(e, "GET", path, t.ClientKey, map[string]string{"If-None-Match": t.ETag}, nil)
			if err == nil && st == 304 {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fail(fmt.Errorf("relay %d does not answer tenant %s's configuration as relay 1 does (last: %d %v)", i+2, t.ID, st, err))
			}
			if sleep(ctx, 10*time.Millisecond) != nil {
				return fail(ctx.Err())
			}
		}
	}
	return es, nil
}

// rawCall sends one request to the relay's API and returns the status and
// a copy of the body, whatever the status.
func rawCall(e *Endpoint, method, path, key string, hdr map[string]string, body []byte) (status int, answer []byte, err error) {
	err = exchange(e, method, path, key, hdr, body, 10*time.Second, func(resp *fasthttp.Response) error {
		status, answer = resp.StatusCode(), append([]byte(nil), resp.Body()...)
		return nil
	})
	return status, answer, err
}

// fleetMemberArgs turns relay 1's command line into one of another relay
// of its fleet: no embedded etcd (--etcd-listen and --etcd-peer-listen
// dropped), --etcd-endpoints relay 1's etcd instead.
func fleetMemberArgs(args []string, etcdURL string) []string {
	out := make([]string, 0, len(args)+2)
	for i := 0; i < len(args); i++ {
		if (args[i] == "--etcd-listen" || args[i] == "--etcd-peer-listen") && i+1 < len(args) {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return append(out, "--etcd-endpoints", etcdURL)
}

// metricReader reads single values off a relay's admin /metrics.
type metricReader struct {
	e   *Endpoint
	url string
}

// newMetricReader reads the /metrics of the relay whose --admin-listen is
// adminURL, over a connection of its own.
func newMetricReader(adminURL string) (*metricReader, error) {
	e, err := NewEndpoint(adminURL, 2, "", false)
	if err != nil {
		return nil, fmt.Errorf("admin URL: %w", err)
	}
	return &metricReader{e: e, url: adminURL + "/metrics"}, nil
}

// Value is the sample named name, e.g. `relay_fleet_cooldowns{scope="issue"}`;
// a metric the page does not show is an error.
func (m *metricReader) Value(name string) (float64, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(m.url)
	if err := m.e.Do(req, resp, time.Now().Add(5*time.Second)); err != nil {
		return 0, fmt.Errorf("GET %s: %w", m.url, err)
	}
	if resp.StatusCode() != 200 {
		return 0, fmt.Errorf("GET %s: status %d", m.url, resp.StatusCode())
	}
	return metricValue(resp.Body(), name)
}

// Close drops the reader's connection.
func (m *metricReader) Close() { m.e.Close() }

// metricValue finds the sample name in a Prometheus text page.
func metricValue(page []byte, name string) (float64, error) {
	prefix := []byte(name + " ")
	for len(page) > 0 {
		line := page
		if i := bytes.IndexByte(page, '\n'); i >= 0 {
			line, page = page[:i], page[i+1:]
		} else {
			page = nil
		}
		if rest, ok := bytes.CutPrefix(line, prefix); ok {
			v, err := strconv.ParseFloat(string(bytes.TrimSpace(rest)), 64)
			if err != nil {
				return 0, fmt.Errorf("metric %s: %w", name, err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("metric %s: not on the page", name)
}

// waitMembers waits until every relay of s counts n fleet members on its
// /metrics (relay_fleet_members), a relay exits, or within passes.
func waitMembers(ctx context.Context, s *Stack, n int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for i, admin := range s.AdminURLs {
		m, err := newMetricReader(admin)
		if err != nil {
			return err
		}
		for {
			v, err := m.Value("relay_fleet_members")
			if err == nil && v == float64(n) {
				break
			}
			if time.Now().After(deadline) {
				m.Close()
				return fmt.Errorf("relay %d counts %v fleet members (%v), want %d, after %v; log:\n%s", i+1, v, err, n, within, s.Relays[i].LogTail())
			}
			select {
			case <-ctx.Done():
				m.Close()
				return ctx.Err()
			case <-s.Relays[i].Exited():
				m.Close()
				return fmt.Errorf("relay %d exited; log:\n%s", i+1, s.Relays[i].LogTail())
			case <-time.After(50 * time.Millisecond):
			}
		}
		m.Close()
	}
	return nil
}
