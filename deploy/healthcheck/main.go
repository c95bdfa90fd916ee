// Command healthcheck is the container image's HEALTHCHECK: the final image
// (distroless) has no shell and no curl, so this static program GETs the
// relay's /healthz on the loopback interface and exits 0 when it answers
// 200, 1 otherwise (Docker's "unhealthy"). It takes no flags in the image:
//
//	healthcheck                      # GET http://127.0.0.1:<port of RELAY_LISTEN>/healthz
//	healthcheck http://host:port/p   # GET that URL instead
//
// The port follows RELAY_LISTEN (default ":8080"), the same variable the
// relay reads (a wildcard host becomes 127.0.0.1), and the scheme follows
// RELAY_TLS_CERT: when the relay serves HTTPS itself, the check speaks TLS
// without verifying the certificate (it names a public host, not 127.0.0.1;
// the check is about liveness, not identity). A --listen given as a flag
// instead of RELAY_LISTEN is not seen here: pass the URL as the argument then.
// The check itself is package probe.
package main

import (
	"os"

	"github.com/jira-relay/jira-relay/deploy/healthcheck/probe"
)

func main() {
	os.Exit(probe.Run(os.Args[1:], os.Getenv, os.Stderr))
}
