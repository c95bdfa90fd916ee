package fakejira

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"testing"
)

// TestTLSCertificate: with Options.Certificate the fake serves that
// certificate (a client trusting only its CA gets through), has no CA of
// its own, and its Client trusts the certificate's chain.
func TestTLSCertificate(t *testing.T) {
	ca, err := newCA()
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, Options{TLS: true, Certificate: &ca.server})
	if s.CAPEM() != nil {
		t.Error("CAPEM with Options.Certificate")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer trusting.CloseIdleConnections()
	for _, c := range []*http.Client{trusting, s.Client()} {
		resp, err := c.Get(s.URL() + "/rest/api/3/serverInfo")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.TLS == nil || !resp.TLS.PeerCertificates[0].Equal(mustParse(t, ca.server.Certificate[0])) {
			t.Errorf("%s, TLS %v", resp.Status, resp.TLS != nil)
		}
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
