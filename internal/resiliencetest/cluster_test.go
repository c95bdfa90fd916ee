package resiliencetest

// etcd faults: a relay over a three-member cluster while members die and
// come back. With one member down every API works; with two down the store
// APIs answer 503 store_unavailable while uploads for known instances keep
// streaming; when they come back everything recovers by itself. Every write
// the relay acknowledged (2xx) during the whole test must be there at the
// end, also for a relay started afresh on the same data.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ledger keeps every write sent to the relay and whether it was
// acknowledged. Users and mappings are written once each under fresh ids, so
// an acknowledged one must be found exactly; configuration documents are
// overwritten, so the document found must be the last acknowledged one or
// one attempted after it (a write that timed out may still have been applied).
type ledger struct {
	mu       sync.Mutex
	users    []ackUser
	mappings []ackMapping
	tenants  []tenant
	configs  map[string]*configTrail // by instance id
	acked    int
	refused  map[string]int // "<status> <code>" of writes not acknowledged
}

type ackUser struct {
	tn              tenant
	id, name, email string
}

type ackMapping struct {
	tn                  tenant
	conv, mail, user    string
	issueID, issueKey   string
	acknowledgedByPhase string
}

type configTrail struct {
	lastAcked string   // compact JSON
	after     []string // attempted since the last acknowledgement
}

func newLedger() *ledger {
	return &ledger{configs: map[string]*configTrail{}, refused: map[string]int{}}
}

func (l *ledger) note(res answer) bool {
	ok := res.Err == nil && res.Status >= 200 && res.Status < 300
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok {
		l.acked++
	} else {
		code, _ := res.RelayError()
		key := fmt.Sprintf("%d %s", res.Status, code)
		if res.Err != nil {
			key = "transport error"
		}
		l.refused[key]++
	}
	return ok
}

// clusterRig is the relay, its cluster, the fake Jira and the ledger.
type clusterRig struct {
	t       *testing.T
	cluster *etcdtest.Cluster
	admin   *clientv3.Client // for member status, not used by the relay
	relay   *relaytest.Relay
	api     *api
	jira    *fakejira.Server
	known   tenant // registered at the start, uploads go to its fake Jira
	led     *ledger
	seq     atomic.Int64
	uploads atomic.Int64
}

func (c *clusterRig) next() int64 { return c.seq.Add(1) }

func (c *clusterRig) putUser(tn tenant, phase string) answer {
	res, _ := c.putUserID(tn, phase)
	return res
}

func (c *clusterRig) putUserID(tn tenant, phase string) (answer, string) {
	n := c.next()
	u := ackUser{tn: tn, id: fmt.Sprintf("u-%s-%d", phase, n), name: fmt.Sprintf("User %d", n), email: fmt.Sprintf("user%d@example.com", n)}
	res := c.api.Do("PUT", "/v1/instances/"+tn.ID+"/users/"+u.id, tn.Client, map[string]any{"name": u.name, "email": u.email})
	if c.led.note(res) {
		c.led.mu.Lock()
		c.led.users = append(c.led.users, u)
		c.led.mu.Unlock()
	}
	return res, u.id
}

func (c *clusterRig) linkMapping(tn tenant, phase string) answer {
	n := c.next()
	m := ackMapping{tn: tn, conv: fmt.Sprintf("conv-%s-%d", phase, n%7), mail: fmt.Sprintf("<m-%s-%d@example.com>", phase, n),
		user: fmt.Sprintf("u-%s", phase), issueID: fmt.Sprint(10000 + n), issueKey: fmt.Sprintf("RES-%d", n), acknowledgedByPhase: phase}
	res := c.api.Do("POST", "/v1/instances/"+tn.ID+"/mappings", tn.Client, relaytest.MappingBody(m.conv, m.mail, m.user, m.issueID, m.issueKey))
	if c.led.note(res) {
		c.led.mu.Lock()
		c.led.mappings = append(c.led.mappings, m)
		c.led.mu.Unlock()
	}
	return res
}

