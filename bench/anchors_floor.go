package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// floorTarget is the floor of the relay's mapping API: a bare etcd client
// loop, no HTTP and no JSON decoding, that does per operation what the
// store does for POST …/mappings and GET …/mappings?conversationId=, on
// the relay's own embedded etcd (reached over loopback gRPC at its
// --etcd-listen, over floorConns connections).
//
// A write is the store's LinkMapping transaction for a new mapping (no
// retention, the plaintext layout, store/mappings.go): if the tenant's
// marker exists and the record does not, put the record (the mapping's
// JSON) and its four index entries (keys only), else read the marker's
// count and the record. A lookup is the store's Mappings by conversation:
// a keys-only range of the conversation's index (limit 100, the API's
// default page), then the records the entries name in one transaction at
// the index's revision. The keys are the layout's (store/keys.go,
// docs/key-layout.md), built here from the exported store.Token and
// store.EscapeSegment; check verifies them against what the relay wrote.
// Left out, as the floor's due: the relay's tenant lookup (a cache hit),
// its mapping quota's count (one count-only range per tenant every 10 s)
// and the decoding of the records it reads.
type floorTarget struct {
	label      string          // "etcd floor", "etcd floor in-process"
	member     *store.Embedded // the in-process floor's etcd member
	clis       []*clientv3.Client
	kvs        []clientv3.KV
	kv         clientv3.KV // kvs[0]
	p          string      // P d/<dataId>/
	users      []string
	writeConvs []string // conversations the writes go to
	readConvs  []string // conversations seeded with mappings, for lookups
	runID      string
	timeout    time.Duration
	seq        atomic.Int64
}

// floorConns is how many gRPC connections (clients) the floor spreads its
// workers over, round-robin: of 1, 4 and 16 on the 2-core machine of
// BENCHMARKS.md, 4 gave the floor the most operations per second (1: a
// single HTTP/2 connection's writer is the bottleneck; 16: more CPU per
// operation).
const floorConns = 4

// newFloor connects floorConns clients to the relay's etcd at etcdURL and
// finds the tenant's data prefix in its instance record under prefix (the
// relay's --etcd-prefix). A tenant with keyed tokens (an --encryption-key-file) or
// on a shard is refused: the floor builds the plaintext layout's keys.
func newFloor(ctx context.Context, etcdURL, prefix string, t *Tenant, writeConvs []string, timeout time.Duration) (*floorTarget, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdURL}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd floor: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := cli.Get(cctx, prefix+"instances/"+t.ID+"/instance")
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd floor: the instance record of %s: %w", t.ID, err)
	}
	if len(resp.Kvs) == 0 {
		cli.Close()
		return nil, fmt.Errorf("etcd floor: no instance record of %s under %s", t.ID, prefix)
	}
	var rec struct {
		DataID string `json:"dataId"`
		Shard  string `json:"shard"`
		Tokens string `json:"tokens"`
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil || rec.DataID == "" {
		cli.Close()
		return nil, fmt.Errorf("etcd floor: the instance record of %s has no data id (%v)", t.ID, err)
	}
	if rec.Shard != "" || (rec.Tokens != "" && rec.Tokens != store.TokensUnkeyed) {
		cli.Close()
		return nil, fmt.Errorf("--scenario anchors: the etcd floor builds the plaintext layout's keys on the relay's own etcd; "+
			"this tenant has tokens %q on shard %q (a --relay-flag with --encryption-key-file or --etcd-shards?)", rec.Tokens, rec.Shard)
	}
	f := &floorTarget{label: "etcd floor", clis: []*clientv3.Client{cli}, kvs: []clientv3.KV{clientv3.NewKV(cli)}, p: prefix + "d/" + rec.DataID + "/", users: t.Users,
		writeConvs: writeConvs, readConvs: t.Convs, runID: t.RunID, timeout: timeout}
	f.kv = f.kvs[0]
	for len(f.clis) < floorConns {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdURL}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("etcd floor: %w", err)
		}
		f.clis, f.kvs = append(f.clis, c), append(f.kvs, clientv3.NewKV(c))
	}
	return f, nil
}

// Close ends the client.
func (f *floorTarget) Close() {
	for _, c := range f.clis {
		c.Close()
	}
	if f.member != nil {
		f.member.Close()
	}
}

