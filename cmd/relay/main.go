// Command relay runs jira-relay: the front door that streams Outlook add-in
// attachments to Jira Cloud, and the API over its etcd store. With no
// --etcd-endpoints it starts an embedded single-node etcd under --data-dir.
//
//	go run ./cmd/relay            # embedded etcd under ./data, listens on :8080
//	go run ./cmd/relay -h         # every flag, env variable and default
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
