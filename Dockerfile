# syntax=docker/dockerfile:1
#
# The relay's container image: a static binary on distroless, run as the
# non-root user 65532, with the embedded etcd's data on the volume /data.
#
#   docker build -t jira-relay .
#   docker run -p 8080:8080 -v relay-data:/data jira-relay              # embedded etcd
#   docker run -p 8080:8080 -e RELAY_ETCD_ENDPOINTS=http://etcd:2379 jira-relay
#
# Every setting is an environment variable RELAY_<KEY_IN_UPPER_SNAKE> (see
# configs/relay.yaml); the relay refuses to start on a RELAY_ variable that is
# not a setting. `docker stop` must allow the drain: the relay finishes
# in-flight requests for up to --drain-timeout (30s) after SIGTERM, so stop
# it with `docker stop -t 40` (compose: stop_grace_period: 40s).
#
# The target `fakejira` builds the fake Jira Cloud (cmd/fakejira) for
# deploy/docker-compose.fakejira.yml; the default target is the relay.

ARG GO_VERSION=1.26

# ---- build: static binaries, cross-compiled for the target platform --------
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/relay ./cmd/relay && \
    GOOS=$TARGETOS GOARCH=$TARGETARCH CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/healthcheck ./deploy/healthcheck && \
    GOOS=$TARGETOS GOARCH=$TARGETARCH CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/fakejira ./cmd/fakejira && \
    mkdir -p /out/rootfs/data

# ---- fakejira: the fake Jira Cloud, for local stacks only --------------------
FROM gcr.io/distroless/static-debian12:nonroot AS fakejira
COPY --from=build /out/fakejira /fakejira
USER 65532:65532
EXPOSE 8089
ENTRYPOINT ["/fakejira", "--listen", "0.0.0.0:8089"]

# ---- relay: the image ---------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot AS relay
LABEL org.opencontainers.image.title="jira-relay" \
      org.opencontainers.image.description="Streams Outlook add-in attachments to Jira Cloud; API over an etcd store" \
      org.opencontainers.image.source="https://github.com/jira-relay/jira-relay"
COPY --from=build /out/relay /relay
COPY --from=build /out/healthcheck /healthcheck
# The embedded etcd (used when RELAY_ETCD_ENDPOINTS is empty) keeps its data
# under --data-dir/etcd; the default data dir is ./data, so with WORKDIR / it
# is /data. No RELAY_* variable is set here: the environment outranks a
# --config file, and would override the file's settings without a word.
# /data is copied as an entry of a tree (not created as a COPY destination)
# so that it surely belongs to the non-root user, and a fresh named volume
# starts writable.
COPY --from=build --chown=65532:65532 /out/rootfs/ /
WORKDIR /
VOLUME ["/data"]
USER 65532:65532
# 8080: the front door (API and attachments).
# 9090: the admin listener (/metrics, /debug/pprof, /healthz, /readyz). The
# relay binds it to 127.0.0.1:9090 by default, which nothing outside the
# container can reach: to have it scraped, run the container with
# RELAY_ADMIN_LISTEN=0.0.0.0:9090 (--admin-listen), and publish 9090 only to
# the monitoring network, never publicly (deploy/ does both).
EXPOSE 8080 9090
# /healthcheck GETs http://127.0.0.1:<port of RELAY_LISTEN, default 8080>/healthz
# (https when RELAY_TLS_CERT is set) and exits 0 or 1: distroless has no curl.
# It reads the environment only: a port or TLS set by flag or --config file
# needs the probe's URL as its argument (HEALTHCHECK CMD ["/healthcheck", URL]).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/relay"]
