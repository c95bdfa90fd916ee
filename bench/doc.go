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
package bench
