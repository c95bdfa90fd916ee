#!/usr/bin/env bash
# bench/peers/run.sh: the relay against nginx, HAProxy and Caddy.
#
# Installs the three proxies from Debian when missing, then runs
# `go run ./cmd/bench --peers bench/peers`: one fake Jira, the relay, and each
# proxy (configured from the templates beside this script) in front of the
# same fake Jira; the same upload load (the upload-64mib scenario: 64 MiB
# bodies, 4 at a time) goes straight at the fake Jira, through the relay's own
# route, and as Jira-style multipart POSTs to /rest/api/3/issue/KEY/attachments
# through each proxy, for ROUNDS interleaved rounds (order rotated each round);
# one table of medians follows. Every phase is bounded by --duration; every
# process and temp dir is removed at the end, also on Ctrl-C.
#
# MODE (default plain) is passed as --peers-mode: plain (HTTP on both hops),
# tls-upstream (the fake Jira serves HTTPS and every path verifies it against
# a test CA made for the run), tls-both (every front door serves HTTPS too),
# a comma list of them, or all: the modes run one after the other, one table
# each (--html FILE draws them as bars). HTTP/1.1 and keep-alive on every hop.
#
#   bench/peers/run.sh                                 # 5 rounds of 10 s per target
#   ROUNDS=3 bench/peers/run.sh --duration 5s --json peers.json
#   MODE=tls-both bench/peers/run.sh                   # TLS on both hops
#   MODE=all bench/peers/run.sh --html peers.html      # the three modes, charted
#   bench/peers/run.sh --peer-list nginx,caddy         # any bench flag passes through
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
for p in nginx haproxy caddy; do
	command -v "$p" >/dev/null 2>&1 || [ -x "/usr/sbin/$p" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "run.sh: installing ${missing[*]} from Debian" >&2
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y nginx haproxy caddy
fi

exec go run ./cmd/bench --peers bench/peers --peers-mode "${MODE:-plain}" --scenario upload-64mib --rounds "${ROUNDS:-5}" "$@"