func (c *clusterRig) putConfig(tn tenant, phase string) answer {
	doc := fmt.Sprintf(`{"phase":%q,"seq":%d}`, phase, c.next())
	res := c.api.Do("PUT", "/v1/instances/"+tn.ID+"/config", tn.Admin, doc)
	ok := c.led.note(res)
	c.led.mu.Lock()
	tr := c.led.configs[tn.ID]
	if tr == nil {
		tr = &configTrail{}
		c.led.configs[tn.ID] = tr
	}
	if ok {
		tr.lastAcked, tr.after = doc, nil
	} else {
		tr.after = append(tr.after, doc)
	}
	c.led.mu.Unlock()
	return res
}

func (c *clusterRig) register(host string) (tenant, answer) {
	tn, res := c.api.Register("https://" + host + ".atlassian.net")
	if c.led.note(res) {
		c.led.mu.Lock()
		c.led.tenants = append(c.led.tenants, tn)
		c.led.mu.Unlock()
	}
	return tn, res
}

// upload sends an upload to the known instance and checks it completed at Jira.
func (c *clusterRig) upload(what string) {
	t := c.t
	t.Helper()
	n := c.uploads.Add(1)
	name := fmt.Sprintf("cluster-%d.bin", n)
	data := content(96<<10, n)
	res := c.api.upload(c.known, fmt.Sprintf("UP-%d", n), name, data, []string{kindRaw, kindBase64, kindMultipart}[n%3])
	if res.Err != nil || res.Status != 200 {
		t.Errorf("%s: upload: %s", what, res)
		return
	}
	ups := completedWith(c.jira, name)
	if len(ups) != 1 || ups[0].Size != int64(len(data)) || ups[0].SHA256 != relaytest.SHA256(data) {
		t.Errorf("%s: upload answered 200 but Jira holds %+v", what, ups)
	}
}

// everyAPIWorks runs each API once and wants every answer to be a success.
func (c *clusterRig) everyAPIWorks(phase string) {
	t := c.t
	t.Helper()
	want := func(what string, res answer, status ...int) {
		t.Helper()
		for _, s := range status {
			if res.Err == nil && res.Status == s {
				return
			}
		}
		t.Errorf("%s: %s: %s, want %v", phase, what, res, status)
	}
	tn, res := c.register("reg-" + phase)
	want("register", res, 201)
	if tn.ID == "" {
		tn = c.known
	}
	res, uid := c.putUserID(tn, phase)
	want("put user", res, 201)
	want("get user", c.api.Do("GET", "/v1/instances/"+tn.ID+"/users/"+uid, tn.Client, nil), 200)
	want("put config", c.putConfig(tn, phase), 200)
	cfg := c.api.Do("GET", "/v1/instances/"+tn.ID+"/config", tn.Client, nil)
	want("get config", cfg, 200)
	if etag := cfg.Header.Get("ETag"); etag != "" {
		want("get config If-None-Match", c.api.Do("GET", "/v1/instances/"+tn.ID+"/config", tn.Client, nil, "If-None-Match", etag), 304)
	}
	want("link mapping", c.linkMapping(tn, phase), 201)
	want("find mappings", c.api.Do("GET", "/v1/instances/"+tn.ID+"/mappings?conversationId=conv-"+phase+"-1", tn.Client, nil), 200)
	want("get instance", c.api.Do("GET", "/v1/instances/"+tn.ID, tn.Admin, nil), 200)
	want("readyz", c.api.Do("GET", "/readyz", "", nil), 200)
	c.upload(phase)
}

// leader is the index of the member the others follow, or -1.
func (c *clusterRig) leader() int {
	for i, m := range c.cluster.Members {
		if m.Etcd == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := c.admin.Status(ctx, m.Config.ClientURL)
		cancel()
		if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
			return i
		}
	}
	return -1
}

func (c *clusterRig) waitLeader(within time.Duration) int {
	l := -1
	relaytest.Eventually(within, func() bool { l = c.leader(); return l >= 0 })
	return l
}

// background writes users, mappings and configuration documents to the
// known instance until stop is closed.
func (c *clusterRig) background(stop <-chan struct{}, done *sync.WaitGroup) {
	defer done.Done()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(30 * time.Millisecond):
		}
		switch i % 3 {
		case 0:
			c.putUser(c.known, "bg")
		case 1:
			c.linkMapping(c.known, "bg")
		case 2:
			c.putConfig(c.known, "bg")
		}
	}
}

