package plugin

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/runlens/runlens/internal/testpki"
)

// testPKI is internal/testpki's CA and certificates as the settings take
// them: PEM text (a server certificate for 127.0.0.1 and localhost, and a
// client certificate).
type testPKI struct {
	caPEM, clientCertPEM, clientKeyPEM string
	ca                                 *x509.CertPool
	server                             tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	pki := testpki.New(t, t.TempDir())
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	p := &testPKI{caPEM: string(pki.CAPEM), clientCertPEM: read(pki.ClientCert), clientKeyPEM: read(pki.ClientKey), ca: pki.CAPool}
	var err error
	if p.server, err = tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey); err != nil {
		t.Fatal(err)
	}
	return p
}
