// Package fleet makes the relays that share one etcd act as one service.
//
// Membership: each relay registers itself under P fleet/members/<relay id>
// on a lease of --fleet-ttl and watches the member list, so that a
// fleet-wide limit is divided among the members, as Envoy's
// local_cluster_rate_limit divides one bucket among the members of the
// local cluster (Share). A relay that loses etcd keeps its last known
// count (never below 1) and keeps serving.
//
// Cool-downs: when Jira answers 429, the relay that saw it cools the
// scope Jira named in RateLimit-Reason (one issue, one endpoint and method
// of a tenant, the tenant, or every tenant) and writes it as a key under
// P fleet/cooldowns/ on a lease that ends with the cool-down; every relay
// watches those keys and holds the same scope (Cooldowns). A scope is
// written at most once a second by a relay, never per request, and not at
// all when the fleet already holds it as long.
package fleet
