package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/store"
)

// BenchmarkRekeyTenant re-keys a tenant of 5,000 mappings and 50 users
// from unkeyed tokens to keyed ones (what relay encryption rewrite does
// to a store written before encryption), on the embedded etcd; it reports
// the copy's rate and how long the tenant's writes were held.
//
//	go test ./store -run '^$' -bench RekeyTenant -benchtime 3x
func BenchmarkRekeyTenant(b *testing.B) {
	cli, p := etcdtest.Shared(b)
	ctx := context.Background()
	plain, err := store.New(cli, cli, store.Options{Prefix: p, Lease: cli})
	if err != nil {
		b.Fatal(err)
	}
	const mappings, users = 5000, 50
	var copied, hold, total time.Duration
	keys := 0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		reg, err := plain.Register(ctx, store.NewInstance{URL: fmt.Sprintf("https://rekey-bench-%d.atlassian.net", i), JiraVersion: "1", AddinVersion: "1"})
		if err != nil {
			b.Fatal(err)
		}
		id := reg.Instance.ID
		for u := range users {
			if _, _, err := plain.PutUser(ctx, id, store.User{UserID: fmt.Sprintf("557058:%036d", u), Name: "N", Email: "n@example.com"}); err != nil {
				b.Fatal(err)
			}
		}
		for m := range mappings {
			if _, _, err := plain.LinkMapping(ctx, id, mapping(fmt.Sprintf("AAQkADQ2YzY3ZDg3LTI1NzAtNDJlNy05YjY0LTA4ZDM2Yj/Y0YjY0NgAQAO+%d=", m/3),
				fmt.Sprintf("<%d@AM4PR0501MB2723.eurprd05.prod.outlook.com>", m), fmt.Sprintf("557058:%036d", m%users), fmt.Sprint(10000+m%500), fmt.Sprintf("PROJ-%d", m%500))); err != nil {
				b.Fatal(err)
			}
		}
		keyed, err := store.New(cli, cli, store.Options{Prefix: p, Lease: cli, Keys: keyFile(b, "k1")})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		rep, err := keyed.RekeyTenant(ctx, id, store.MoveOptions{Grace: time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		keys += rep.Copied
		total += rep.Total
		hold += rep.Hold
		copied += rep.Total - rep.Hold
	}
	b.ReportMetric(float64(keys)/total.Seconds(), "source-keys/s")
	b.ReportMetric(float64(hold.Microseconds())/1000/float64(b.N), "hold-ms")
	b.ReportMetric(total.Seconds()/float64(b.N), "s/tenant")
}
