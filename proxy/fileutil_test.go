package proxy_test

import (
	"net"
	"os"
)

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }

func listen(t interface {
	Helper()
	Fatal(...any)
}) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
