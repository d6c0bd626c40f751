package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
)

// A TLS handshake over a pipe with mutual authentication, as a broker
// requiring client certificates (verify_peer, fail_if_no_peer_cert) does
// it: both sides verify the other's certificate against the CA.
func TestMutualTLS(t *testing.T) {
	p := New(t, t.TempDir())
	server, err := tls.LoadX509KeyPair(p.ServerCert, p.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	client, err := tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localhost", "127.0.0.1"} {
		a, b := net.Pipe()
		srv := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{server}, ClientCAs: p.CAPool, ClientAuth: tls.RequireAndVerifyClientCert})
		done := make(chan error, 1)
		go func() { done <- srv.Handshake() }()
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(p.CAPEM) {
			t.Fatal("CAPEM holds no certificate")
		}
		cli := tls.Client(b, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{client}, ServerName: name})
		if err := cli.Handshake(); err != nil {
			t.Fatalf("client handshake to %s: %v", name, err)
		}
		if err := <-done; err != nil {
			t.Fatalf("server handshake: %v", err)
		}
		if cn := srv.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != ClientName {
			t.Errorf("client certificate CN %q, want %q", cn, ClientName)
		}
		// Not cli.Close(): its close_notify would wait for a reader on the
		// unbuffered pipe.
		a.Close()
		b.Close()
	}
}
