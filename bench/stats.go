package bench

import (
	"strconv"
	"time"
)

// opStats is what one worker measured for one operation.
type opStats struct {
	hist     Histogram
	ok       int64
	errors   int64
	bytes    int64            // file bytes of successful uploads
	byStatus map[string]int64 // error kind → count: "304", "429", "transport: …"
}

// second is one second of the timeline for one operation.
type second struct {
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	Bytes    int64 `json:"bytes"`
}

// workerStats is everything one worker measured; no locking, merged after
// the worker stopped.
type workerStats struct {
	ops      [numOps]*opStats
	timeline [][numOps]second
}

func (w *workerStats) op(o Op) *opStats {
	if w.ops[o] == nil {
		w.ops[o] = &opStats{byStatus: map[string]int64{}}
	}
	return w.ops[o]
}

// record adds one finished request; at is its completion, relative to the
// phase's start.
func (w *workerStats) record(o Op, at, latency time.Duration, bytes int64, errKind string) {
	s := w.op(o)
	s.hist.Record(latency)
	sec := int(at / time.Second)
	for len(w.timeline) <= sec {
		w.timeline = append(w.timeline, [numOps]second{})
	}
	t := &w.timeline[sec][o]
	t.Requests++
	if errKind != "" {
		s.errors++
		t.Errors++
		if _, ok := s.byStatus[errKind]; ok || len(s.byStatus) < 16 {
			s.byStatus[errKind]++
		} else {
			s.byStatus["other"]++
		}
		return
	}
	s.ok++
	s.bytes += bytes
	t.Bytes += bytes
}

func (w *workerStats) merge(o *workerStats) {
	for i, s := range o.ops {
		if s == nil {
			continue
		}
		d := w.op(Op(i))
		d.hist.Merge(&s.hist)
		d.ok += s.ok
		d.errors += s.errors
		d.bytes += s.bytes
		for k, v := range s.byStatus {
			d.byStatus[k] += v
		}
	}
	for len(w.timeline) < len(o.timeline) {
		w.timeline = append(w.timeline, [numOps]second{})
	}
	for i, sec := range o.timeline {
		for j, v := range sec {
			t := &w.timeline[i][j]
			t.Requests += v.Requests
			t.Errors += v.Errors
			t.Bytes += v.Bytes
		}
	}
}

// statusKind is the error kind of an unexpected status.
func statusKind(status int) string { return strconv.Itoa(status) }
