package bench

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jira-relay/jira-relay/internal/layoutv1"
	"github.com/jira-relay/jira-relay/internal/seal"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The capacity scenario (`go run ./cmd/bench --scenario capacity`) measures
// what one mapping costs in etcd, in the old key layout (layout 1, frozen in
// internal/layoutv1) and the current one (layout 3, package store), side by
// side: for each it starts an embedded etcd member of its own (fsync on,
// in a fresh temp dir, reached through the in-process client as the relay
// reaches its embedded etcd), registers one tenant, writes N mappings with
// realistic ids, and reads back keys, key+value bytes and the database in
// use per mapping, the write rate and the rate of lookups by conversation,
// and how many mappings fit in 2 GiB and 8 GiB of database. No relay, no
// fake Jira: the store's own calls, as the relay's handlers make them.

// CapacityScenario is the scenario's name.
const CapacityScenario = "capacity"

// Targets of the capacity scenario (the current layout). Never lowered here.
const (
	TargetInUsePerMapping = 1200   // bytes of etcd database in use per mapping, at most
	TargetLookupsPerSec   = 10_000 // lookups by conversation per second, at least
	TargetWritesPerSec    = 2_000  // mapping writes per second, at least
	// TargetSealedRatio: with encryption at rest on, mapping writes and
	// lookups by conversation run at least this fraction of the same run
	// with it off (issue 12).
	TargetSealedRatio = 0.85
)

// CapacityConfig is one run of the capacity scenario. Zero fields take the
// defaults given.
type CapacityConfig struct {
	N           int           // mappings written per layout; default 5000
	Concurrency int           // concurrent writers; default 64
	Readers     int           // concurrent lookups; default 32
	Duration    time.Duration // the lookup phase of each layout; default 10s
	Lookups     int64         // also stop the lookup phase after this many; 0: Duration only
	Warmup      time.Duration // unmeasured lookups before the measured ones; default 0
	Users       int           // distinct users (Jira account ids); default 50
	Issues      int           // distinct issues; default 500
	PerConv     int           // mappings per conversation; default 3
	Seed        uint64        // of the generated ids; default 1
	// Rounds of the current layout measured plaintext and sealed back to
	// back (the order alternating), each on fresh members; the sealed /
	// plaintext ratios are the medians of the rounds' ratios. Default 3.
	Rounds int
	Dir    string // where the members' temp dir is made; default os.TempDir()

	Command string    // the command line, for the report
	Log     io.Writer // progress (stderr); nil: none
}

func (c *CapacityConfig) defaults() error {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.N, 5000)
	def(&c.Concurrency, 64)
	def(&c.Readers, 32)
	def(&c.Users, 50)
	def(&c.Issues, 500)
	def(&c.PerConv, 3)
	def(&c.Rounds, 3)
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	switch {
	case c.N < 1 || c.N > 10_000_000:
		return errors.New("--count (mappings per layout) must be from 1 to 10000000")
	case c.Concurrency < 1 || c.Concurrency > 10000:
		return errors.New("--concurrency (writers) must be from 1 to 10000")
	case c.Readers < 1 || c.Readers > 10000:
		return errors.New("--readers must be from 1 to 10000")
	case c.Duration < 0 || c.Warmup < 0 || c.Lookups < 0:
		return errors.New("--duration, --warmup and the lookup count must not be negative")
	case c.Rounds < 1 || c.Rounds > 50:
		return errors.New("--rounds must be from 1 to 50")
	case c.Users < 1 || c.Issues < 1 || c.Issues > 89_999 || c.PerConv < 1:
		return errors.New("--users must be 1 or more; issues from 1 to 89999; mappings per conversation 1 or more")
	}
	return nil
}

// CapacityReport is what the capacity scenario measured; WriteTable and
// WriteJSON are its views.
type CapacityReport struct {
	Scenario string           `json:"scenario"`
	Command  string           `json:"command"`
	Started  time.Time        `json:"started"`
	Machine  Machine          `json:"machine"`
	Settings CapacitySettings `json:"settings"`
	Layouts  []LayoutCapacity `json:"layouts"` // layout 1 (old), the current layout, the current layout with encryption at rest (values sealed, keyed tokens)
	Targets  CapacityTargets  `json:"targets"`
	// SealedRounds are the plaintext and sealed runs of the current
	// layout, round by round; the verdicts on sealed / plaintext use the
	// medians of their ratios.
	SealedRounds       []SealedRound     `json:"sealedRounds"`
	SealedWritesRatio  float64           `json:"sealedWritesRatio"`
	SealedLookupsRatio float64           `json:"sealedLookupsRatio"`
	Verdicts           map[string]string `json:"verdicts"` // of the current layout: "met" or "missed"
	Interrupted        bool              `json:"interrupted,omitempty"`
	Notes              []string          `json:"notes,omitempty"`
}

