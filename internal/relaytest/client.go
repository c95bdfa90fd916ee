package relaytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Answer is one answer of the relay, its body read to the end.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
	// Err is the transport error (or the error reading the body) of a
	// Client without T; the other fields hold what came before it.
	Err error
}

// ReadAnswer reads resp's body to the end and closes it.
func ReadAnswer(resp *http.Response) Answer {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: b, Err: err}
}

// String is the status and the start of the body, or the transport error.
func (a Answer) String() string {
	if a.Err != nil {
		return "transport error: " + a.Err.Error()
	}
	return fmt.Sprintf("%d %s", a.Status, Clip(a.Body))
}

// Decode decodes the body into v; it fails the test when the body is not
// JSON of v's shape.
func (a Answer) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(a.Body, v); err != nil {
		t.Fatalf("answer %d is not the JSON wanted: %v: %q", a.Status, err, Clip(a.Body))
	}
}

// JSON is the body as a JSON object; it fails the test when it is none.
func (a Answer) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	a.Decode(t, &m)
	return m
}

// errorBody is the relay's JSON error shape.
type errorBody struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Code is the code of a {"error":{"code":...}} body, whatever else the
// answer holds; "" when the body has none.
func (a Answer) Code() string {
	var e errorBody
	_ = json.Unmarshal(a.Body, &e)
	if e.Error == nil {
		return ""
	}
	return e.Error.Code
}

// RelayError is the code of the relay's documented error shape: a body
// {"error":{"code","message"}} with both set, and Content-Type
// application/json. ok is false (and code "") for any other answer.
func (a Answer) RelayError() (code string, ok bool) {
	var e errorBody
	if json.Unmarshal(a.Body, &e) != nil || e.Error == nil || e.Error.Code == "" || e.Error.Message == "" {
		return "", false
	}
	if !strings.HasPrefix(a.Header.Get("Content-Type"), "application/json") {
		return "", false
	}
	return e.Error.Code, true
}

// ErrCode is the code of the relay's error shape (see RelayError); it fails
// the test when the answer does not have it.
func (a Answer) ErrCode(t testing.TB) string {
	t.Helper()
	code, ok := a.RelayError()
	if !ok {
		t.Fatalf("status %d, Content-Type %q: not the JSON error shape: %q", a.Status, a.Header.Get("Content-Type"), a.Body)
	}
	return code
}

// Clip is the start of b (200 bytes at most) as a string, for messages.
func Clip(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

// Client is a small client of the relay's API.
type Client struct {
	// T, when set, fails the test on a transport error; without it the
	// error is the Answer's Err (as goroutines other than the test's need).
	T testing.TB
	// Base is prefixed to every path: the relay's URL, or "" to give
	// whole URLs.
	Base string
	// HTTP sends the requests; nil is http.DefaultClient.
	HTTP *http.Client
}

// NewClient is a Client of the relay at base that fails t on a transport
// error.
func NewClient(t testing.TB, base string) *Client {
	return &Client{T: t, Base: base}
}

// Do sends a request to Base+path with the relay key key (none when "").
// body is nil, a string or []byte (sent as JSON), an io.Reader (sent as
// is, without a Content-Type) or a value sent as JSON; hdr are header
// name, value pairs, set last.
func (c *Client) Do(method, path, key string, body any, hdr ...string) Answer {
	if c.T != nil {
		c.T.Helper()
	}
	var r io.Reader
	isJSON := true
	switch b := body.(type) {
	case nil:
		isJSON = false
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	case io.Reader:
		r, isJSON = b, false
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return c.failed(method, path, err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.Base+path, r)
	if err != nil {
		return c.failed(method, path, err)
	}
	if isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("X-Relay-Key", key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return c.Send(req)
}

// Send sends req and reads the answer.
func (c *Client) Send(req *http.Request) Answer {
	if c.T != nil {
		c.T.Helper()
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return c.failed(req.Method, req.URL.String(), err)
	}
	a := ReadAnswer(resp)
	if a.Err != nil && c.T != nil {
		c.T.Fatalf("%s %s: reading the answer: %v", req.Method, req.URL, a.Err)
	}
	return a
}

func (c *Client) failed(method, target string, err error) Answer {
	if c.T != nil {
		c.T.Helper()
		c.T.Fatalf("%s %s: %v", method, target, err)
	}
	return Answer{Err: err}
}

// Tenant is an instance registered through the API, with its keys.
type Tenant struct {
	ID, Client, Admin string
	URL               string // the Jira URL as the relay normalised it
}

// RegisterBody is a complete registration of the instance at url.
func RegisterBody(url string) map[string]any {
	return map[string]any{
		"url": url, "jiraVersion": "1001.0.0-SNAPSHOT", "addinVersion": "4.2.0",
		"license": map[string]any{"key": "LIC-1", "expiresAt": "2027-06-30T00:00:00Z", "seats": 250},
	}
}

// MappingBody is a link of a mail to a Jira issue.
func MappingBody(conv, mail, user, issueID, key string) map[string]any {
	return map[string]any{"conversationId": conv, "mailId": mail, "userId": user, "app": "Jira",
		"jira": map[string]any{"id": issueID, "key": key, "projectId": "10200"}}
}

// Register registers the instance at url (RegisterBody); hdr are extra
// header pairs. The Tenant is the zero one unless the relay answered 201
// with an instance id and both keys.
func (c *Client) Register(url string, hdr ...string) (Tenant, Answer) {
	if c.T != nil {
		c.T.Helper()
	}
	res := c.Do("POST", "/v1/instances", "", RegisterBody(url), hdr...)
	if res.Err != nil || res.Status != 201 {
		return Tenant{}, res
	}
	var m struct {
		InstanceID string `json:"instanceId"`
		ClientKey  string `json:"clientKey"`
		AdminKey   string `json:"adminKey"`
		Instance   struct {
			URL string `json:"url"`
		} `json:"instance"`
	}
	if err := json.Unmarshal(res.Body, &m); err != nil {
		res.Err = err
		return Tenant{}, res
	}
	if m.InstanceID == "" || m.ClientKey == "" || m.AdminKey == "" {
		return Tenant{}, res
	}
	return Tenant{ID: m.InstanceID, Client: m.ClientKey, Admin: m.AdminKey, URL: m.Instance.URL}, res
}

// MustRegister is Register, failing t unless the instance was registered.
func (c *Client) MustRegister(t testing.TB, url string, hdr ...string) Tenant {
	t.Helper()
	tn, res := c.Register(url, hdr...)
	if tn.ID == "" {
		t.Fatalf("register %s: %s", url, res)
	}
	return tn
}
