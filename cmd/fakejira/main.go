// Command fakejira runs the fake Jira Cloud of internal/fakejira standalone,
// for the load benchmark and manual testing.
//
//	fakejira [--listen 127.0.0.1:8089] [--tls [--ca-out ca.pem | --tls-cert cert.pem --tls-key key.pem]] [--base-path /ex/jira/<cloudId>] [--no-hash]
//
// It prints its base URL as the first line of standard output (scripts read
// it, which matters with --listen 127.0.0.1:0), serves GET /_fakejira/stats
// with its counters as JSON, and stops on SIGINT or SIGTERM, printing the
// final counters to standard error.
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/jira-relay/jira-relay/internal/fakejira"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fakejira:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("fakejira", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8089", "address to listen on (port 0 picks a free one)")
	useTLS := fs.Bool("tls", false, "serve HTTPS with a freshly generated CA (see --ca-out)")
	caOut := fs.String("ca-out", "", "with --tls, write the CA certificate (PEM) to this file, for the relay's --upstream-ca")
	certFile := fs.String("tls-cert", "", "with --tls, serve this certificate (PEM file) instead of one signed by a generated CA")
	keyFile := fs.String("tls-key", "", "key (PEM file) of --tls-cert")
	basePath := fs.String("base-path", "", `path prefix of every Jira path, e.g. "/ex/jira/<cloudId>"`)
	noHash := fs.Bool("no-hash", false, "do not SHA-256 uploaded files (benchmarks)")
	maxRecords := fs.Int("max-records", 1000, "upload records kept in memory (0 = all)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *caOut != "" && !*useTLS {
		return fmt.Errorf("--ca-out needs --tls")
	}
	var cert *tls.Certificate
	switch {
	case (*certFile == "") != (*keyFile == ""):
		return fmt.Errorf("--tls-cert and --tls-key go together")
	case *certFile != "" && !*useTLS:
		return fmt.Errorf("--tls-cert needs --tls")
	case *certFile != "" && *caOut != "":
		return fmt.Errorf("--ca-out writes the generated CA: there is none with --tls-cert")
	case *certFile != "":
		c, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("--tls-cert: %w", err)
		}
		cert = &c
	}

	s, err := fakejira.Start(fakejira.Options{
		TLS:         *useTLS,
		Certificate: cert,
		BasePath:    *basePath,
		Addr:        *listen,
		NoHash:      *noHash,
		MaxRecords:  *maxRecords,
		Admin:       true,
	})
	if err != nil {
		return err
	}
	defer s.Close()
	if *caOut != "" {
		if err := os.WriteFile(*caOut, s.CAPEM(), 0o644); err != nil {
			return fmt.Errorf("writing CA: %w", err)
		}
	}
	fmt.Println(s.URL())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	got := <-sig
	signal.Stop(sig)
	s.Close()
	stats, _ := json.Marshal(s.Stats())
	fmt.Fprintf(os.Stderr, "fakejira: %v: stopped; %s\n", got, stats)
	return nil
}