// CapacitySettings are the run's parameters and the ids' shape.
type CapacitySettings struct {
	Mappings        int    `json:"mappings"`
	Conversations   int    `json:"conversations"`
	Users           int    `json:"users"`
	Issues          int    `json:"issues"`
	Writers         int    `json:"writers"`
	Readers         int    `json:"readers"`
	LookupDuration  string `json:"lookupDuration"`
	LookupCount     int64  `json:"lookupCount,omitempty"`
	Warmup          string `json:"warmup"`
	Etcd            string `json:"etcd"`
	Prefix          string `json:"prefix"`
	ConversationLen int    `json:"conversationIdBytes"`
	MailLen         int    `json:"mailIdBytes"`
	UserLen         int    `json:"userIdBytes"`
}

// CapacityTargets are the targets, for the JSON.
type CapacityTargets struct {
	InUsePerMappingMax int `json:"inUseBytesPerMappingMax"`
	LookupsPerSecMin   int `json:"lookupsPerSecMin"`
	WritesPerSecMin    int `json:"writesPerSecMin"`
	// SealedRatioMin bounds sealed / plaintext for writes/s and lookups/s.
	SealedRatioMin float64 `json:"sealedRatioMin"`
}

// LayoutCapacity is one layout's figures.
type LayoutCapacity struct {
	Layout   int    `json:"layout"`
	Name     string `json:"name"`
	Code     string `json:"code"`
	Mappings int    `json:"mappings"`

	Keys              int64   `json:"keys"` // written by the mappings (after − before)
	KeysPerMapping    float64 `json:"keysPerMapping"`
	KVBytes           int64   `json:"kvBytes"` // Σ len(key)+len(value), after − before
	KVBytesPerMapping float64 `json:"kvBytesPerMapping"`

	DBInUseBefore    int64   `json:"dbInUseBefore"`
	DBInUseAfter     int64   `json:"dbInUseAfter"`
	DBSizeBefore     int64   `json:"dbSizeBefore"`
	DBSizeAfter      int64   `json:"dbSizeAfter"`
	InUsePerMapping  float64 `json:"dbInUseBytesPerMapping"`
	DBSizePerMapping float64 `json:"dbSizeBytesPerMapping"`

	WriteSeconds float64 `json:"writeSeconds"`
	WritesPerSec float64 `json:"writesPerSec"`
	WriteLatency Latency `json:"writeLatencyMs"`

	Lookups           int64   `json:"lookups"`
	LookupErrors      int64   `json:"lookupErrors"` // failed, or an answer other than the conversation's mappings
	LookupSeconds     float64 `json:"lookupSeconds"`
	LookupsPerSec     float64 `json:"lookupsPerSec"`
	LookupLatency     Latency `json:"lookupLatencyMs"`
	MappingsPerLookup float64 `json:"mappingsPerLookup"`

	Fit2GiB int64 `json:"mappingsIn2GiB"` // at InUsePerMapping
	Fit8GiB int64 `json:"mappingsIn8GiB"`
}

// Errors counts the failed or wrong lookups of every layout.
func (r *CapacityReport) Errors() int64 {
	var n int64
	for _, l := range r.Layouts {
		n += l.LookupErrors
	}
	return n
}

// capacityLayout is one layout under test, set up on a member.
type capacityLayout struct {
	write  func(ctx context.Context, m store.Mapping) error
	lookup func(ctx context.Context, conv string) ([]store.Mapping, error)
	close  func()
}

const capacityPrefix = "/jira-relay/"

// opTimeout bounds one operation, as store.Options.Timeout does by default.
const opTimeout = 5 * time.Second