func TestEtcdClusterFaults(t *testing.T) {
	t.Parallel()
	cl := etcdtest.StartCluster(t, 3)
	admin := etcdtest.Client(t, cl.Endpoints()...)
	fj := relaytest.StartJira(t, fakejira.Options{})
	mutate := func(cfg *configs.Config) {
		relaxedLimits(cfg)
		cfg.EtcdRequestTimeout = 2 * time.Second
	}
	relay := relaytest.StartWithEtcd(t, etcdtest.Client(t, cl.Endpoints()...), mutate)
	c := &clusterRig{t: t, cluster: cl, admin: admin, relay: relay, api: newAPI(t, relay.URL), jira: fj, led: newLedger()}
	c.known = c.api.MustRegister(t, fj.URL())
	c.led.tenants = append(c.led.tenants, c.known)
	testStart := time.Now()

	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(1)
	go c.background(stop, &bg)
	stopBackground := sync.OnceFunc(func() { close(stop); bg.Wait() })
	defer stopBackground()

	c.everyAPIWorks("all-up")

	// One follower down: nothing may fail, not even once.
	l := c.waitLeader(10 * time.Second)
	if l < 0 {
		t.Fatal("no etcd leader")
	}
	follower := (l + 1) % 3
	cl.Stop(follower)
	t.Logf("stopped follower m%d (leader m%d)", follower, l)
	c.everyAPIWorks("follower-down")
	c.everyAPIWorks("follower-down-2")
	cl.Restart(follower)

	// The leader down: writes may wait for the election, then nothing fails.
	l = c.waitLeader(10 * time.Second)
	cl.Stop(l)
	killed := time.Now()
	var failover time.Duration
	if !relaytest.Eventually(20*time.Second, func() bool {
		res := c.putUser(c.known, "election")
		return res.Err == nil && res.Status == 201
	}) {
		t.Fatalf("writes did not resume within 20s of stopping the leader m%d", l)
	}
	failover = time.Since(killed)
	t.Logf("stopped leader m%d: writes resumed after %v", l, failover.Round(time.Millisecond))
	c.everyAPIWorks("leader-down")
	downFirst := l

	// A second member down: no quorum.
	second := -1
	for i, m := range cl.Members {
		if m.Etcd != nil && second < 0 {
			second = i
		}
	}
	cl.Stop(second)
	t.Logf("stopped m%d too: one member of three left", second)
	noQuorum := time.Now()
	c.storeUnavailable()
	t.Logf("no-quorum checks took %v", time.Since(noQuorum).Round(time.Millisecond))
	time.Sleep(time.Until(noQuorum.Add(5 * time.Second))) // the background writer keeps trying meanwhile

	// Both back (one at a time is enough: the survivor makes the quorum).
	cl.Restart(second)
	cl.Restart(downFirst)
	back := time.Now()
	if !relaytest.Eventually(60*time.Second, func() bool {
		res := c.putUser(c.known, "recovery")
		return res.Err == nil && res.Status == 201
	}) {
		t.Fatal("store APIs did not answer 2xx within 60s of the members coming back")
	}
	t.Logf("store APIs answered 2xx again %v after the members came back", time.Since(back).Round(time.Millisecond))
	if !relaytest.Eventually(30*time.Second, func() bool { return c.api.Do("GET", "/readyz", "", nil).Status == 200 }) {
		t.Error("readyz did not come back to 200")
	}
	c.everyAPIWorks("recovered")

	stopBackground()
	c.led.mu.Lock()
	t.Logf("writes acknowledged during %v: %d; not acknowledged: %v; uploads: %d",
		time.Since(testStart).Round(time.Second), c.led.acked, c.led.refused, c.uploads.Load())
	c.led.mu.Unlock()

	lost := c.verify(c.api, "the same relay")
	// A relay started afresh on the same data loses nothing either.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = relay.Server.Shutdown(sctx)
	cancel()
	if res := c.api.Do("GET", "/healthz", "", nil); res.Err == nil {
		t.Errorf("the stopped relay still answers: %s", res)
	}
	fresh := relaytest.StartWithEtcd(t, etcdtest.Client(t, cl.Endpoints()...), mutate)
	c.api = newAPI(t, fresh.URL)
	lost += c.verify(c.api, "a fresh relay")
	c.upload("fresh relay")
	t.Logf("acknowledged writes lost: %d", lost)
}

