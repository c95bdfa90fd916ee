// Package bench is the load-test harness behind cmd/bench: it starts (or
// targets) a relay and a fake Jira, plays Outlook add-in traffic against the
// relay for a bounded time at a fixed concurrency (open loop or at a global
// request rate), and reports per-operation throughput, latency percentiles,
// errors by status, and the relay's peak RSS and CPU seconds as a table, JSON
// and a self-contained HTML page.
//
// One idea per file: scenario.go (presets and the run's Config), mix.go and
// sizes.go (the operation and size mixes), body.go (generated request
// bodies), histogram.go and stats.go (measurements), workload.go (workers and
// pacing), relayops.go and directops.go (what one request of each kind is),
// client.go (the HTTP client), setup.go (tenant, users, config, seeded
// mappings), process.go, env.go and procstat.go (subprocesses, the relay and
// fake Jira they make up, /proc sampling), report.go, report_table.go,
// report_json.go and report_html.go (the result and its views), compare.go
// (relay vs direct), progress.go (the live line), run.go (one whole run) and
// peers.go (the proxy comparison behind bench/peers/run.sh, in its plain,
// tls-upstream and tls-both modes) with certs.go (the test CA it makes).
// anchors.go is --scenario anchors (issue 13): the data API against its
// floor in one run, rounds interleaved: config 304s, relay vs nginx serving
// the same document as a static file (anchors_nginx.go, its template in
// anchors/nginx.conf, started as peers.go starts the proxies), and mapping
// writes and lookups, relay vs a bare etcd client loop doing the store's
// transactions on the relay's own embedded etcd, plus the same loop on an
// etcd member in the bench process for scale (anchors_floor.go); the CPU
// per request of each side next to its rate.
//
// TLS: Config.TLS makes the fake Jira serve HTTPS (the relay verifies it
// with --upstream-ca, the direct path with the same CA); Config.TLSFront
// (cmd/bench --tls --tls-front) makes the relay's front door serve HTTPS
// too, from a test CA made for the run, so that relay vs direct is measured
// with TLS on every hop, as the peers comparison's tls-both mode does.
package bench
