package proxy

import (
	"context"
	"github.com/jira-relay/jira-relay/internal/httpx"
	"time"

	"github.com/valyala/fasthttp"
)

type statusAnswer struct {
	Status string `json:"status"`
}

// healthz: the process is alive and serving. It touches nothing (no etcd,
// no limiter), so a load balancer may probe it as often as it likes.
func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(200)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"status":"ok"}`)
}

// readyz: 503 while draining or when etcd does not answer a quorum read.
func (s *Server) readyz(ctx *fasthttp.RequestCtx) error {
	if s.draining.Load() {
		return httpx.ErrDraining
	}
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(c); err != nil {
		return err
	}
	return httpx.WriteJSON(ctx, 200, statusAnswer{Status: "ready"})
}
