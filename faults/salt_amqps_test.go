//go:build faults

package faults

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/internal/fixtures"
	"github.com/runlens/runlens/internal/testpki"
	"github.com/runlens/runlens/pkg/report"
)

// TestSaltReturnerAMQPS publishes with the real Salt returner (Debian's
// python3 and python3-pika) over amqps to an extra RabbitMQ node that
// requires client certificates (the node TestAMQPS starts; the main node is
// untouched):
//
//   - with the TLS settings in the URL, the form the exporter reads
//     (?cacertfile=…&certfile=…&keyfile=…), which pika alone refuses;
//   - with the returner's tls_ca_file / tls_cert_file / tls_key_file
//     options;
//   - without a client certificate the broker refuses the returner, which
//     logs why (and publishes nothing).
//
// What arrives decodes as the runs published, and the broker saw TLS
// connections with the client certificate.
func TestSaltReturnerAMQPS(t *testing.T) {
	if _, err := exec.Command("/usr/bin/python3", "-c", "import pika").CombinedOutput(); err != nil {
		t.Fatalf("/usr/bin/python3 with pika is needed (apt-get install python3-pika): %v", err)
	}
	dir := t.TempDir()
	pki := testpki.New(t, dir)
	node := startMTLSNode(t, pki, "rlsalt")

	// The consumer side, over mTLS too.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pki.CAPEM)
	cert, err := tls.LoadX509KeyPair(pki.ClientCert, pki.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := amqp.DialTLS(fmt.Sprintf("amqps://guest:guest@127.0.0.1:%d/", node.port),
		&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("consumer over mTLS: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	const exchange = "faults.salt.tls"
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	base := fmt.Sprintf("amqps://guest@127.0.0.1:%d/%%2F", node.port)
	withQuery := base + "?" + url.Values{"cacertfile": {pki.CAFile}, "certfile": {pki.ClientCert}, "keyfile": {pki.ClientKey}}.Encode()
	f01 := fixtures.Dir(t, "salt", "01-ret-state.apply-success-with-changes.json")
	f02 := fixtures.Dir(t, "salt", "02-ret-state.apply-failure-one-state-false.json")
	returner := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/usr/bin/python3", append([]string{filepath.Join("..", "producers", "salt", "tests", "e2e_publish.py")}, args...)...)
		cmd.Env = append(os.Environ(), fixtures.EnvShared+"="+filepath.Dir(fixtures.Dir(t)))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := returner(withQuery, "guest", exchange, f01); err != nil {
		t.Fatalf("returner with the TLS settings in the URL: %v\n%s", err, out)
	}
	if out, err := returner("--tls_ca_file="+pki.CAFile, "--tls_cert_file="+pki.ClientCert, "--tls_key_file="+pki.ClientKey,
		base, "guest", exchange, f02); err != nil {
		t.Fatalf("returner with the tls_* options: %v\n%s", err, out)
	}
	out, err := returner("--tls_ca_file="+pki.CAFile, "--timeout=5", base, "guest", exchange, f01)
	if err == nil || !strings.Contains(out, "could not publish") {
		t.Errorf("without a client certificate the returner should fail and say so; exit %v:\n%s", err, out)
	} else {
		t.Logf("without a client certificate: %s", lastErrLine(out))
	}

	got := map[string]*report.Run{}
	timeout := time.After(30 * time.Second)
	for len(got) < 2 {
		select {
		case d := <-deliveries:
			r, err := report.Decode(d.Body)
			if err != nil {
				t.Fatalf("decode %s: %v", d.MessageId, err)
			}
			got[r.ID] = r
		case <-timeout:
			t.Fatalf("got %d of 2 returns over amqps", len(got))
		}
	}
	select {
	case d := <-deliveries:
		t.Errorf("an extra message arrived (the certificate-less returner published?): %s", d.MessageId)
	case <-time.After(500 * time.Millisecond):
	}
	if r := got["20211109174620871797/d10-master-01.example.local"]; r == nil || r.Status != report.StatusSuccess || r.UpdatedCount != 2 {
		t.Errorf("fixture 01 over amqps: %+v", r)
	}
	if r := got["20181227105933129338/MacPro"]; r == nil || r.Status != report.StatusFailure || r.FailedCount != 1 {
		t.Errorf("fixture 02 over amqps: %+v", r)
	}
	if out, err := node.ctl(30*time.Second, "list_connections", "ssl", "peer_cert_subject", "client_properties"); err == nil {
		t.Logf("broker side: %s", strings.TrimSpace(out))
	}
}