// Name implements Target.
func (f *floorTarget) Name() string { return f.label }

// Supports implements Target: mapping writes and lookups.
func (f *floorTarget) Supports(op Op) bool { return op == OpMapWrite || op == OpMapRead }

// Do implements Target.
func (f *floorTarget) Do(w *worker, op Op) (int64, string) {
	ctx, cancel := context.WithTimeout(w.ctx, f.timeout)
	defer cancel()
	var n int64
	var err error
	switch op {
	case OpMapWrite:
		s := f.seq.Add(1)
		m := floorMapping{conv: f.writeConvs[w.rnd.IntN(len(f.writeConvs))], user: f.users[w.rnd.IntN(len(f.users))],
			mail: "<f" + strconv.FormatInt(s, 10) + "." + f.runID + "@bench.example.com>", app: "outlook",
			issue: strconv.FormatInt(20000+s%100000, 10), key: "BENCH-" + strconv.FormatInt(1+s%100000, 10), project: "10000",
			created: time.Now().UTC().Truncate(time.Millisecond)}
		n, w.buf, err = f.write(ctx, f.kvs[w.id%len(f.kvs)], &m, w.buf)
	case OpMapRead:
		n, err = f.lookup(ctx, f.kvs[w.id%len(f.kvs)], f.readConvs[w.rnd.IntN(len(f.readConvs))])
	default:
		return 0, "unsupported"
	}
	if err != nil {
		if ctx.Err() != nil && w.ctx.Err() == nil {
			return 0, "timeout"
		}
		return 0, etcdKind(err)
	}
	return n, ""
}

func etcdKind(err error) string {
	s := err.Error()
	if len(s) > 60 {
		s = s[:60]
	}
	return "etcd: " + s
}

// floorMapping is one mapping as the floor writes it.
type floorMapping struct {
	conv, mail, user, app, issue, key, project string
	created                                    time.Time
}

// keys are the mapping's keys under the data prefix p, as the store's
// mappingKeys lists them: the record, then the entries by conversation,
// issue id, issue key and user.
func (m *floorMapping) keys(p string) [5]string {
	mail, user, issue := store.Token(m.mail), store.Token(m.user), store.EscapeSegment(m.issue)
	return [5]string{
		p + "m/" + mail + "/" + user + "/" + issue,
		p + "c/" + store.Token(m.conv) + "/" + user + "/" + mail + "/" + issue,
		p + "i/" + issue + "/" + user + "/" + mail,
		p + "k/" + store.EscapeSegment(m.key) + "/" + user + "/" + mail + "/" + issue,
		p + "u/" + user + "/" + mail + "/" + issue,
	}
}

// record appends the mapping's record to b: the bytes json.Marshal gives
// for a store.Mapping (its fields in order, HTML-safe escaping, the time in
// RFC 3339 with milliseconds), without encoding/json.
func (m *floorMapping) record(b []byte) []byte {
	b = append(b, `{"conversationId":`...)
	b = appendJSONString(b, m.conv)
	b = append(b, `,"mailId":`...)
	b = appendJSONString(b, m.mail)
	b = append(b, `,"userId":`...)
	b = appendJSONString(b, m.user)
	b = append(b, `,"app":`...)
	b = appendJSONString(b, m.app)
	b = append(b, `,"jira":{"id":`...)
	b = appendJSONString(b, m.issue)
	b = append(b, `,"key":`...)
	b = appendJSONString(b, m.key)
	b = append(b, `,"projectId":`...)
	b = appendJSONString(b, m.project)
	b = append(b, `},"createdAt":"`...)
	b = m.created.AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}

// appendJSONString appends s quoted as encoding/json quotes it: ", \ and
// control bytes escaped, and <, > and & as \u003c, \u003e, \u0026.
// Non-ASCII text (never in the bench's ids) goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// write is the store's transaction for a new mapping; it returns the bytes
// written (keys and values) and buf, reused for the record.
func (f *floorTarget) write(ctx context.Context, kv clientv3.KV, m *floorMapping, buf []byte) (int64, []byte, error) {
	ks := m.keys(f.p)
	buf = m.record(buf[:0])
	marker := f.p + "tenant"
	resp, err := kv.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(marker), ">", 0), clientv3.Compare(clientv3.CreateRevision(ks[0]), "=", 0)).
		Then(clientv3.OpPut(ks[0], string(buf)), clientv3.OpPut(ks[1], ""), clientv3.OpPut(ks[2], ""), clientv3.OpPut(ks[3], ""), clientv3.OpPut(ks[4], "")).
		Else(clientv3.OpGet(marker, clientv3.WithCountOnly()), clientv3.OpGet(ks[0])).Commit()
	if err != nil {
		return 0, buf, err
	}
	if !resp.Succeeded {
		return 0, buf, fmt.Errorf("mapping %s not created (marker count %d)", ks[0], resp.Responses[0].GetResponseRange().Count)
	}
	n := int64(len(buf))
	for _, k := range ks {
		n += int64(len(k))
	}
	return n, buf, nil
}