// RunCapacity runs the capacity scenario: layout 1, then the current layout, each on
// an etcd member of its own, every member and its data gone when it
// returns. A failed write stops the run with an error; a failed or wrong
// lookup is counted (LookupErrors).
func RunCapacity(ctx context.Context, cfg CapacityConfig) (*CapacityReport, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	data := capacityData(cfg.N, cfg.Users, cfg.Issues, cfg.PerConv, cfg.Seed)
	rep := &CapacityReport{Scenario: CapacityScenario, Command: cfg.Command, Started: time.Now(), Machine: machine(),
		Settings: CapacitySettings{Mappings: cfg.N, Conversations: len(data.convs), Users: cfg.Users, Issues: cfg.Issues,
			Writers: cfg.Concurrency, Readers: cfg.Readers, LookupDuration: cfg.Duration.String(), LookupCount: cfg.Lookups,
			Warmup: cfg.Warmup.String(), Etcd: "embedded, one member each, fsync on, in-process client", Prefix: capacityPrefix,
			ConversationLen: len(data.ms[0].ConversationID), MailLen: len(data.ms[0].MailID), UserLen: len(data.ms[0].UserID)},
		Targets: CapacityTargets{InUsePerMappingMax: TargetInUsePerMapping, LookupsPerSecMin: TargetLookupsPerSec, WritesPerSecMin: TargetWritesPerSec,
			SealedRatioMin: TargetSealedRatio}}
	entry, err := seal.Generate("bench")
	if err != nil {
		return nil, err
	}
	keys, err := seal.Parse([]byte("keys:\n" + entry))
	if err != nil {
		return nil, err
	}
	parent := cfg.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "jira-relay-capacity-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	type layoutRun struct {
		n          int
		name, code string
		setup      func(context.Context, *clientv3.Client) (*capacityLayout, error)
	}
	measure := func(l layoutRun) (*LayoutCapacity, error) {
		capf(&cfg, "layout %d (%s): starting an etcd member", l.n, l.name)
		lc, err := measureLayout(ctx, &cfg, dir, data, l.setup)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("capacity, %s: %w", l.name, err)
		}
		lc.Layout, lc.Name, lc.Code = l.n, l.name, l.code
		return lc, nil
	}
	old, err := measure(layoutRun{1, "layout 1 (old)", "internal/layoutv1", setupLayout1})
	if err != nil {
		return nil, err
	}
	plainRun := layoutRun{store.LayoutVersion, fmt.Sprintf("layout %d (current)", store.LayoutVersion), "store", setupLayout2(nil)}
	sealedRun := layoutRun{store.LayoutVersion, fmt.Sprintf("layout %d, sealed + keyed tokens", store.LayoutVersion), "store + internal/seal (--encryption-key-file)", setupLayout2(keys)}
	// The pair side by side, in rounds whose order alternates: the disk
	// and the machine drift more between runs than the two differ.
	var plains, sealeds []*LayoutCapacity
	for r := range cfg.Rounds {
		pair := []layoutRun{plainRun, sealedRun}
		if r%2 == 1 {
			pair[0], pair[1] = pair[1], pair[0]
		}
		for _, l := range pair {
			lc, err := measure(l)
			if err != nil {
				return nil, err
			}
			if lc.Name == plainRun.name {
				plains = append(plains, lc)
			} else {
				sealeds = append(sealeds, lc)
			}
		}
		rep.SealedRounds = append(rep.SealedRounds, SealedRound{
			PlainWritesPerSec: plains[r].WritesPerSec, SealedWritesPerSec: sealeds[r].WritesPerSec,
			PlainLookupsPerSec: plains[r].LookupsPerSec, SealedLookupsPerSec: sealeds[r].LookupsPerSec,
			WritesRatio: sealeds[r].WritesPerSec / plains[r].WritesPerSec, LookupsRatio: sealeds[r].LookupsPerSec / plains[r].LookupsPerSec,
			SealedFirst: r%2 == 1})
	}
	// The rows shown are the median round's (by the plaintext writes).
	mid := medianIndex(plains, func(l *LayoutCapacity) float64 { return l.WritesPerSec })
	rep.Layouts = append(rep.Layouts, *old, *plains[mid], *sealeds[mid])
	var wr, lr []float64
	for _, sr := range rep.SealedRounds {
		wr, lr = append(wr, sr.WritesRatio), append(lr, sr.LookupsRatio)
	}
	rep.SealedWritesRatio, rep.SealedLookupsRatio = median(wr), median(lr)
	rep.Machine.LoadAvg = append(rep.Machine.LoadAvg, loadAvg())
	cur, sealed := rep.Layouts[1], rep.Layouts[2]
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	rep.Verdicts = map[string]string{
		"inUsePerMapping": verdict(cur.InUsePerMapping <= TargetInUsePerMapping),
		"lookupsPerSec":   verdict(cur.LookupsPerSec >= TargetLookupsPerSec && cur.LookupErrors == 0),
		"writesPerSec":    verdict(cur.WritesPerSec >= TargetWritesPerSec),
		"sealedWrites":    verdict(rep.SealedWritesRatio >= TargetSealedRatio),
		"sealedLookups":   verdict(rep.SealedLookupsRatio >= TargetSealedRatio && sealed.LookupErrors == 0),
	}
	rep.Notes = append(rep.Notes,
		"in use = etcd's DbSizeInUse after the writes minus before, over the mappings; the projection divides 2 GiB and 8 GiB by it",
		"etcd's quota (--quota-backend-bytes; 2 GiB default, 8 GiB suggested maximum) counts the database file (DbSize), which exceeds the in-use figure until a defragmentation")
	return rep, nil
}