// storeUnavailable checks the relay without an etcd quorum: store APIs
// answer 503 store_unavailable in bounded time; what the cache serves
// (known instances' keys, configuration) keeps working, and so do uploads.
func (c *clusterRig) storeUnavailable() {
	t := c.t
	t.Helper()
	kn := c.known
	p := "/v1/instances/" + kn.ID
	checks := []struct {
		what string
		call func() answer
	}{
		{"register", func() answer { _, r := c.register("noquorum"); return r }},
		{"put user", func() answer { return c.putUser(kn, "noquorum") }},
		{"get user", func() answer { return c.api.Do("GET", p+"/users/u-all-up-1", kn.Client, nil) }},
		{"export user", func() answer { return c.api.Do("GET", p+"/users/u-bg/export", kn.Admin, nil) }},
		{"link mapping", func() answer { return c.linkMapping(kn, "noquorum") }},
		{"find mappings", func() answer { return c.api.Do("GET", p+"/mappings?conversationId=conv-bg-1", kn.Client, nil) }},
		{"unlink mapping", func() answer { return c.api.Do("DELETE", p+"/mappings?mailId=x&issueId=1", kn.Client, nil) }},
		{"put config", func() answer { return c.putConfig(kn, "noquorum") }},
		{"patch instance", func() answer { return c.api.Do("PATCH", p, kn.Admin, map[string]any{"addinVersion": "4.3.0"}) }},
		{"unknown instance", func() answer {
			return c.api.Do("GET", "/v1/instances/aaaaaaaaaaaaaaaaaaaaaaaaaa/config", kn.Client, nil)
		}},
		{"readyz", func() answer { return c.api.Do("GET", "/readyz", "", nil) }},
	}
	var wg sync.WaitGroup
	for _, ck := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			res := ck.call()
			took := time.Since(start)
			wantErr(t, "no quorum: "+ck.what, res, 503, "store_unavailable")
			if res.Status == 503 && res.Header.Get("Retry-After") == "" {
				t.Errorf("no quorum: %s: 503 without Retry-After", ck.what)
			}
			if took > 6*time.Second {
				t.Errorf("no quorum: %s took %v (request timeout 2s)", ck.what, took)
			}
		}()
	}
	// Served from the cache: keys of known instances, their configuration,
	// the instance record; and uploads and downloads, which need no etcd.
	for _, ck := range []struct {
		what   string
		res    answer
		status int
	}{
		{"get config (cached)", c.api.Do("GET", p+"/config", kn.Client, nil), 200},
		{"get instance (cached)", c.api.Do("GET", p, kn.Admin, nil), 200},
		{"healthz", c.api.Do("GET", "/healthz", "", nil), 200},
	} {
		if ck.res.Err != nil || ck.res.Status != ck.status {
			t.Errorf("no quorum: %s: %s, want %d", ck.what, ck.res, ck.status)
		}
	}
	id, sum := c.jira.AddAttachment("during.bin", "application/octet-stream", 200<<10, 42)
	if res := c.api.download(kn, id); res.Err != nil || res.Status != 200 || relaytest.SHA256(res.Body) != sum {
		t.Errorf("no quorum: download: %s", res)
	}
	for range 3 {
		c.upload("no quorum")
	}
	wg.Wait()
}

