// Package testpki makes the certificates TLS tests need: a CA of their own,
// a server certificate for localhost and 127.0.0.1 and a client
// certificate, both signed by it, written as PEM files. The exporter's web
// listener tests and the fault suite's AMQPS brokers share it.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ClientName is the client certificate's common name, as a broker lists it
// (peer_cert_subject "CN=runlens-client,...").
const ClientName = "runlens-client"

// PKI is a CA and the two certificates it signed, as files in one
// directory. Keys are PKCS #8 ("PRIVATE KEY"), which Go, Erlang and
// Python's ssl all read.
type PKI struct {
	CAPEM  []byte         // the CA certificate
	CAPool *x509.CertPool // holding only the CA
	// Files: the CA certificate, the server's certificate and key
	// (localhost, 127.0.0.1; for server auth), the client's (ClientName;
	// for client auth).
	CAFile, ServerCert, ServerKey, ClientCert, ClientKey string
}

// New writes a fresh PKI into dir, valid from an hour ago for a day.
func New(t testing.TB, dir string) *PKI {
	t.Helper()
	now := time.Now()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(0)
	template := func(cn string) *x509.Certificate {
		serial++
		return &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, Organization: []string{"runlens tests"}},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature,
		}
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	caKey := newKey()
	caTmpl := template("runlens test CA")
	caTmpl.IsCA, caTmpl.BasicConstraintsValid = true, true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), CAPool: x509.NewCertPool()}
	p.CAPool.AddCert(ca)
	p.CAFile = write("ca.pem", "CERTIFICATE", caDER)

	issue := func(tmpl *x509.Certificate, certName, keyName string) (string, string) {
		k := newKey()
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(certName, "CERTIFICATE", der), write(keyName, "PRIVATE KEY", kd)
	}
	srv := template("localhost")
	srv.DNSNames, srv.IPAddresses = []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}
	srv.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	p.ServerCert, p.ServerKey = issue(srv, "server.pem", "server.key")
	cli := template(ClientName)
	cli.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	p.ClientCert, p.ClientKey = issue(cli, "client.pem", "client.key")
	return p
}