func capf(cfg *CapacityConfig, format string, args ...any) {
	if cfg.Log != nil {
		fmt.Fprintf(cfg.Log, "bench: capacity: "+format+"\n", args...)
	}
}

// measureLayout is one layout's whole measurement on a member of its own.
func measureLayout(ctx context.Context, cfg *CapacityConfig, parent string, data *capacityIDs,
	setup func(context.Context, *clientv3.Client) (*capacityLayout, error)) (*LayoutCapacity, error) {
	e, err := startCapacityMember(parent)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	cli := e.Client()
	defer cli.Close()
	endpoint := e.Endpoints()[0]
	l, err := setup(ctx, cli)
	if err != nil {
		return nil, err
	}
	defer l.close()

	lc := &LayoutCapacity{Mappings: len(data.ms)}
	keys0, bytes0, err := sumPrefix(ctx, cli, capacityPrefix)
	if err != nil {
		return nil, err
	}
	if lc.DBInUseBefore, lc.DBSizeBefore, err = settledStatus(ctx, cli, endpoint); err != nil {
		return nil, err
	}

	capf(cfg, "writing %d mappings, %d writers", len(data.ms), cfg.Concurrency)
	secs, hist, err := writeAll(ctx, cfg.Concurrency, data.ms, l.write)
	if err != nil {
		return nil, err
	}
	lc.WriteSeconds, lc.WritesPerSec, lc.WriteLatency = secs, float64(len(data.ms))/secs, latencyOf(hist)

	if lc.DBInUseAfter, lc.DBSizeAfter, err = settledStatus(ctx, cli, endpoint); err != nil {
		return nil, err
	}
	keys1, bytes1, err := sumPrefix(ctx, cli, capacityPrefix)
	if err != nil {
		return nil, err
	}
	n := float64(len(data.ms))
	lc.Keys, lc.KVBytes = keys1-keys0, bytes1-bytes0
	lc.KeysPerMapping, lc.KVBytesPerMapping = float64(lc.Keys)/n, float64(lc.KVBytes)/n
	lc.InUsePerMapping = float64(lc.DBInUseAfter-lc.DBInUseBefore) / n
	lc.DBSizePerMapping = float64(lc.DBSizeAfter-lc.DBSizeBefore) / n
	if lc.InUsePerMapping > 0 {
		lc.Fit2GiB = int64(float64(2<<30) / lc.InUsePerMapping)
		lc.Fit8GiB = int64(float64(8<<30) / lc.InUsePerMapping)
	}

	if cfg.Warmup > 0 {
		capf(cfg, "warming up lookups for %s", cfg.Warmup)
		lookupFor(ctx, cfg.Readers, cfg.Warmup, 0, data, l.lookup)
	}
	capf(cfg, "lookups by conversation for %s, %d readers", cfg.Duration, cfg.Readers)
	lr := lookupFor(ctx, cfg.Readers, cfg.Duration, cfg.Lookups, data, l.lookup)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	lc.Lookups, lc.LookupErrors, lc.LookupSeconds = lr.n, lr.errors, lr.secs
	lc.LookupsPerSec = float64(lr.n) / max(lr.secs, 1e-9)
	lc.LookupLatency = latencyOf(&lr.hist)
	if ok := lr.n - lr.errors; ok > 0 {
		lc.MappingsPerLookup = float64(lr.found) / float64(ok)
	}
	if lr.firstErr != nil {
		capf(cfg, "%d lookups failed or were wrong; the first: %v", lr.errors, lr.firstErr)
	}
	return lc, nil
}

