package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/seal"
	"github.com/jira-relay/jira-relay/store"
)

const encryptionUsage = `relay encryption: etcd values for operators

  relay encryption decrypt [--encryption-key-file FILE] < etcdctl-json
      read what "etcdctl get -w json ..." printed (one or more answers) on
      standard input, and print each key and value in plain JSON, one per
      line: {"key":"…","value":…,"mod_revision":…,"lease":…}. A value that is
      JSON stays JSON, other text is a string, other bytes are
      "value_base64". A sealed value
      ("enc:v1:<key>:…") is opened with the key file's keys and shows
      "sealed_with"; without the file, or when its key is not listed, the
      line has "sealed_with" and an "error" instead of the value.

  etcdctl get --prefix /jira-relay/d/<dataId>/users/ -w json | relay encryption decrypt

  relay encryption status [--encryption-key-file FILE] [relay flags]
      count the values under --etcd-prefix in the directory and every shard
      by how they are stored: plaintext, empty (key-only entries), or the
      key that sealed them (an instance record counts as its licence is
      stored) (with the key file: its keys even at 0, and a
      key it does not list marked). The relay flags (or RELAY_* variables,
      or --config) name the clusters, as for relay shards.

  relay encryption key-of --instance ID (--user U | --conversation C | --mail M) [relay flags]
      print where an id of the tenant stands in etcd (the keys hold the ids'
      tokens; a tenant whose record says "tokens":"hmac:<key>" needs
      --encryption-key-file with that key): one line per key or prefix, KEY,
      "prefix" or "key", what is there, and the cluster (directory or a
      shard), e.g.
      etcdctl get --prefix "$(relay encryption key-of --instance ID --conversation C | cut -f1)"

  relay encryption rewrite [--encryption-key-file FILE] [relay flags]
      seal with the file's first key every value the relays seal (users,
      mapping records, configurations, error reports, the licences in
      instance records) that is plaintext or
      sealed with another key, in the directory and every shard: one
      compare-and-swap per value, leases kept, so relays may keep writing.
      Stop it at any time and run it again. Then compact and defragment
      (docs/operations.md) so that old revisions stop holding the old
      values, and only then take the old key out of the file. It first
      re-keys every tenant whose etcd keys are not tokens of the first key
      (copied online to a new data id). Without --encryption-key-file it
      only re-keys tenants to unkeyed tokens (a tenant of layout 2 whose
      record was repaired after the migration) and seals nothing.
`

// etcdctlAnswer is the part of "etcdctl get -w json" the decoder reads:
// keys and values are base64 (encoding/json decodes them into []byte).
type etcdctlAnswer struct {
	Kvs []struct {
		Key         []byte `json:"key"`
		Value       []byte `json:"value"`
		ModRevision int64  `json:"mod_revision"`
		Lease       int64  `json:"lease"`
	} `json:"kvs"`
}

// plainKV is one line of relay encryption decrypt.
type plainKV struct {
	Key         string          `json:"key"`
	Value       json.RawMessage `json:"value,omitempty"`
	ValueBase64 []byte          `json:"value_base64,omitempty"`
	SealedWith  string          `json:"sealed_with,omitempty"`
	Error       string          `json:"error,omitempty"`
	ModRevision int64           `json:"mod_revision"`
	Lease       int64           `json:"lease,omitempty"`
}

// runEncryption runs "relay encryption ...".
func runEncryption(ctx context.Context, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "relay encryption: "+format+"\n\n%s", append(a, encryptionUsage)...)
		return exitUsage
	}
	if len(args) == 0 {
		return usage("a subcommand is needed")
	}
	if args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, encryptionUsage)
		return exitOK
	}
	sub := args[0]
	switch sub {
	case "key-of":
		return runKeyOf(ctx, args[1:], environ, stdout, stderr, usage)
	case "status", "rewrite":
		// The relay's own flags (or RELAY_* variables, or --config),
		// --encryption-key-file among them.
		cfg, err := configs.LoadEnviron(args[1:], environ)
		if err != nil {
			return usage("%v", err)
		}
		var keys *seal.Keyring
		if cfg.EncryptionKeyFile != "" {
			if keys, err = seal.Load(cfg.EncryptionKeyFile); err != nil {
				return usage("--encryption-key-file: %v", err)
			}
		}
		if sub == "status" {
			err = encryptionStatus(ctx, stdout, cfg, keys)
		} else {
			err = encryptionRewrite(ctx, stdout, stderr, cfg, keys)
		}
		if err != nil {
			fmt.Fprintf(stderr, "relay encryption %s: %v\n", sub, err)
			return exitFail
		}
		return exitOK
	case "decrypt":
	default:
		return usage("unknown subcommand %q", sub)
	}
	fs := flag.NewFlagSet("relay encryption decrypt", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	keyFile := fs.String("encryption-key-file", "", "")
	if err := fs.Parse(args[1:]); err != nil {
		return usage("%v", err)
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q (the input comes on standard input)", fs.Arg(0))
	}
	var keys *seal.Keyring
	if *keyFile != "" {
		var err error
		if keys, err = seal.Load(*keyFile); err != nil {
			return usage("--encryption-key-file: %v", err)
		}
	}
	if err := decrypt(stdin, stdout, keys); err != nil {
		fmt.Fprintf(stderr, "relay encryption decrypt: %v\n", err)
		return exitUsage
	}
	return exitOK
}

