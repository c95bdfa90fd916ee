package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jira-relay/jira-relay/internal/fakejira"
)

// fleetProbe drives the propagation trials: writes through relay 1, polls
// of the other relays.
type fleetProbe struct {
	cfg     *FleetConfig
	sc      *Config
	jiraURL string
	jira    *Endpoint       // the fake Jira's admin routes
	first   *Endpoint       // relay 1
	others  []*Endpoint     // relays 2…N
	metrics []*metricReader // relays 2…N's /metrics
	t       *Tenant
}

// propagationKinds are the rows of the propagation table, in order.
var propagationKinds = []struct{ name, what string }{
	{"cool-down", `Jira's 429 (jira-per-issue-on-write, Retry-After 30) through relay 1 → relay_fleet_cooldowns{scope="issue"} grew on every other relay`},
	{"config", "PUT config (admin key) through relay 1 → GET config (client key) answers it on every other relay"},
	{"rotation", "POST keys/rotate through relay 1 → the old client key is refused (401) by every other relay"},
	{"new tenant", "POST /v1/instances through relay 1 → GET config with its client key answers 200 on every other relay"},
	{"erase", "DELETE /v1/instances/{id} (admin key) through relay 1 → every other relay answers 401 or 404"},
}

// fleetPropagationPart starts the fleet with the tenant limit open wide,
// registers a tenant through relay 1 and runs the trials of every kind. A
// trial whose change does not reach every relay within the trial timeout
// is counted as missed; an unexpected answer of relay 1 ends the run.
func fleetPropagationPart(ctx context.Context, cfg *FleetConfig, sc *Config, dir string) ([]FleetPropagation, []string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	st, err := StartStack(ctx, sc, dir, false)
	if err != nil {
		return nil, nil, err
	}
	defer st.Stop()
	p := &fleetProbe{cfg: cfg, sc: sc, jiraURL: st.JiraURL}
	defer p.close()
	if p.first, err = NewEndpoint(st.RelayURL, 8, "", false); err != nil {
		return nil, nil, err
	}
	p.first.AbortOn(ctx)
	if p.jira, err = NewEndpoint(st.JiraURL, 2, "", false); err != nil {
		return nil, nil, err
	}
	if p.t, err = Register(p.first, st.JiraURL); err != nil {
		return nil, nil, err
	}
	if err := Prepare(ctx, p.first, p.t, 1, 1); err != nil {
		return nil, nil, err
	}
	es, err := fleetEndpoints(ctx, st.RelayURLs, p.first, 2*(cfg.Relays-1), p.t)
	if err != nil {
		return nil, nil, err
	}
	p.others = es[1:]
	for _, a := range st.AdminURLs[1:] {
		m, err := newMetricReader(a)
		if err != nil {
			return nil, nil, err
		}
		p.metrics = append(p.metrics, m)
	}
	logf(sc, "propagation: %d trials of each kind, polling %s every %v (trial timeout %v)",
		cfg.Trials, otherRelays(cfg.Relays), cfg.Poll, cfg.TrialTimeout)

	delays := make([][][]time.Duration, len(propagationKinds)) // kind, trial, relay 2…N
	missed := make([]int, len(propagationKinds))
	var notes []string
	record := func(kind int, d []time.Duration, err error) {
		if err != nil {
			if missed[kind] == 0 {
				notes = append(notes, propagationKinds[kind].name+": "+err.Error())
			}
			missed[kind]++
			return
		}
		delays[kind] = append(delays[kind], d)
	}
	trials := func(label string, one func(k int) error) error {
		start := time.Now()
		for k := range cfg.Trials {
			if ctx.Err() != nil {
				return nil
			}
			if time.Since(start) > cfg.Budget {
				notes = append(notes, fmt.Sprintf("%s: stopped after %d trials (%v budget)", label, k, cfg.Budget))
				return nil
			}
			if err := one(k); err != nil {
				return fmt.Errorf("%s trial %d: %w", label, k+1, err)
			}
		}
		logf(sc, "%s: %d trials in %v", label, cfg.Trials, time.Since(start).Round(time.Millisecond))
		return nil
	}
	steps := []func() error{
		func() error {
			return trials("cool-down", func(k int) error { d, err := p.cooldownTrial(ctx, k); return recordOr(record, 0, d, err) })
		},
		func() error {
			return trials("config", func(k int) error { d, err := p.configTrial(ctx, k); return recordOr(record, 1, d, err) })
		},
		func() error {
			return trials("rotation", func(k int) error { d, err := p.rotationTrial(ctx); return recordOr(record, 2, d, err) })
		},
		func() error {
			return trials("new tenant + erase", func(k int) error {
				u, d, err := p.newTenantTrial(ctx, k)
				if e := recordOr(record, 3, d, err); e != nil || err != nil {
					return e // not known everywhere: its erasure cannot be timed
				}
				d, err = p.eraseTrial(ctx, u)
				return recordOr(record, 4, d, err)
			})
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, nil, err
		}
	}
	var out []FleetPropagation
	for i, k := range propagationKinds {
		out = append(out, propagationOf(k.name, k.what, delays[i], missed[i]))
	}
	notes = append(notes, fmt.Sprintf("propagation delays: from relay 1's answer to the write until the last of %s answered accordingly, "+
		"polled every %v (each poll one request, ~0.2–0.5 ms on loopback): resolution ≈ 1–2 ms", otherRelays(cfg.Relays), cfg.Poll))
	return out, notes, nil
}