// lookup is the store's lookup by conversation: the index's keys (one
// page of 100), then the records they name in one transaction at the
// index's revision. It returns the bytes of the records read; none is an
// error (every conversation looked up has mappings).
func (f *floorTarget) lookup(ctx context.Context, kv clientv3.KV, conv string) (int64, error) {
	p := f.p + "c/" + store.Token(conv) + "/"
	resp, err := kv.Get(ctx, p, clientv3.WithRange(clientv3.GetPrefixRangeEnd(p)), clientv3.WithLimit(100), clientv3.WithKeysOnly())
	if err != nil {
		return 0, err
	}
	gets := make([]clientv3.Op, 0, len(resp.Kvs))
	for _, e := range resp.Kvs {
		// <user>/<mail>/<issue>: the record is m/<mail>/<user>/<issue>.
		rest := string(e.Key[len(p):])
		user, r, ok1 := strings.Cut(rest, "/")
		mail, issue, ok2 := strings.Cut(r, "/")
		if !ok1 || !ok2 {
			return 0, fmt.Errorf("index key %q is not <user>/<mail>/<issue>", rest)
		}
		gets = append(gets, clientv3.OpGet(f.p+"m/"+mail+"/"+user+"/"+issue, clientv3.WithRev(resp.Header.Revision)))
	}
	if len(gets) == 0 {
		return 0, fmt.Errorf("conversation %s: no index entry", p)
	}
	tr, err := kv.Txn(ctx).Then(gets...).Commit()
	if err != nil {
		return 0, err
	}
	var n, found int64
	for _, r := range tr.Responses {
		for _, e := range r.GetResponseRange().Kvs {
			n += int64(len(e.Value))
			found++
		}
	}
	if found == 0 {
		return 0, fmt.Errorf("conversation %s: no record", p)
	}
	return n, nil
}

