package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Tenant is the Jira instance the load runs as, with what setup made for
// it: users, the configuration's ETag and conversations that have mappings.
type Tenant struct {
	ID        string
	ClientKey string
	AdminKey  string
	ETag      string
	Users     []string
	Convs     []string // conversation ids seeded with mappings
	RunID     string   // makes ids unique across runs against one relay
}

// apiCall sends one JSON request to the relay's API and decodes the answer
// into out (when not nil); want lists the acceptable statuses.
func apiCall(e *Endpoint, method, path, key string, hdr map[string]string, body any, out any, want ...int) (*fasthttp.ResponseHeader, error) {
	var raw []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		raw = b
		hdr = maps.Clone(hdr)
		if hdr == nil {
			hdr = map[string]string{}
		}
		hdr["Content-Type"] = "application/json"
	}
	var h *fasthttp.ResponseHeader
	err := exchange(e, method, path, key, hdr, raw, 30*time.Second, func(resp *fasthttp.Response) error {
		if !slices.Contains(want, resp.StatusCode()) {
			return fmt.Errorf("%s %s: status %d: %s", method, strings.SplitN(path, "?", 2)[0], resp.StatusCode(), truncate(resp.Body(), 300))
		}
		if out != nil {
			if err := json.Unmarshal(resp.Body(), out); err != nil {
				return fmt.Errorf("%s %s: %w", method, path, err)
			}
		}
		h = &fasthttp.ResponseHeader{}
		resp.Header.CopyTo(h)
		return nil
	})
	return h, err
}

// exchange sends one request to the relay's API (with the key in
// X-Relay-Key when not empty) and hands the answer to read before it is
// released.
func exchange(e *Endpoint, method, path, key string, hdr map[string]string, body []byte, timeout time.Duration, read func(*fasthttp.Response) error) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(e.Base + e.Path + path)
	if key != "" {
		req.Header.Set("X-Relay-Key", key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if body != nil {
		req.SetBody(body)
	}
	if err := e.Do(req, resp, time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return read(resp)
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// Register creates a tenant for jiraURL through POST /v1/instances.
func Register(e *Endpoint, jiraURL string) (*Tenant, error) {
	var ans struct {
		InstanceID string `json:"instanceId"`
		ClientKey  string `json:"clientKey"`
		AdminKey   string `json:"adminKey"`
	}
	body := map[string]any{
		"url": jiraURL, "jiraVersion": "1001.0.0-SNAPSHOT", "addinVersion": "bench",
		"license": map[string]any{"key": "bench-licence", "expiresAt": "2099-12-31T00:00:00Z", "seats": 1000},
	}
	if _, err := apiCall(e, "POST", "/v1/instances", "", nil, body, &ans, 201); err != nil {
		return nil, fmt.Errorf("registering %s: %w", jiraURL, err)
	}
	return &Tenant{ID: ans.InstanceID, ClientKey: ans.ClientKey, AdminKey: ans.AdminKey}, nil
}

// benchConfig is a configuration document of realistic size (about 4 KiB):
// settings and a few issue templates.
func benchConfig() map[string]any {
	var templates []any
	for i := range 12 {
		templates = append(templates, map[string]any{
			"name": "Template " + strconv.Itoa(i), "projectKey": "BENCH", "issueType": "Task",
			"summary":     "{{subject}}",
			"description": "Created from Outlook by {{sender}} on {{date}}; attachments follow. " + strings.Repeat("·", 120),
			"labels":      []string{"outlook", "bench"},
		})
	}
	return map[string]any{"defaultProject": "BENCH", "attachMail": true, "maxAttachmentMiB": 25, "templates": templates}
}

// Prepare makes the tenant's users (PUT users/{userId}), its configuration
// (PUT config with the admin key, or a GET for the ETag without one), and
// seeds seedConvs conversations with two mappings each, so that lookups find
// something. It uses up to 16 requests at a time.
func Prepare(ctx context.Context, e *Endpoint, t *Tenant, users, seedConvs int) error {
	if t.RunID == "" {
		t.RunID = strconv.FormatUint(rand.Uint64()%(1<<40), 36)
	}
	base := "/v1/instances/" + url.PathEscape(t.ID)
	for i := range users {
		t.Users = append(t.Users, "bench-"+t.RunID+"-user-"+strconv.Itoa(i))
	}
	for i := range seedConvs {
		t.Convs = append(t.Convs, convID(t.RunID, i))
	}
	err := parallel(ctx, 16, len(t.Users), func(i int) error {
		u := t.Users[i]
		_, err := apiCall(e, "PUT", base+"/users/"+url.PathEscape(u), t.ClientKey, nil,
			map[string]string{"name": "Bench User " + strconv.Itoa(i), "email": "bench" + strconv.Itoa(i) + "@example.com"}, nil, 200, 201)
		return err
	})
	if err != nil {
		return err
	}
	var h *fasthttp.ResponseHeader
	if t.AdminKey != "" {
		h, err = apiCall(e, "PUT", base+"/config", t.AdminKey, nil, benchConfig(), nil, 200)
	} else {
		h, err = apiCall(e, "GET", base+"/config", t.ClientKey, nil, nil, nil, 200)
	}
	if err != nil {
		return err
	}
	if t.ETag = string(h.Peek("ETag")); t.ETag == "" {
		return fmt.Errorf("GET %s/config: no ETag", base)
	}
	return parallel(ctx, 16, 2*len(t.Convs), func(i int) error {
		_, err := apiCall(e, "POST", base+"/mappings", t.ClientKey, nil,
			mappingJSON(t, t.Convs[i/2], "seed-"+strconv.Itoa(i), t.Users[i%len(t.Users)], int64(i)), nil, 200, 201)
		return err
	})
}

// convID looks like an Outlook conversation id (base64 with + / and =).
func convID(run string, i int) string {
	return "AAQkADQ2+bench/" + run + "-" + strconv.Itoa(i) + "="
}

// mappingJSON is the POST /mappings body; n numbers the issue.
func mappingJSON(t *Tenant, conv, mail, user string, n int64) map[string]any {
	return map[string]any{
		"conversationId": conv, "mailId": "<" + mail + "." + t.RunID + "@bench.example.com>", "userId": user, "app": "outlook",
		"jira": map[string]string{"id": strconv.FormatInt(10000+n, 10), "key": "BENCH-" + strconv.FormatInt(1+n, 10), "projectId": "10000"},
	}
}

// parallel runs f(0..n-1) with at most conc at a time; the first error wins.
func parallel(ctx context.Context, conc, n int, f func(int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(conc, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
