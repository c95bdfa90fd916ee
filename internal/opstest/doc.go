// Package opstest holds the tests of the relay's operations material, which
// is not Go: the operator runbook (docs/operations.md) run command by command
// with a real etcdctl against a relay's etcd; the OpenAPI document
// (docs/openapi.yaml) held against the router and against real answers; the
// Dockerfile, .dockerignore, docker-compose and Kubernetes manifests under
// deploy/ checked against the relay's settings; and the add-in's JavaScript
// client (clients/js) run under Node and in headless Chromium against a real
// relay and the fake Jira.
//
// External tools (etcdctl, etcdutl, node, chromium, clients/js/node_modules)
// are required when CI=true: a test that misses one fails with what to
// install. Elsewhere it skips.
package opstest
