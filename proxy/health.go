package proxy

import (
	"context"
	"time"

	"github.com/valyala/fasthttp"
)

type statusAnswer struct {
	Status string `json:"status"`
}

// healthz: the process is alive and serving.
func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	_ = writeJSON(ctx, 200, statusAnswer{Status: "ok"})
}

// readyz: 503 while draining or when etcd does not answer a quorum read.
func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	if s.draining.Load() {
		writeAPIError(ctx, errDraining)
		return
	}
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(c); err != nil {
		s.writeError(ctx, err)
		return
	}
	_ = writeJSON(ctx, 200, statusAnswer{Status: "ready"})
}
