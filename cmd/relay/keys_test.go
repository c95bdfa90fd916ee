package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/jira-relay/jira-relay/internal/seal"
)

func TestKeysGenerate(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"keys", "generate", "--name", "k2027"}, nil, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	r, err := seal.Parse([]byte("keys:\n" + out.String()))
	if err != nil || r.Primary() != "k2027" {
		t.Fatalf("the printed entry is no key file entry: %v\n%s", err, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"keys", "generate"}, nil, &out, &errb); code != exitOK || !strings.HasPrefix(out.String(), "  - name: k20") {
		t.Errorf("default name: exit %d, %q", code, out.String())
	}
	for _, args := range [][]string{{"keys"}, {"keys", "rotate"}, {"keys", "generate", "--name", "a:b"}, {"keys", "generate", "extra"}, {"keys", "generate", "--size", "16"}} {
		errb.Reset()
		if code := run(context.Background(), args, nil, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "relay keys generate") {
			t.Errorf("%v: exit %d, stderr %q; want 2 with the usage", args, code, errb.String())
		}
	}
}