// decrypt turns etcdctl's JSON answers read from in into plain lines on out.
func decrypt(in io.Reader, out io.Writer, keys *seal.Keyring) error {
	dec := json.NewDecoder(bufio.NewReader(in))
	w := bufio.NewWriter(out)
	defer w.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for n := 1; ; n++ {
		var a etcdctlAnswer
		if err := dec.Decode(&a); errors.Is(err, io.EOF) {
			if n == 1 {
				return errors.New("no input: pipe the output of etcdctl get -w json into it")
			}
			return nil
		} else if err != nil {
			return fmt.Errorf("answer %d is not the JSON of etcdctl get -w json: %v", n, err)
		}
		for _, kv := range a.Kvs {
			if err := enc.Encode(plainOf(kv.Key, kv.Value, kv.ModRevision, kv.Lease, keys)); err != nil {
				return err
			}
		}
	}
}

// plainOf is one key and value as decrypt prints it.
func plainOf(key, value []byte, rev, lease int64, keys *seal.Keyring) plainKV {
	p := plainKV{Key: string(key), ModRevision: rev, Lease: lease}
	if name, sealed := seal.KeyOf(value); sealed {
		p.SealedWith = name
		if keys == nil {
			p.Error = "sealed: give --encryption-key-file"
			return p
		}
		plain, _, err := keys.Open(key, value)
		var km *seal.KeyMissingError
		switch {
		case errors.As(err, &km):
			p.Error = "encryption_key_missing: the key file does not list key " + km.Name
			return p
		case err != nil:
			p.Error = "does not open: cut short, altered, or moved from another etcd key"
			return p
		}
		value = plain
	} else if bytes.HasSuffix(key, []byte("/instance")) {
		// An instance record: readable JSON, its licence sealed inside.
		rec, name, err := store.OpenRecordLicense(keys, key, value)
		if name != "" {
			p.SealedWith = name
		}
		var km *seal.KeyMissingError
		switch {
		case errors.As(err, &km) && keys == nil:
			p.Error = "licence sealed: give --encryption-key-file"
			return p
		case errors.As(err, &km):
			p.Error = "encryption_key_missing: the key file does not list key " + km.Name
			return p
		case err != nil:
			p.Error = "the licence does not open: cut short, altered, or moved from another etcd key"
			return p
		}
		value = rec
	}
	switch {
	case len(value) > 0 && json.Valid(value):
		p.Value = value
	case utf8.Valid(value):
		p.Value, _ = json.Marshal(string(value))
	default:
		p.ValueBase64 = value // bytes that are no text
	}
	return p
}

// runKeyOf runs "relay encryption key-of".
func runKeyOf(ctx context.Context, args, environ []string, stdout, stderr io.Writer, usage func(string, ...any) int) int {
	fs := flag.NewFlagSet("relay encryption key-of", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	instance := fs.String("instance", "", "")
	ids := map[string]*string{store.IDUser: fs.String("user", "", ""), store.IDConversation: fs.String("conversation", "", ""), store.IDMail: fs.String("mail", "", "")}
	own, relayArgs := splitFlags(args, "instance", "user", "conversation", "mail")
	if err := fs.Parse(own); err != nil {
		return usage("%v", err)
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	if !store.ValidInstanceID(*instance) {
		return usage("key-of needs --instance with an instance id (26 characters a-z 2-7), not %q", *instance)
	}
	kind, id := "", ""
	for k, v := range ids {
		if *v != "" {
			if kind != "" {
				return usage("give one of --user, --conversation, --mail")
			}
			kind, id = k, *v
		}
	}
	if kind == "" {
		return usage("give one of --user, --conversation, --mail")
	}
	cfg, err := configs.LoadEnviron(relayArgs, environ)
	if err != nil {
		return usage("%v", err)
	}
	// A tenant of keyed tokens (its record's "tokens":"hmac:<key>") needs
	// the key file to compute them.
	var sealKeys *seal.Keyring
	if cfg.EncryptionKeyFile != "" {
		if sealKeys, err = seal.Load(cfg.EncryptionKeyFile); err != nil {
			return usage("--encryption-key-file: %v", err)
		}
	}
	dir, _, shards, err := operatorClients(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "relay encryption key-of: %v\n", err)
		return exitFail
	}
	defer dir.Close()
	defer closeAll(shards)
	st, err := operatorStore(cfg, dir, shards, sealKeys)
	if err != nil {
		fmt.Fprintf(stderr, "relay encryption key-of: %v\n", err)
		return exitFail
	}
	keys, err := st.KeysOf(ctx, *instance, kind, id)
	if err != nil {
		fmt.Fprintf(stderr, "relay encryption key-of: %v\n", err)
		if errors.Is(err, store.ErrNotFound) || errors.As(err, new(*store.InvalidError)) {
			return exitUsage
		}
		return exitFail
	}
	for _, k := range keys {
		form := "key"
		if k.Prefix {
			form = "prefix"
		}
		fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", k.Key, form, k.What, k.Cluster)
	}
	return exitOK
}
