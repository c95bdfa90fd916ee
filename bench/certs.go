package bench

import (
	"os"
	"path/filepath"

	"github.com/jira-relay/jira-relay/internal/fakejira"
)

// TestCerts are the PEM files of a test CA made for one run and of a server
// certificate it signed for 127.0.0.1, ::1 and localhost (ECDSA P-256).
type TestCerts struct {
	CA     string // ca.pem: the CA's certificate, what clients trust
	Cert   string // cert.pem: the server certificate
	Key    string // key.pem: its key (PKCS #8)
	Bundle string // bundle.pem: the certificate then the key, one file (HAProxy's crt)
}

// WriteTestCerts generates a CA and a server certificate
// (fakejira.NewTestCertPEM) into dir (ca.pem, cert.pem, key.pem,
// bundle.pem).
func WriteTestCerts(dir string) (*TestCerts, error) {
	p, err := fakejira.NewTestCertPEM()
	if err != nil {
		return nil, err
	}
	c := &TestCerts{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"),
		Bundle: filepath.Join(dir, "bundle.pem")}
	for _, f := range []struct {
		path string
		b    []byte
	}{{c.CA, p.CA}, {c.Cert, p.Cert}, {c.Key, p.Key}, {c.Bundle, append(append([]byte(nil), p.Cert...), p.Key...)}} {
		if err := os.WriteFile(f.path, f.b, 0o600); err != nil {
			return nil, err
		}
	}
	return c, nil
}
