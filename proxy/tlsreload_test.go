package proxy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/proxy"
)

// TestFrontDoorResumesTLSSessions: the front door's TLS configuration
// issues session tickets, so a caller that comes back on a new connection
// resumes its session (an abbreviated handshake: no certificate, no
// signature) instead of a full handshake; over TLS 1.3 and TLS 1.2.
func TestFrontDoorResumesTLSSessions(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	sc, err := proxy.TLSConfig(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(raw, sc)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// A byte after the handshake: over TLS 1.3 the ticket
			// follows the handshake, and the client takes it when it
			// reads.
			_, _ = c.Write([]byte{'!'})
			_ = c.Close()
		}
	}()
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		cc := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: v, MaxVersion: v,
			ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		for i, want := range []bool{false, true, true} {
			c, err := tls.Dial("tcp", ln.Addr().String(), cc)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(c); err != nil {
				t.Fatal(err)
			}
			st := c.ConnectionState()
			_ = c.Close()
			if st.Version != v {
				t.Fatalf("version %x, want %x", st.Version, v)
			}
			if st.DidResume != want {
				t.Errorf("TLS %x, connection %d: DidResume %v, want %v", v, i+1, st.DidResume, want)
			}
		}
	}
}

// selfSigned writes a self-signed ECDSA certificate for localhost and its
// key, and returns their files and a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}