// startCapacityMember starts a single member in a fresh directory under
// parent on free loopback ports, trying again with new ports when another
// process took one meanwhile.
func startCapacityMember(parent string) (*store.Embedded, error) {
	var err error
	for range 5 {
		var d string
		if d, err = os.MkdirTemp(parent, "member-"); err != nil {
			return nil, err
		}
		var cp, pp int
		if cp, err = freeLoopbackPort(); err != nil {
			return nil, err
		}
		if pp, err = freeLoopbackPort(); err != nil {
			return nil, err
		}
		var e *store.Embedded
		e, err = store.StartEmbedded(store.EmbedConfig{Dir: d, LogLevel: "error", UnsafeNoFsync: false,
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", cp), PeerURL: fmt.Sprintf("http://127.0.0.1:%d", pp)})
		if err == nil {
			return e, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, err
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// setupLayout1 writes an instance record, which layout 1's writes require.
func setupLayout1(ctx context.Context, cli *clientv3.Client) (*capacityLayout, error) {
	r := rand.New(rand.NewPCG(7, 7))
	const base32 = "abcdefghijklmnopqrstuvwxyz234567"
	idb := make([]byte, 26)
	for i := range idb {
		idb[i] = base32[r.IntN(32)]
	}
	id := string(idb)
	now := time.Now().UTC().Format(time.RFC3339)
	rec := `{"id":"` + id + `","url":"https://capacity.atlassian.net","jiraVersion":"1001.0.0","addinVersion":"1.0.0",` +
		`"deploymentType":"Cloud","createdAt":"` + now + `","updatedAt":"` + now + `"}`
	if _, err := cli.Put(ctx, layoutv1.InstanceKey(capacityPrefix, id), rec); err != nil {
		return nil, fmt.Errorf("write the instance record: %w", err)
	}
	return &capacityLayout{
		write: func(ctx context.Context, m store.Mapping) error {
			ctx, cancel := context.WithTimeout(ctx, opTimeout)
			defer cancel()
			return layoutv1.Link(ctx, cli, capacityPrefix, id, m)
		},
		lookup: func(ctx context.Context, conv string) ([]store.Mapping, error) {
			ctx, cancel := context.WithTimeout(ctx, opTimeout)
			defer cancel()
			return layoutv1.ByConversation(ctx, cli, capacityPrefix, id, conv, 100)
		},
		close: func() {},
	}, nil
}

// setupLayout2 runs a store (migrated, its cache synced) and registers a
// tenant, as a relay does.
// setupLayout2 is the current layout, its values sealed with keys when not
// nil.
func setupLayout2(keys *seal.Keyring) func(context.Context, *clientv3.Client) (*capacityLayout, error) {
	return func(ctx context.Context, cli *clientv3.Client) (*capacityLayout, error) {
		return setupStore(ctx, cli, keys)
	}
}

func setupStore(ctx context.Context, cli *clientv3.Client, keys *seal.Keyring) (*capacityLayout, error) {
	st, err := store.New(cli, cli, store.Options{Prefix: capacityPrefix, Lease: cli, Keys: keys})
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx, nil); err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { st.Run(runCtx); close(done) }()
	closeFn := func() { stop(); <-done }
	select {
	case <-st.Synced():
	case <-ctx.Done():
		closeFn()
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		closeFn()
		return nil, errors.New("the store's cache did not sync within 30 s")
	}
	reg, err := st.Register(ctx, store.NewInstance{URL: "https://capacity.atlassian.net", JiraVersion: "1001.0.0", AddinVersion: "1.0.0"})
	if err != nil {
		closeFn()
		return nil, err
	}
	id := reg.Instance.ID
	return &capacityLayout{
		write: func(ctx context.Context, m store.Mapping) error {
			_, _, err := st.LinkMapping(ctx, id, m)
			return err
		},
		lookup: func(ctx context.Context, conv string) ([]store.Mapping, error) {
			ms, _, err := st.Mappings(ctx, id, store.MappingQuery{By: store.ByConversation, Value: conv})
			return ms, err
		},
		close: closeFn,
	}, nil
}

// sumPrefix counts the keys under p and their bytes (key + value), in
// pages.
func sumPrefix(ctx context.Context, cli *clientv3.Client, p string) (keys, bytes int64, err error) {
	from, end := p, clientv3.GetPrefixRangeEnd(p)
	for {
		resp, err := cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(1000))
		if err != nil {
			return 0, 0, fmt.Errorf("range %s: %w", p, err)
		}
		for _, kv := range resp.Kvs {
			keys++
			bytes += int64(len(kv.Key) + len(kv.Value))
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return keys, bytes, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// settledStatus reads the member's database size in use and on disk once
// two reads 250 ms apart agree: etcd commits its write batches every
// 100 ms, and the sizes move with the commit.
func settledStatus(ctx context.Context, cli *clientv3.Client, endpoint string) (inUse, size int64, err error) {
	deadline := time.Now().Add(10 * time.Second)
	prevUse, prevSize := int64(-1), int64(-1)
	for {
		sctx, cancel := context.WithTimeout(ctx, opTimeout)
		st, err := cli.Status(sctx, endpoint)
		cancel()
		if err != nil {
			return 0, 0, fmt.Errorf("etcd status: %w", err)
		}
		if st.DbSizeInUse == prevUse && st.DbSize == prevSize || time.Now().After(deadline) {
			return st.DbSizeInUse, st.DbSize, nil
		}
		prevUse, prevSize = st.DbSizeInUse, st.DbSize
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// writeAll writes every mapping with n writers and returns the wall time
// and the latencies. The first error stops the writers.
func writeAll(ctx context.Context, n int, ms []store.Mapping, write func(context.Context, store.Mapping) error) (float64, *Histogram, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var first error
	hists := make([]Histogram, n)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range n {
		wg.Go(func() {
			h := &hists[w]
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(ms)) {
					return
				}
				t0 := time.Now()
				if err := write(ctx, ms[i]); err != nil {
					once.Do(func() { first = fmt.Errorf("write mapping %d: %w", i, err); cancel() })
					return
				}
				h.Record(time.Since(t0))
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	var all Histogram
	for i := range hists {
		all.Merge(&hists[i])
	}
	return secs, &all, first
}

type lookupResult struct {
	n, errors, found int64
	secs             float64
	hist             Histogram
	firstErr         error
}

// lookupFor looks conversations up at random with n readers for d (and at
// most count lookups when count > 0). A lookup that fails, or answers other
// than the conversation's mappings, is an error.
func lookupFor(ctx context.Context, n int, d time.Duration, count int64, data *capacityIDs,
	lookup func(context.Context, string) ([]store.Mapping, error)) *lookupResult {
	var issued atomic.Int64
	type worker struct {
		n, errors, found int64
		hist             Histogram
		err              error
	}
	ws := make([]worker, n)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := range n {
		wg.Go(func() {
			me := &ws[w]
			r := rand.New(rand.NewPCG(uint64(w)+1, 0x5eed))
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if count > 0 && issued.Add(1) > count {
					return
				}
				c := r.IntN(len(data.convs))
				conv := data.convs[c]
				t0 := time.Now()
				ms, err := lookup(ctx, conv)
				me.hist.Record(time.Since(t0))
				me.n++
				if err == nil && len(ms) != data.perConv[c] {
					err = fmt.Errorf("conversation %d: %d mappings, want %d", c, len(ms), data.perConv[c])
				}
				for i := 0; err == nil && i < len(ms); i++ {
					if ms[i].ConversationID != conv {
						err = fmt.Errorf("conversation %d: a mapping of another conversation", c)
					}
				}
				if err != nil {
					me.errors++
					if me.err == nil {
						me.err = err
					}
					continue
				}
				me.found += int64(len(ms))
			}
		})
	}
	wg.Wait()
	res := &lookupResult{secs: time.Since(start).Seconds()}
	for i := range ws {
		res.n += ws[i].n
		res.errors += ws[i].errors
		res.found += ws[i].found
		res.hist.Merge(&ws[i].hist)
		if res.firstErr == nil {
			res.firstErr = ws[i].err
		}
	}
	return res
}

// capacityIDs are the generated mappings and their conversations.
type capacityIDs struct {
	ms      []store.Mapping
	convs   []string
	perConv []int // mappings of each conversation
}

// capacityData makes n mappings with ids shaped like the real ones:
// Outlook conversation ids of 150 characters (base64 with + / =), Exchange
// Online internet message ids of 85, Jira Cloud account ids of 43, issue
// ids of 5 digits, keys PROJ-1000…; each conversation of perConv mappings
// (messages of the thread, linked by any of the users) on one issue.
func capacityData(n, users, issues, perConv int, seed uint64) *capacityIDs {
	r := rand.New(rand.NewPCG(seed, 0xca9ac17))
	hexUp := func(k int) string {
		const digits = "0123456789ABCDEF"
		b := make([]byte, k)
		for i := range b {
			b[i] = digits[r.IntN(16)]
		}
		return string(b)
	}
	userIDs := make([]string, users)
	for i := range userIDs {
		var u [16]byte
		binary.BigEndian.PutUint64(u[:8], r.Uint64())
		binary.BigEndian.PutUint64(u[8:], r.Uint64())
		u[6] = u[6]&0x0f | 0x40
		u[8] = u[8]&0x3f | 0x80
		h := fmt.Sprintf("%x", u)
		userIDs[i] = "557058:" + h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	}
	type issue struct{ id, key string }
	is := make([]issue, issues)
	for i, v := range r.Perm(90_000)[:issues] {
		is[i] = issue{id: strconv.Itoa(10_000 + v), key: "PROJ-" + strconv.Itoa(1000+i)}
	}
	servers := make([]string, 20)
	for i := range servers {
		servers[i] = fmt.Sprintf("AM6PR04MB%04d", r.IntN(10_000))
	}
	nc := (n + perConv - 1) / perConv
	out := &capacityIDs{ms: make([]store.Mapping, 0, n), convs: make([]string, nc), perConv: make([]int, nc)}
	convIssue := make([]int, nc)
	for c := range out.convs {
		raw := make([]byte, 107) // 144 characters of base64, the last "="
		for i := range raw {
			raw[i] = byte(r.Uint32())
		}
		out.convs[c] = "AAQkAD" + base64.StdEncoding.EncodeToString(raw)
		convIssue[c] = r.IntN(issues)
	}
	for i := range n {
		c := i / perConv
		srv := servers[r.IntN(len(servers))]
		iss := is[convIssue[c]]
		out.ms = append(out.ms, store.Mapping{
			ConversationID: out.convs[c],
			MailID:         "<" + srv + hexUp(30) + "@" + srv + ".eurprd04.prod.outlook.com>",
			UserID:         userIDs[r.IntN(users)],
			App:            "outlook",
			Jira:           store.JiraRef{ID: iss.id, Key: iss.key, ProjectID: "10000"},
		})
		out.perConv[c]++
	}
	return out
}

// WriteJSON writes the report, indented, to path.
func (r *CapacityReport) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WriteTable prints the layouts side by side, with the targets and their
// verdicts (the current layout).
func (r *CapacityReport) WriteTable(out io.Writer) {
	s := r.Settings
	fmt.Fprintf(out, "scenario capacity · %s mappings per layout (%s conversations, %d users, %d issues) · %d writers · %d readers × %s · %s · %d CPUs · load %s\n",
		thousands(int64(s.Mappings)), thousands(int64(s.Conversations)), s.Users, s.Issues, s.Writers, s.Readers, s.LookupDuration,
		s.Etcd, r.Machine.CPUs, strings.Join(r.Machine.LoadAvg, " → "))
	fmt.Fprintf(out, "ids: conversation %d B, mail %d B, user %d B, issue id 5 digits, key PROJ-1234, project 10000, app outlook\n",
		s.ConversationLen, s.MailLen, s.UserLen)
	if r.Interrupted {
		fmt.Fprintln(out, "INTERRUPTED: figures below cover only what ran")
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, l := range r.Layouts {
		fmt.Fprintf(tw, "%s\t", l.Name)
	}
	ratio := len(r.Layouts) >= 2
	if ratio {
		fmt.Fprint(tw, "3 / 1\t")
	}
	sealedRatio := len(r.Layouts) == 3
	if sealedRatio {
		fmt.Fprint(tw, "sealed / 3\t")
	}
	fmt.Fprintln(tw, "target (layout 3)\t")
	row := func(name string, f func(LayoutCapacity) float64, format func(float64) string, showRatio bool, target string) {
		fmt.Fprintf(tw, "%s\t", name)
		for _, l := range r.Layouts {
			fmt.Fprintf(tw, "%s\t", format(f(l)))
		}
		if ratio {
			if a := f(r.Layouts[0]); showRatio && a != 0 {
				fmt.Fprintf(tw, "%.3f\t", f(r.Layouts[1])/a)
			} else {
				fmt.Fprint(tw, "\t")
			}
		}
		if sealedRatio {
			if a := f(r.Layouts[1]); showRatio && a != 0 {
				fmt.Fprintf(tw, "%.3f\t", f(r.Layouts[2])/a)
			} else {
				fmt.Fprint(tw, "\t")
			}
		}
		fmt.Fprintf(tw, "%s\t\n", target)
	}
	whole := func(v float64) string { return thousands(int64(v + 0.5)) }
	two := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	ms3 := func(v float64) string { return fmt.Sprintf("%.3f", v) }
	tgt := func(key, text string) string {
		if v := r.Verdicts[key]; v != "" {
			return text + ": " + v
		}
		return text
	}
	row("keys per mapping", func(l LayoutCapacity) float64 { return l.KeysPerMapping }, two, true, "")
	row("key+value B per mapping", func(l LayoutCapacity) float64 { return l.KVBytesPerMapping }, whole, true, "")
	row("DB in use B per mapping", func(l LayoutCapacity) float64 { return l.InUsePerMapping }, whole, true, tgt("inUsePerMapping", "≤ 1,200"))
	row("DB size B per mapping", func(l LayoutCapacity) float64 { return l.DBSizePerMapping }, whole, true, "")
	row("writes/s", func(l LayoutCapacity) float64 { return l.WritesPerSec }, whole, true, tgt("writesPerSec", "≥ 2,000")+"; "+tgt("sealedWrites", "sealed ≥ 0.85 × layout 3 (median of the rounds)"))
	row("write p50 ms", func(l LayoutCapacity) float64 { return l.WriteLatency.P50 }, ms3, true, "")
	row("write p99 ms", func(l LayoutCapacity) float64 { return l.WriteLatency.P99 }, ms3, true, "")
	row("lookups/s by conversation", func(l LayoutCapacity) float64 { return l.LookupsPerSec }, whole, true, tgt("lookupsPerSec", "≥ 10,000")+"; "+tgt("sealedLookups", "sealed ≥ 0.85 × layout 3 (median of the rounds)"))
	row("lookup p50 ms", func(l LayoutCapacity) float64 { return l.LookupLatency.P50 }, ms3, true, "")
	row("lookup p99 ms", func(l LayoutCapacity) float64 { return l.LookupLatency.P99 }, ms3, true, "")
	row("mappings per lookup", func(l LayoutCapacity) float64 { return l.MappingsPerLookup }, two, false, "")
	row("lookups", func(l LayoutCapacity) float64 { return float64(l.Lookups) }, whole, false, "")
	row("lookups failed or wrong", func(l LayoutCapacity) float64 { return float64(l.LookupErrors) }, whole, false, "")
	row("mappings in 2 GiB (in use)", func(l LayoutCapacity) float64 { return float64(l.Fit2GiB) }, whole, true, "")
	row("mappings in 8 GiB (in use)", func(l LayoutCapacity) float64 { return float64(l.Fit8GiB) }, whole, true, "")
	tw.Flush()
	if len(r.SealedRounds) > 0 {
		fmt.Fprintf(out, "sealed / plaintext, round by round (the columns above are the median round's):\n")
		for i, sr := range r.SealedRounds {
			order := "plaintext first"
			if sr.SealedFirst {
				order = "sealed first"
			}
			fmt.Fprintf(out, "  round %d (%s): writes/s %s → %s = %.3f; lookups/s %s → %s = %.3f\n", i+1, order,
				thousands(int64(sr.PlainWritesPerSec+0.5)), thousands(int64(sr.SealedWritesPerSec+0.5)), sr.WritesRatio,
				thousands(int64(sr.PlainLookupsPerSec+0.5)), thousands(int64(sr.SealedLookupsPerSec+0.5)), sr.LookupsRatio)
		}
		fmt.Fprintf(out, "  median: writes %.3f (%s), lookups %.3f (%s); target ≥ %.2f\n", r.SealedWritesRatio, r.Verdicts["sealedWrites"],
			r.SealedLookupsRatio, r.Verdicts["sealedLookups"], TargetSealedRatio)
	}
	for _, n := range r.Notes {
		fmt.Fprintln(out, "note:", n)
	}
}

// thousands writes n with commas between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// SealedRound is one round of the current layout, plaintext and sealed
// measured back to back.
type SealedRound struct {
	SealedFirst         bool    `json:"sealedFirst"`
	PlainWritesPerSec   float64 `json:"plainWritesPerSec"`
	SealedWritesPerSec  float64 `json:"sealedWritesPerSec"`
	WritesRatio         float64 `json:"writesRatio"`
	PlainLookupsPerSec  float64 `json:"plainLookupsPerSec"`
	SealedLookupsPerSec float64 `json:"sealedLookupsPerSec"`
	LookupsRatio        float64 `json:"lookupsRatio"`
}

// medianIndex is the index of the element whose key is the median (the
// lower middle for an even count).
func medianIndex(ls []*LayoutCapacity, key func(*LayoutCapacity) float64) int {
	idx := make([]int, len(ls))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(key(ls[a]), key(ls[b])) })
	return idx[(len(idx)-1)/2]
}