// verify reads every acknowledged write back through api; it returns how
// many are missing or wrong.
func (c *clusterRig) verify(a *api, through string) int {
	t := c.t
	t.Helper()
	l := c.led
	l.mu.Lock()
	defer l.mu.Unlock()
	lost := 0
	miss := func(format string, args ...any) {
		lost++
		if lost <= 20 {
			t.Errorf("through %s: acknowledged write lost: "+format, append([]any{through}, args...)...)
		}
	}
	for _, tn := range l.tenants {
		if res := a.Do("GET", "/v1/instances/"+tn.ID, tn.Admin, nil); res.Status != 200 {
			miss("instance %s: %s", tn.ID, res)
		}
	}
	for _, u := range l.users {
		res := a.Do("GET", "/v1/instances/"+u.tn.ID+"/users/"+url.PathEscape(u.id), u.tn.Client, nil)
		var got struct{ UserID, Name, Email string }
		if res.Status != 200 || json.Unmarshal(res.Body, &got) != nil || got.Name != u.name || got.Email != u.email {
			miss("user %s: %s", u.id, res)
		}
	}
	for _, m := range l.mappings {
		res := a.Do("GET", "/v1/instances/"+m.tn.ID+"/mappings?mailId="+url.QueryEscape(m.mail), m.tn.Client, nil)
		var page struct {
			Mappings []struct {
				ConversationID, MailID, UserID string
				Jira                           struct{ ID, Key string }
			}
		}
		found := false
		if res.Status == 200 && json.Unmarshal(res.Body, &page) == nil {
			for _, g := range page.Mappings {
				found = found || (g.ConversationID == m.conv && g.UserID == m.user && g.Jira.ID == m.issueID && g.Jira.Key == m.issueKey)
			}
		}
		if !found {
			miss("mapping %s (%s): %s", m.mail, m.acknowledgedByPhase, res)
		}
	}
	ids := make([]string, 0, len(l.configs))
	for id := range l.configs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		tr := l.configs[id]
		if tr.lastAcked == "" {
			continue
		}
		var tn tenant
		for _, x := range l.tenants {
			if x.ID == id {
				tn = x
			}
		}
		res := a.Do("GET", "/v1/instances/"+id+"/config", tn.Client, nil)
		ok := res.Status == 200 && string(res.Body) == tr.lastAcked
		for _, d := range tr.after {
			ok = ok || (res.Status == 200 && string(res.Body) == d)
		}
		if !ok {
			miss("config of %s: got %s, want %s or one of %d later attempts", id, res, tr.lastAcked, len(tr.after))
		}
	}
	t.Logf("through %s: checked %d instances, %d users, %d mappings, %d configurations: %d lost",
		through, len(l.tenants), len(l.users), len(l.mappings), len(ids), lost)
	return lost
}

// TestEtcdGone: the only etcd member stops for good. Store calls time out
// (--etcd-request-timeout 300ms) and answer 503 store_unavailable, on
// keep-alive connections whose next request follows at once; the cache
// keeps serving known instances, and uploads keep streaming.
func TestEtcdGone(t *testing.T) {
	t.Parallel()
	e, _ := etcdtest.Start(t)
	cli := etcdtest.Client(t, e.Endpoints()...)
	fj := relaytest.StartJira(t, fakejira.Options{})
	relay := relaytest.StartWithEtcd(t, cli, func(c *configs.Config) {
		relaxedLimits(c)
		c.EtcdRequestTimeout = 300 * time.Millisecond
	})
	a := newAPI(t, relay.URL)
	tn := a.MustRegister(t, fj.URL())
	p := "/v1/instances/" + tn.ID
	if res := a.Do("PUT", p+"/config", tn.Admin, `{"a":1}`); res.Status != 200 {
		t.Fatalf("config: %s", res)
	}
	e.Close()

	var wg sync.WaitGroup
	var unavailable, cached atomic.Int64
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newAPI(t, relay.URL) // one keep-alive connection per worker
			for i := range 8 {
				start := time.Now()
				var res answer
				switch i % 3 {
				case 0:
					res = c.Do("PUT", fmt.Sprintf("%s/users/w%d-%d", p, w, i), tn.Client, map[string]any{"name": "N", "email": "n@example.com"})
				case 1:
					res = c.Do("GET", p+"/mappings?conversationId=c", tn.Client, nil)
				case 2:
					res = c.Do("POST", p+"/mappings", tn.Client, relaytest.MappingBody("c", fmt.Sprintf("<w%d-%d@x>", w, i), "u", "1", "AB-1"))
				}
				wantErr(t, "etcd gone", res, 503, "store_unavailable")
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("etcd gone: answered after %v (request timeout 300ms)", d)
				}
				unavailable.Add(1)
				if res := c.Do("GET", p+"/config", tn.Client, nil); res.Status != 200 || string(res.Body) != `{"a":1}` {
					t.Errorf("etcd gone: cached config: %s", res)
				}
				cached.Add(1)
			}
		}()
	}
	for i := range 3 {
		name := fmt.Sprintf("gone-%d.bin", i)
		if res := a.upload(tn, fmt.Sprintf("GO-%d", i), name, content(64<<10, int64(i)), kindRaw); res.Status != 200 || len(completedWith(fj, name)) != 1 {
			t.Errorf("etcd gone: upload: %s", res)
		}
	}
	wg.Wait()
	t.Logf("etcd gone: %d store calls answered 503 store_unavailable, %d cached config reads answered 200, 3 uploads completed", unavailable.Load(), cached.Load())
}
