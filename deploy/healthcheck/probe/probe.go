// Package probe is the check of the healthcheck command (deploy/healthcheck):
// GET the relay's /healthz on loopback and turn the answer into an exit code.
// It is a package of its own so that internal/opstest runs it in-process.
package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// timeout bounds the whole check; Docker's own --timeout is longer.
const timeout = 3 * time.Second

// Run does the check and returns the exit code: 0 when the relay answered
// 200, 1 otherwise. args are the command's arguments (none, or the URL to
// check); getenv reads RELAY_LISTEN and RELAY_TLS_CERT.
func Run(args []string, getenv func(string) string, stderr io.Writer) int {
	target, err := TargetURL(args, getenv)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			// Never an HTTP(S)_PROXY from the environment; and liveness on
			// loopback, not identity, so the certificate is not verified.
			Proxy:           nil,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: %s answered %d\n", target, resp.StatusCode)
		return 1
	}
	return 0
}

// TargetURL is the URL to check: the argument, or /healthz on 127.0.0.1 at
// the port of RELAY_LISTEN (or its host, when it names one).
func TargetURL(args []string, getenv func(string) string) (string, error) {
	switch len(args) {
	case 0:
	case 1:
		return args[0], nil
	default:
		return "", fmt.Errorf("at most one argument (a URL), got %d", len(args))
	}
	listen := getenv("RELAY_LISTEN")
	if listen == "" {
		listen = ":8080"
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" || port == "0" {
		return "", fmt.Errorf("RELAY_LISTEN %q has no usable port", listen)
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "127.0.0.1" // every interface: the loopback one will do
	}
	scheme := "http"
	if getenv("RELAY_TLS_CERT") != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/healthz", nil
}
