package fakejira

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// FaultPath is the admin route (outside BasePath, with Options.Admin) that
// sets the fault over HTTP, for scripts and benchmarks that run the fake as
// a process: POST or PUT a JSON Fault sets it, GET returns the fault in
// force, DELETE clears it (204).
const FaultPath = "/_fakejira/fault"

// maxFaultJSON bounds a fault document.
const maxFaultJSON = 16 << 10

var endpointNames = [...]string{"any", "upload", "download", "other"}

// String is the endpoint's name: "any", "upload", "download" or "other".
func (e Endpoint) String() string {
	if e >= 0 && int(e) < len(endpointNames) {
		return endpointNames[e]
	}
	return "Endpoint(" + strconv.Itoa(int(e)) + ")"
}

// ParseFaultKind is the kind FaultKind.String names, e.g. "429".
func ParseFaultKind(s string) (FaultKind, error) {
	for i, n := range faultNames {
		if n == s {
			return FaultKind(i), nil
		}
	}
	return 0, fmt.Errorf("fakejira: unknown fault kind %q", s)
}

// ParseEndpoint is the endpoint Endpoint.String names; "" is EndpointAny.
func ParseEndpoint(s string) (Endpoint, error) {
	if s == "" {
		return EndpointAny, nil
	}
	for i, n := range endpointNames {
		if n == s {
			return Endpoint(i), nil
		}
	}
	return 0, fmt.Errorf("fakejira: unknown endpoint %q", s)
}

// faultJSON is a Fault on the wire: kinds and endpoints by name, the delay
// as a Go duration ("250ms").
type faultJSON struct {
	Kind       string `json:"kind"`
	Count      int    `json:"count,omitempty"`
	RetryAfter string `json:"retryAfter,omitempty"`
	Delay      string `json:"delay,omitempty"`
	AfterBytes int64  `json:"afterBytes,omitempty"`
	DripSize   int    `json:"dripSize,omitempty"`
	Endpoint   string `json:"endpoint,omitempty"`
	Host       string `json:"host,omitempty"`
	Issue      string `json:"issue,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// MarshalJSON writes f as FaultPath takes it, e.g.
// {"kind":"429","count":1,"retryAfter":"30","reason":"jira-per-issue-on-write","issue":"ABC-1"}.
func (f Fault) MarshalJSON() ([]byte, error) {
	j := faultJSON{Kind: f.Kind.String(), Count: f.Count, RetryAfter: f.RetryAfter, AfterBytes: f.AfterBytes,
		DripSize: f.DripSize, Host: f.Host, Issue: f.Issue, Reason: f.Reason}
	if f.Delay != 0 {
		j.Delay = f.Delay.String()
	}
	if f.Endpoint != EndpointAny {
		j.Endpoint = f.Endpoint.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes; unknown fields are refused.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var j faultJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("fakejira: fault: %w", err)
	}
	kind, err := ParseFaultKind(j.Kind)
	if err != nil {
		return err
	}
	ep, err := ParseEndpoint(j.Endpoint)
	if err != nil {
		return err
	}
	var delay time.Duration
	if j.Delay != "" {
		if delay, err = time.ParseDuration(j.Delay); err != nil {
			return fmt.Errorf("fakejira: fault delay: %w", err)
		}
	}
	*f = Fault{Kind: kind, Count: j.Count, RetryAfter: j.RetryAfter, Delay: delay, AfterBytes: j.AfterBytes,
		DripSize: j.DripSize, Endpoint: ep, Host: j.Host, Issue: j.Issue, Reason: j.Reason}
	return nil
}

// serveFault is FaultPath.
func (s *Server) serveFault(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, s.CurrentFault())
	case http.MethodPost, http.MethodPut:
		b, err := io.ReadAll(io.LimitReader(r.Body, maxFaultJSON+1))
		if err != nil {
			writeError(w, http.StatusBadRequest, "cannot read the fault: "+err.Error())
			return
		}
		if len(b) > maxFaultJSON {
			writeError(w, http.StatusRequestEntityTooLarge, "the fault document is larger than 16 KiB")
			return
		}
		var f Fault
		if err := json.Unmarshal(b, &f); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.SetFault(f)
		writeJSON(w, http.StatusOK, s.CurrentFault())
	case http.MethodDelete:
		s.ClearFault()
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, POST, PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}
