package fleet

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/jira-relay/jira-relay/store"
)

// The directories of the fleet's keys, under the relay's etcd prefix.
const (
	Dir          = "fleet/"
	MembersDir   = Dir + "members/"
	CooldownsDir = Dir + "cooldowns/"
)

// Scope is what a cool-down holds back, as Jira scopes its rate limits.
type Scope uint8

// The scopes, narrowest last.
const (
	ScopeGlobal   Scope = iota // every tenant: the app's global quota
	ScopeTenant                // one tenant: the app's quota in it
	ScopeEndpoint              // one tenant's endpoint and method: the burst limit
	ScopeIssue                 // one issue: the per-issue write limit
	numScopes
)

// String is the scope's name, the first element of its key and the scope
// label of relay_fleet_cooldowns.
func (s Scope) String() string {
	switch s {
	case ScopeGlobal:
		return "global"
	case ScopeTenant:
		return "tenant"
	case ScopeEndpoint:
		return "endpoint"
	case ScopeIssue:
		return "issue"
	}
	return "unknown"
}

// Jira's RateLimit-Reason values (developer.atlassian.com, "Rate limiting").
const (
	ReasonBurst       = "jira-burst-based"
	ReasonPerIssue    = "jira-per-issue-on-write"
	ReasonTenantQuota = "jira-quota-tenant-based"
	ReasonGlobalQuota = "jira-quota-global-based"
)

// ScopeOf is the scope a 429 with RateLimit-Reason reason holds back: the
// issue for the per-issue write limit (when the request names one), the
// tenant or everything for the points quotas, and the endpoint and method
// for the burst limit, no reason or a reason unknown to the relay.
func ScopeOf(reason string, hasIssue bool) Scope {
	switch reason {
	case ReasonPerIssue:
		if hasIssue {
			return ScopeIssue
		}
	case ReasonTenantQuota:
		return ScopeTenant
	case ReasonGlobalQuota:
		return ScopeGlobal
	}
	return ScopeEndpoint
}

// Endpoint is one of the Jira endpoints and methods the relay calls.
type Endpoint uint8

// The endpoints.
const (
	Upload   Endpoint = iota // POST /rest/api/3/issue/{issue}/attachments
	Download                 // GET /rest/api/3/attachment/content/{id}
)

func (e Endpoint) String() string {
	if e == Download {
		return "download"
	}
	return "upload"
}

// appendKey appends the key of a scope (below CooldownsDir) to dst:
// "global", "tenant/<instance id>", "endpoint/<instance id>/upload|download"
// or "issue/<instance id>/<issue id or key>".
func appendKey(dst []byte, s Scope, instanceID string, ep Endpoint, issue string) []byte {
	dst = append(dst, s.String()...)
	if s == ScopeGlobal {
		return dst
	}
	dst = append(append(dst, '/'), instanceID...)
	switch s {
	case ScopeEndpoint:
		dst = append(append(dst, '/'), ep.String()...)
	case ScopeIssue:
		dst = append(append(dst, '/'), issue...)
	}
	return dst
}

// ScopeKey is the key of a scope below CooldownsDir, as appendKey makes it.
func ScopeKey(s Scope, instanceID string, ep Endpoint, issue string) string {
	return string(appendKey(nil, s, instanceID, ep, issue))
}

var errBadKey = errors.New("not a cool-down key the relay writes")

// parseKey checks a key below CooldownsDir and returns its scope.
func parseKey(k string) (Scope, error) {
	parts := strings.Split(k, "/")
	switch {
	case len(parts) == 1 && parts[0] == "global":
		return ScopeGlobal, nil
	case len(parts) < 2 || !store.ValidInstanceID(parts[1]):
		return 0, errBadKey
	case len(parts) == 2 && parts[0] == "tenant":
		return ScopeTenant, nil
	case len(parts) == 3 && parts[0] == "endpoint" && (parts[2] == "upload" || parts[2] == "download"):
		return ScopeEndpoint, nil
	case len(parts) == 3 && parts[0] == "issue" && store.ValidIssueIDOrKey(parts[2]):
		return ScopeIssue, nil
	}
	return 0, errBadKey
}

// record is the value of a cool-down key: when it ends, why, which relay
// saw Jira's 429 and when it wrote the key (for operators, and so that the
// fleet writes a scope at most once a second).
type record struct {
	Until   time.Time `json:"until"`
	Reason  string    `json:"reason,omitempty"`
	Relay   string    `json:"relay,omitempty"`
	Written time.Time `json:"written,omitzero"`
}

// parseRecord reads a cool-down value; a reason that is not a plain token
// is dropped, never passed on to callers.
func parseRecord(v []byte) (record, error) {
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return record{}, err
	}
	if r.Until.IsZero() {
		return record{}, errors.New(`no "until"`)
	}
	r.Reason = CleanReason(r.Reason)
	return r, nil
}

// CleanReason returns Jira's RateLimit-Reason if it is a plain token (at
// most 64 characters of a-z, 0-9 and "-"), else "": only such a value is
// kept, shared and passed back to callers.
func CleanReason(v string) string {
	if len(v) == 0 || len(v) > 64 {
		return ""
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return ""
		}
	}
	return v
}

// member is the value of a member key.
type member struct {
	ID      string    `json:"id"`
	Addr    string    `json:"addr,omitempty"`
	Version string    `json:"version,omitempty"`
	Started time.Time `json:"started"`
}