// check verifies, before anything is measured, that the floor does what
// the store does: the keys it builds for a mapping the relay wrote (the
// first one Prepare seeded) are the keys the relay wrote, and its record
// for that mapping is the relay's byte for byte; a mapping the floor
// writes is found by the relay's API, by mail and by conversation; and a
// lookup of the floor finds the seeded conversation's two records.
func (f *floorTarget) check(ctx context.Context, relayE *Endpoint, t *Tenant) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	fail := func(format string, a ...any) (string, error) {
		return "", fmt.Errorf("etcd floor: "+format+" (the store's key layout or record changed? bench/anchors_floor.go builds them)", a...)
	}
	// Prepare's first mapping: mappingJSON(t, t.Convs[0], "seed-0", t.Users[0], 0).
	seed := floorMapping{conv: t.Convs[0], mail: "<seed-0." + t.RunID + "@bench.example.com>", user: t.Users[0], app: "outlook",
		issue: "10000", key: "BENCH-1", project: "10000"}
	ks := seed.keys(f.p)
	resp, err := f.kv.Get(cctx, ks[0])
	if err != nil {
		return "", fmt.Errorf("etcd floor: %w", err)
	}
	if len(resp.Kvs) != 1 {
		return fail("no record at %s for the relay's first seeded mapping", ks[0])
	}
	var stored struct {
		CreatedAt time.Time `json:"createdAt"`
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &stored); err != nil {
		return fail("the relay's record at %s: %v", ks[0], err)
	}
	seed.created = stored.CreatedAt
	if mine := seed.record(nil); !bytes.Equal(mine, resp.Kvs[0].Value) {
		return fail("the floor's record differs from the relay's:\n floor %s\n relay %s", mine, resp.Kvs[0].Value)
	}
	for _, k := range ks[1:] {
		r, err := f.kv.Get(cctx, k, clientv3.WithCountOnly())
		if err != nil {
			return "", fmt.Errorf("etcd floor: %w", err)
		}
		if r.Count != 1 {
			return fail("no index entry %s for the relay's first seeded mapping", k)
		}
	}
	// The store's Mappings by conversation finds 2 per seeded conversation.
	if n, err := f.lookup(cctx, f.kv, t.Convs[0]); err != nil || n == 0 {
		return fail("lookup of a seeded conversation: %v", err)
	}
	probe := floorMapping{conv: f.writeConvs[0], mail: "<f0." + t.RunID + "@bench.example.com>", user: t.Users[0], app: "outlook",
		issue: "20000", key: "BENCH-1", project: "10000", created: time.Now().UTC().Truncate(time.Millisecond)}
	if _, _, err := f.write(cctx, f.kv, &probe, nil); err != nil {
		return fail("probe write: %v", err)
	}
	for _, q := range []string{"mailId=" + url.QueryEscape(probe.mail), "conversationId=" + url.QueryEscape(probe.conv)} {
		var page struct {
			Mappings []store.Mapping `json:"mappings"`
		}
		if _, err := apiCall(relayE, "GET", "/v1/instances/"+url.PathEscape(t.ID)+"/mappings?"+q, t.ClientKey, nil, nil, &page, 200); err != nil {
			return "", fmt.Errorf("etcd floor: %w", err)
		}
		found := false
		for _, m := range page.Mappings {
			found = found || (m.MailID == probe.mail && m.UserID == probe.user && m.ConversationID == probe.conv &&
				m.Jira == store.JiraRef{ID: probe.issue, Key: probe.key, ProjectID: probe.project} && m.CreatedAt.Equal(probe.created))
		}
		if !found {
			return fail("the relay does not find the floor's mapping by %s (it found %d)", q[:strings.IndexByte(q, '=')], len(page.Mappings))
		}
	}
	return "the etcd floor builds the keys and the record bytes the relay wrote for a seeded mapping, " +
		"and the relay's API finds a mapping the floor wrote, by mail and by conversation", nil
}

// inProcessFloor is the floor as the relay reaches its etcd: an etcd member
// started in the bench process (in dir, fsync on, the relay's defaults:
// startCapacityMember), reached through the in-process client (v3client)
// as the relay reaches its embedded etcd, holding a copy of the tenant's
// data (every key under from's data prefix: the marker, users, seeded
// mappings), with from's keys, conversations and users. Not the issue's
// floor (that is from, on the relay's own etcd): it shows what the
// loopback gRPC hop costs the floor.
func inProcessFloor(ctx context.Context, dir string, from *floorTarget) (*floorTarget, error) {
	e, err := startCapacityMember(dir)
	if err != nil {
		return nil, fmt.Errorf("in-process etcd floor: %w", err)
	}
	cli := e.Client()
	f := &floorTarget{label: "etcd floor in-process", member: e, clis: []*clientv3.Client{cli}, kvs: []clientv3.KV{cli.KV}, kv: cli.KV, p: from.p,
		users: from.users, writeConvs: from.writeConvs, readConvs: from.readConvs, runID: from.runID, timeout: from.timeout}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := from.kv.Get(cctx, from.p, clientv3.WithPrefix())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("in-process etcd floor: reading the tenant's data: %w", err)
	}
	for i := 0; i < len(resp.Kvs); i += maxTxnOps {
		var ops []clientv3.Op
		for _, kv := range resp.Kvs[i:min(i+maxTxnOps, len(resp.Kvs))] {
			ops = append(ops, clientv3.OpPut(string(kv.Key), string(kv.Value)))
		}
		if _, err := f.kv.Txn(cctx).Then(ops...).Commit(); err != nil {
			f.Close()
			return nil, fmt.Errorf("in-process etcd floor: copying the tenant's data: %w", err)
		}
	}
	if _, err := f.lookup(cctx, f.kv, f.readConvs[0]); err != nil {
		f.Close()
		return nil, fmt.Errorf("in-process etcd floor: a lookup after the copy of %d keys: %w", len(resp.Kvs), err)
	}
	return f, nil
}

// maxTxnOps is etcd's default --max-txn-ops.
const maxTxnOps = 128