// missedTrial marks a trial whose change did not reach every relay in time.
type missedTrial struct{ err error }

func (m *missedTrial) Error() string { return m.err.Error() }

// recordOr records a trial's delays, or its miss, and passes on any other
// error (which ends the run).
func recordOr(record func(int, []time.Duration, error), kind int, d []time.Duration, err error) error {
	if m, ok := err.(*missedTrial); ok {
		record(kind, nil, m)
		return nil
	}
	if err != nil {
		return err
	}
	record(kind, d, nil)
	return nil
}

func (p *fleetProbe) close() {
	for _, e := range p.others {
		e.Close()
	}
	for _, m := range p.metrics {
		m.Close()
	}
	if p.first != nil {
		p.first.Close()
	}
	if p.jira != nil {
		p.jira.Close()
	}
}

// pollOthers polls every other relay at once (cond(i) for relay i+2, every
// cfg.Poll) until cond holds for each, and returns how long after t0 each
// was seen to hold it; a relay that does not within the trial timeout
// makes the trial missed.
func (p *fleetProbe) pollOthers(ctx context.Context, t0 time.Time, cond func(i int) (bool, error)) ([]time.Duration, error) {
	seen := make([]time.Duration, len(p.others))
	errs := make([]error, len(p.others))
	var wg sync.WaitGroup
	for i := range p.others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ok, err := cond(i)
				if ok {
					seen[i] = time.Since(t0)
					return
				}
				if time.Since(t0) > p.cfg.TrialTimeout || ctx.Err() != nil {
					seen[i], errs[i] = -1, err
					return
				}
				time.Sleep(p.cfg.Poll)
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	for i, d := range seen {
		if d < 0 {
			return nil, &missedTrial{fmt.Errorf("relay %d not within %v (last poll: %v)", i+2, p.cfg.TrialTimeout, errs[i])}
		}
	}
	return seen, nil
}

// cooldownTrial sets a one-shot per-issue 429 on the fake Jira for a fresh
// issue, uploads to it through relay 1 and waits until every other relay
// counts one more issue cool-down.
func (p *fleetProbe) cooldownTrial(ctx context.Context, k int) ([]time.Duration, error) {
	const metric = `relay_fleet_cooldowns{scope="issue"}`
	before := make([]float64, len(p.metrics))
	for i, m := range p.metrics {
		v, err := m.Value(metric)
		if err != nil {
			return nil, fmt.Errorf("relay %d: %w", i+2, err)
		}
		before[i] = v
	}
	issue := "FLEET-" + strconv.Itoa(k+1)
	fault, _ := json.Marshal(fakejira.Fault{Kind: fakejira.Fault429, Count: 1, RetryAfter: "30",
		Reason: fakejira.ReasonPerIssue, Issue: issue, Endpoint: fakejira.EndpointUpload})
	if st, b, err := rawCall(p.jira, "POST", fakejira.FaultPath, "", map[string]string{"Content-Type": "application/json"}, fault); err != nil || st != 200 {
		return nil, fmt.Errorf("setting the fake Jira's fault: %d %s %v", st, truncate(b, 200), err)
	}
	st, b, err := rawCall(p.first, "POST", "/v1/instances/"+p.t.ID+"/issues/"+issue+"/attachments?filename=a.txt", p.t.ClientKey,
		map[string]string{"Authorization": jiraAuth, "Content-Type": "text/plain"}, []byte("hello"))
	t0 := time.Now()
	if err != nil || st != 429 || relayErrorCode(b) != "" {
		return nil, fmt.Errorf("upload through relay 1: want Jira's 429, got %d %s %v", st, truncate(b, 200), err)
	}
	return p.pollOthers(ctx, t0, func(i int) (bool, error) {
		v, err := p.metrics[i].Value(metric)
		if err != nil {
			return false, err
		}
		return v > before[i], fmt.Errorf("%s = %g (was %g)", metric, v, before[i])
	})
}

