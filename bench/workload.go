package bench

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Phase is one stretch of load against one target.
type Phase struct {
	Name        string
	Target      Target
	Mix         Mix
	Duration    time.Duration // bound on issuing new requests
	Concurrency int
	Rate        float64 // requests per second for all workers together; 0 = open loop
	Count       int64   // bound on requests issued; 0 = none
}

// worker is one of a phase's concurrent request loops.
type worker struct {
	id    int             // 0 … Concurrency-1
	ctx   context.Context // the run's: ends on Ctrl-C, aborting bodies
	rnd   *rand.Rand
	req   *fasthttp.Request
	resp  *fasthttp.Response
	buf   []byte
	stats workerStats
}

// Live is what the progress line shows, updated as requests finish.
type Live struct {
	Requests atomic.Int64
	Errors   atomic.Int64
	Bytes    atomic.Int64
}

// phaseRun is a finished phase's raw measurements.
type phaseRun struct {
	Phase   Phase
	Start   time.Time
	Elapsed time.Duration // until the last in-flight request finished
	Stats   workerStats
}

// RunPhase plays p until its duration or count is reached, or ctx ends.
// Each worker loops: take a token (rate mode), pick an operation by the mix,
// send it, record it. In rate mode a pacer hands out tokens stamped with
// their due time and latency is measured from that due time, so a relay
// that falls behind shows its queueing delay instead of hiding it
// (coordinated omission). Requests already sent when the duration ends
// finish (bounded by their timeout); Elapsed includes them.
func RunPhase(ctx context.Context, p Phase, live *Live) *phaseRun {
	issueCtx, cancel := context.WithTimeout(ctx, p.Duration)
	defer cancel()
	start := time.Now()
	var tokens chan time.Time
	if p.Rate > 0 {
		tokens = make(chan time.Time, p.Concurrency)
		go pace(issueCtx, start, p.Rate, tokens)
	}
	var issued atomic.Int64
	workers := make([]*worker, p.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{id: i, ctx: ctx, rnd: rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(i))),
			req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse(), buf: make([]byte, 0, 512)}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var due time.Time
				if tokens != nil {
					t, ok := <-tokens
					if !ok {
						return
					}
					due = t
				} else if issueCtx.Err() != nil {
					return
				}
				if p.Count > 0 && issued.Add(1) > p.Count {
					cancel()
					return
				}
				op := p.Mix.Pick(w.rnd)
				sent := time.Now()
				if due.IsZero() {
					due = sent
				}
				n, kind := p.Target.Do(w, op)
				end := time.Now()
				if ctx.Err() != nil && kind != "" {
					return // interrupted: not a relay error
				}
				w.stats.record(op, end.Sub(start), end.Sub(due), n, kind)
				live.Requests.Add(1)
				live.Bytes.Add(n)
				if kind != "" {
					live.Errors.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	run := &phaseRun{Phase: p, Start: start, Elapsed: time.Since(start)}
	for _, w := range workers {
		run.Stats.merge(&w.stats)
		fasthttp.ReleaseRequest(w.req)
		fasthttp.ReleaseResponse(w.resp)
	}
	return run
}

// pace sends the due time of request i, start + i/rate, into tokens until
// ctx ends, then closes tokens.
func pace(ctx context.Context, start time.Time, rate float64, tokens chan<- time.Time) {
	defer close(tokens)
	interval := float64(time.Second) / rate
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(float64(i) * interval))
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		select {
		case <-ctx.Done():
			return
		case tokens <- due:
		}
	}
}
