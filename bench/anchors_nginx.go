package bench

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/valyala/fasthttp"
)

// anchorsNginxConf is the template of the config 304 anchor's nginx
// (bench/anchors/nginx.conf), rendered by startPeer as the peers' are.
//
//go:embed anchors/nginx.conf
var anchorsNginxConf []byte

// staticTarget plays the add-in's config read at a server that holds the
// configuration document as a file: GET with the relay's path, X-Relay-Key
// (ignored there, sent so that both servers read the same request) and
// If-None-Match with the server's own ETag, expecting 304.
type staticTarget struct {
	label   string
	e       *Endpoint
	uri     string
	key     string
	etag    string
	timeout time.Duration
}

// Name implements Target.
func (s *staticTarget) Name() string { return s.label }

// Supports implements Target: config reads only.
func (s *staticTarget) Supports(op Op) bool { return op == OpConfig }

// Do implements Target.
func (s *staticTarget) Do(w *worker, op Op) (int64, string) {
	if op != OpConfig {
		return 0, "unsupported"
	}
	req, resp := w.req, w.resp
	req.Reset()
	resp.Reset()
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURI(s.uri)
	req.Header.Set("X-Relay-Key", s.key)
	req.Header.Set("If-None-Match", s.etag)
	if err := s.e.Do(req, resp, time.Now().Add(s.timeout)); err != nil {
		return 0, transportKind(err)
	}
	if st := resp.StatusCode(); st != 304 {
		return 0, statusKind(st)
	}
	return int64(len(resp.Body())), ""
}

// staticNginx is the config anchor's nginx and the target that reads it.
type staticNginx struct {
	proc   *Process
	target *staticTarget
	check  string // what was verified
}

func (n *staticNginx) stop() {
	n.target.e.Close()
	n.proc.Stop()
}

// startStaticNginx fetches the tenant's configuration document from the
// relay (200, its bytes as the relay sends them), writes it under the same
// path in a document root of nginx's own in dir, starts nginx from the
// anchors' template on a free loopback port (startPeer, as the peers
// comparison does), and checks that nginx serves the very same bytes and
// answers its own ETag with 304.
func startStaticNginx(ctx context.Context, cfg *Config, dir string, relayE *Endpoint, t *Tenant, conc int) (*staticNginx, error) {
	path := "/v1/instances/" + url.PathEscape(t.ID) + "/config"
	var doc []byte
	err := exchange(relayE, "GET", path, t.ClientKey, nil, nil, 30*time.Second, func(resp *fasthttp.Response) error {
		if resp.StatusCode() != 200 {
			return fmt.Errorf("GET %s: status %d", path, resp.StatusCode())
		}
		doc = append([]byte(nil), resp.Body()...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("the relay's configuration document: %w", err)
	}
	tdir := filepath.Join(dir, "anchors-templates")
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		return nil, err
	}
	spec := peerSpecs["nginx"]
	if err := os.WriteFile(filepath.Join(tdir, spec.template), anchorsNginxConf, 0o644); err != nil {
		return nil, err
	}
	file := filepath.Join(dir, spec.name, "html", filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(file, doc, 0o644); err != nil {
		return nil, err
	}
	c := *cfg
	c.PeersDir = tdir
	p, addr, err := startPeer(ctx, &c, spec, dir, peerData{})
	if err != nil {
		return nil, err
	}
	e, err := NewEndpoint(addr, conc+8, "", false)
	if err != nil {
		p.Stop()
		return nil, err
	}
	e.AbortOn(ctx)
	n := &staticNginx{proc: p, target: &staticTarget{label: "nginx", e: e, uri: e.Base + path, key: t.ClientKey, timeout: cfg.RequestTimeout}}
	err = exchange(e, "GET", path, t.ClientKey, nil, nil, 10*time.Second, func(resp *fasthttp.Response) error {
		if resp.StatusCode() != 200 || !bytes.Equal(resp.Body(), doc) {
			return fmt.Errorf("nginx GET %s: status %d, %d bytes: not the relay's %d-byte document", path, resp.StatusCode(), len(resp.Body()), len(doc))
		}
		n.target.etag = string(resp.Header.Peek("ETag"))
		return nil
	})
	if err == nil && n.target.etag == "" {
		err = fmt.Errorf("nginx GET %s: no ETag", path)
	}
	if err == nil {
		err = exchange(e, "GET", path, t.ClientKey, map[string]string{"If-None-Match": n.target.etag}, nil, 10*time.Second, func(resp *fasthttp.Response) error {
			if resp.StatusCode() != 304 {
				return fmt.Errorf("nginx GET %s with If-None-Match %s: status %d, want 304", path, n.target.etag, resp.StatusCode())
			}
			return nil
		})
	}
	if err != nil {
		n.stop()
		return nil, err
	}
	logf(cfg, "nginx serving the relay's %d-byte configuration document at %s (pid %d, ETag %s; the relay's %s)", len(doc), addr, p.Pid(), n.target.etag, t.ETag)
	n.check = fmt.Sprintf("nginx serves the relay's configuration document byte for byte (%d bytes) at the relay's path; each server's 304 is for its own ETag (relay %s, nginx %s)",
		len(doc), t.ETag, n.target.etag)
	return n, nil
}