// configTrial writes the tenant's configuration through relay 1 and waits
// until every other relay answers it.
func (p *fleetProbe) configTrial(ctx context.Context, k int) ([]time.Duration, error) {
	body, _ := json.Marshal(map[string]any{"benchTrial": k + 1, "run": p.t.RunID, "defaultProject": "BENCH"})
	path := "/v1/instances/" + p.t.ID + "/config"
	st, b, err := rawCall(p.first, "PUT", path, p.t.AdminKey, map[string]string{"Content-Type": "application/json"}, body)
	t0 := time.Now()
	if err != nil || (st != 200 && st != 201) {
		return nil, fmt.Errorf("PUT config through relay 1: %d %s %v", st, truncate(b, 200), err)
	}
	return p.pollOthers(ctx, t0, func(i int) (bool, error) {
		st, b, err := rawCall(p.others[i], "GET", path, p.t.ClientKey, nil, nil)
		if err != nil {
			return false, err
		}
		var c struct {
			BenchTrial int `json:"benchTrial"`
		}
		if st != 200 || json.Unmarshal(b, &c) != nil || c.BenchTrial != k+1 {
			return false, fmt.Errorf("status %d, %s", st, truncate(b, 80))
		}
		return true, nil
	})
}

// rotationTrial rotates the tenant's client key through relay 1, waits
// until every other relay refuses the old one, then (untimed) until every
// one takes the new one.
func (p *fleetProbe) rotationTrial(ctx context.Context) ([]time.Duration, error) {
	path := "/v1/instances/" + p.t.ID
	st, b, err := rawCall(p.first, "POST", path+"/keys/rotate", p.t.AdminKey, nil, nil)
	t0 := time.Now()
	var ans struct {
		ClientKey string `json:"clientKey"`
	}
	if err != nil || st != 200 || json.Unmarshal(b, &ans) != nil || ans.ClientKey == "" {
		return nil, fmt.Errorf("POST keys/rotate through relay 1: %d %s %v", st, truncate(b, 200), err)
	}
	old := p.t.ClientKey
	p.t.ClientKey = ans.ClientKey
	d, err := p.pollOthers(ctx, t0, func(i int) (bool, error) {
		st, _, err := rawCall(p.others[i], "GET", path+"/config", old, nil, nil)
		return err == nil && st == 401, fmt.Errorf("status %d %v", st, err)
	})
	if _, e := p.pollOthers(ctx, time.Now(), func(i int) (bool, error) {
		st, _, err := rawCall(p.others[i], "GET", path+"/config", ans.ClientKey, nil, nil)
		return err == nil && st == 200, fmt.Errorf("status %d %v", st, err)
	}); e != nil {
		return nil, fmt.Errorf("the rotated key is not taken everywhere: %w", e)
	}
	return d, err
}

// newTenantTrial registers a fresh tenant through relay 1 and waits until
// every other relay knows it.
func (p *fleetProbe) newTenantTrial(ctx context.Context, k int) (*Tenant, []time.Duration, error) {
	u, err := Register(p.first, p.jiraURL+"/bench-erase-"+p.t.RunID+"-"+strconv.Itoa(k+1))
	t0 := time.Now()
	if err != nil {
		return nil, nil, err
	}
	d, err := p.pollOthers(ctx, t0, func(i int) (bool, error) {
		st, _, err := rawCall(p.others[i], "GET", "/v1/instances/"+u.ID+"/config", u.ClientKey, nil, nil)
		return err == nil && st == 200, fmt.Errorf("status %d %v", st, err)
	})
	return u, d, err
}

// eraseTrial erases tenant u through relay 1 and waits until every other
// relay refuses it.
func (p *fleetProbe) eraseTrial(ctx context.Context, u *Tenant) ([]time.Duration, error) {
	path := "/v1/instances/" + u.ID
	st, b, err := rawCall(p.first, "DELETE", path, u.AdminKey, nil, nil)
	t0 := time.Now()
	if err != nil || st != 204 {
		return nil, fmt.Errorf("DELETE %s through relay 1: %d %s %v", path, st, truncate(b, 200), err)
	}
	return p.pollOthers(ctx, t0, func(i int) (bool, error) {
		st, _, err := rawCall(p.others[i], "GET", path+"/config", u.ClientKey, nil, nil)
		return err == nil && (st == 401 || st == 404), fmt.Errorf("status %d %v", st, err)
	})
}

// propagationOf summarises one kind's trials: each trial's delay is its
// slowest relay's; besides, every relay's median.
func propagationOf(name, what string, trials [][]time.Duration, missed int) FleetPropagation {
	fp := FleetPropagation{Name: name, What: what, Trials: len(trials) + missed, Missed: missed}
	if len(trials) == 0 {
		return fp
	}
	var s []time.Duration
	for _, t := range trials {
		s = append(s, slices.Max(t))
	}
	for r := range trials[0] {
		var col []time.Duration
		for _, t := range trials {
			col = append(col, t[r])
		}
		slices.Sort(col)
		fp.PerRelayP50 = append(fp.PerRelayP50, math.Round(ms(col[(len(col)-1)/2])*1000)/1000)
	}
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
		fp.DelaysMs = append(fp.DelaysMs, math.Round(ms(d)*1000)/1000)
	}
	rank := func(q float64) float64 { return ms(s[max(int(math.Ceil(q*float64(len(s))))-1, 0)]) }
	fp.P50, fp.P90, fp.P99, fp.Max = rank(0.50), rank(0.90), rank(0.99), ms(s[len(s)-1])
	fp.Mean = ms(sum / time.Duration(len(s)))
	return fp
}
