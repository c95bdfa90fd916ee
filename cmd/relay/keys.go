package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/jira-relay/jira-relay/internal/seal"
)

const keysUsage = `relay keys: encryption keys at rest

  relay keys generate [--name NAME]
      print a new key entry (a name and 32 random bytes, base64) for a key
      file: put it first under "keys:" to seal new writes with it; keep the
      older keys listed until every value is rewritten. NAME is 1 to 32 of
      A-Z a-z 0-9 _ - (default k<today's date>).

A key file is YAML or JSON, readable by its owner (and group) only:

  keys:
    - name: k20261204
      secret: <base64 of 32 random bytes>
`

// runKeys runs `relay keys ...`. Nothing it prints goes to a log.
func runKeys(args []string, stdout, stderr io.Writer, now time.Time) int {
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "relay keys: "+format+"\n\n%s", append(a, keysUsage)...)
		return exitUsage
	}
	if len(args) == 0 {
		return usage("a subcommand is needed")
	}
	if args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, keysUsage)
		return exitOK
	}
	if args[0] != "generate" {
		return usage("unknown subcommand %q", args[0])
	}
	fs := flag.NewFlagSet("relay keys generate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	name := fs.String("name", "k"+now.UTC().Format("20060102"), "")
	if err := fs.Parse(args[1:]); err != nil {
		return usage("%v", err)
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	entry, err := seal.Generate(*name)
	if err != nil {
		return usage("--name: %v", err)
	}
	fmt.Fprint(stdout, entry)
	return exitOK
}
