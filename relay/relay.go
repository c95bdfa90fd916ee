// Package relay is the attachment relay: uploads from the add-in streamed to
// Jira Cloud's attachment endpoint, downloads streamed back, in constant
// memory and never stored. It owns the upstream connection pools and their
// circuit breakers, the guards that protect Jira (its 429 cool-down, its
// per-issue write limit, the streams in flight per instance), Jira's header
// rules, and the body shapes (relay/upload).
//
// An upload passes, once each: MatchUpload (the front door), Check (every
// decision the headers allow; also the Expect phase), acquire (stream slot
// and breaker ticket), body, uploadRequest, roundTrip, and failed or the
// relayed answer. Jira may answer before it has read the whole upload (a
// 401 for a bad credential) and close: that answer is relayed and counted
// by its status, and the caller's unread rest is dropped by a lingering
// close (upBody, idleConn). A download holds a stream slot and an upstream
// connection while its body is written to the caller; a caller who stops
// reading is cut off after the stream idle timeout, which frees both
// (downloadBody). Concurrency: a Relay is safe for concurrent use; its maps
// are bounded by the live instances.
package relay

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fleet"
	"github.com/jira-relay/jira-relay/internal/httpx"
)

// Relay streams attachments between callers and their instances' Jira.
type Relay struct {
	cfg     configs.Config
	resp    *httpx.Responder
	guards  *guards
	ups     *upstreams
	metrics *relayMetrics
	// live holds the caller connection of every upload in flight, so that
	// Cut can end them at the drain deadline; cut is set then.
	live sync.Map // *httpx.Body → net.Conn
	cut  atomic.Bool
}

// New builds the relay. policy is the instance URL policy, checked again
// when an upstream is made; set receives the relay's metrics.
func New(cfg configs.Config, policy urlPolicy, resp *httpx.Responder, set *metrics.Set, log *slog.Logger) (*Relay, error) {
	ups, err := newUpstreams(cfg, policy, log)
	if err != nil {
		return nil, err
	}
	r := &Relay{cfg: cfg, resp: resp, guards: newGuards(cfg, nil), ups: ups}
	r.metrics = newRelayMetrics(set, r)
	return r, nil
}

// Sweep drops idle guard entries and the upstreams for which stale reports
// true (the instance was deleted or its URL changed), closing their idle
// connections. The front door runs it every few seconds; stale may ask etcd.
func (r *Relay) Sweep(stale func(id, base string) bool) {
	r.guards.sweep()
	r.ups.prune(stale)
}

// Cooldowns are the relay's Jira cool-downs, for the fleet to share.
func (r *Relay) Cooldowns() *fleet.Cooldowns { return r.guards.cooldowns }

// SetMaxStreams sets the uploads and downloads in flight allowed per
// instance through this relay (its share of --instance-max-streams).
func (r *Relay) SetMaxStreams(n int) { r.guards.streams.SetLimit(n) }

// MaxStreams is the uploads and downloads in flight allowed per instance
// through this relay now.
func (r *Relay) MaxStreams() int { return r.guards.streams.Limit() }

// InFlight is the number of uploads streaming now.
func (r *Relay) InFlight() int64 { return r.metrics.inFlight.Load() }

// Cut ends every upload still streaming (at the drain deadline): their
// callers' connections are closed, so each aborts its request to Jira (Jira
// never completes a truncated file) and answers 503 shutting_down. It waits
// up to grace for them to end.
func (r *Relay) Cut(grace time.Duration) {
	r.cut.Store(true)
	r.live.Range(func(_, c any) bool {
		_ = c.(net.Conn).Close()
		return true
	})
	for end := time.Now().Add(grace); r.InFlight() > 0 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
}
