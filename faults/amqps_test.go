//go:build faults

package faults

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/internal/testpki"
	"github.com/runlens/runlens/pkg/broker"
)

// TestAMQPS runs an extra RabbitMQ node whose only listener is AMQPS, with
// mutual TLS required (verify_peer, fail_if_no_peer_cert), certificates
// from a CA made by the test, and checks how the exporter connects to it:
//
//   - a client with the CA but no client certificate is refused by the
//     broker, one with both gets in (the node really enforces mTLS);
//   - the exporter, given the CA and its client certificate through the
//     amqps:// URL's query parameters cacertfile, certfile and keyfile
//     (which amqp091-go reads when no tls.Config is passed, the case in
//     pkg/broker's dial), consumes over TLS: runlens_amqp_up is 1, it is
//     ready (the history replay's connection goes over mTLS too), and every
//     report published over amqps (broker.Publisher, same URL) is counted;
//   - with the CA from SSL_CERT_FILE (Go's system pool on Linux) and only
//     certfile and keyfile in the URL, likewise;
//   - without a client certificate (CA via SSL_CERT_FILE) the exporter
//     stays down (runlens_amqp_up 0) and logs why, and without any CA it
//     fails the server verification (unknown authority).
func TestAMQPS(t *testing.T) {
	const reports = 500
	dir := t.TempDir()
	pki := testpki.New(t, dir)
	node := startMTLSNode(t, pki, "rltls")
	base := fmt.Sprintf("amqps://guest:guest@127.0.0.1:%d/", node.port)
	withQuery := func(kv ...string) string {
		q := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			q.Set(kv[i], kv[i+1])
		}
		return base + "?" + q.Encode()
	}
	mtlsURL := withQuery("cacertfile", pki.CAFile, "certfile", pki.ClientCert, "keyfile", pki.ClientKey)

	// The node enforces mTLS: no client certificate, no connection.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pki.CAPEM)
	if c, err := amqp.DialTLS(base, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}); err == nil {
		c.Close()
		t.Fatal("connected without a client certificate: the node does not require one")
	} else {
		t.Logf("without a client certificate the broker refuses: %v", err)
	}
	c, err := amqp.Dial(mtlsURL)
	if err != nil {
		t.Fatalf("mTLS with the URL's cacertfile/certfile/keyfile: %v", err)
	}
	st := c.ConnectionState()
	c.Close()
	t.Logf("amqp091-go with the URL's TLS parameters: %s, %s, peer %s",
		tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.PeerCertificates[0].Subject.CommonName)

	n := names{exchange: "faults.tls.ex", queue: "faults.tls.q", dlq: "faults.tls.q.dead", stream: "faults.tls.hist"}

	// 1. CA and client certificate in the URL. Default history replay: its
	// connection must get through too before the exporter is ready.
	start := time.Now()
	e := startExporter(t, "exporter-mtls", n.args(mtlsURL)...)
	t.Logf("exporter-mtls ready over amqps %s after start", time.Since(start).Round(time.Millisecond))
	waitUp(t, e, 1, 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pub, err := broker.NewPublisher(ctx, mtlsURL, n.exchange, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("publisher over amqps: %v", err)
	}
	defer pub.Close()
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	var bodies [][]byte
	for i := range reports {
		bodies = append(bodies, handlerReport(fmt.Sprintf("tls-%04d", i), "prod", fmt.Sprintf("run-%04d", i), end))
	}
	pubStart := time.Now()
	if err := pub.PublishAll(ctx, bodies, 0); err != nil {
		t.Fatalf("publishing over amqps: %v", err)
	}
	waitFor(t, 30*time.Second, 100*time.Millisecond, "every report counted by exporter-mtls", func() (bool, string) {
		s, err := e.scrape("runlens_runs_total")
		if err != nil {
			return false, err.Error()
		}
		runs := s.byNode("runlens_runs_total")
		got := 0
		for i := range reports {
			if runs[fmt.Sprintf("tls-%04d", i)] == 1 {
				got++
			}
		}
		return got == reports && len(runs) == reports, fmt.Sprintf("%d of %d nodes counted once (%d series)", got, reports, len(runs))
	})
	t.Logf("%d reports published and counted over amqps in %s", reports, time.Since(pubStart).Round(time.Millisecond))
	if s := e.mustScrape("runlens_amqp_up", "runlens_reports_total"); s.sum("runlens_amqp_up") != 1 || s.reports("rejected") != 0 {
		t.Errorf("exporter-mtls: runlens_amqp_up %v, %v rejected", s.sum("runlens_amqp_up"), s.reports("rejected"))
	}
	// The broker's view: every connection is TLS with the client certificate.
	out, err := node.ctl(30*time.Second, "list_connections", "ssl", "ssl_protocol", "peer_cert_subject", "--formatter", "json")
	if err != nil {
		t.Error(err)
	} else {
		var rows []struct {
			SSL      bool   `json:"ssl"`
			Protocol string `json:"ssl_protocol"`
			Subject  string `json:"peer_cert_subject"`
		}
		if err := json.Unmarshal([]byte(jsonPart(out)), &rows); err != nil || len(rows) == 0 {
			t.Errorf("list_connections: %v: %q", err, out)
		}
		for _, r := range rows {
			if !r.SSL || !strings.Contains(r.Subject, "CN="+testpki.ClientName) {
				t.Errorf("connection without TLS or the client certificate: %+v", r)
			}
		}
		t.Logf("broker side: %d connections (exporter consumer, publisher), all %+v", len(rows), rows)
	}
	e.stop()

	// 2. CA from SSL_CERT_FILE, client certificate in the URL.
	t.Setenv("SSL_CERT_FILE", pki.CAFile)
	e2 := startExporter(t, "exporter-sslcertfile", n.args(withQuery("certfile", pki.ClientCert, "keyfile", pki.ClientKey), "--history.replay=0")...)
	waitUp(t, e2, 1, 30*time.Second)
	t.Logf("exporter with the CA from SSL_CERT_FILE and certfile/keyfile in the URL: runlens_amqp_up 1")
	e2.stop()

	// 3. CA from SSL_CERT_FILE, no client certificate: refused.
	e3 := startExporterNoWait(t, "exporter-nocert", n.args(base, "--history.replay=0")...)
	waitLog(t, e3, 30*time.Second)
	waitUp(t, e3, 0, 5*time.Second)
	t.Logf("exporter without a client certificate: runlens_amqp_up 0; it logs: %s", lastErrLine(e3.logs()))
	e3.stop()

	// 4. No CA at all (system roots only): the server is not trusted.
	t.Setenv("SSL_CERT_FILE", filepath.Join(dir, "no-such-file.pem"))
	t.Setenv("SSL_CERT_DIR", filepath.Join(dir, "no-such-dir"))
	e4 := startExporterNoWait(t, "exporter-noca", n.args(withQuery("certfile", pki.ClientCert, "keyfile", pki.ClientKey), "--history.replay=0")...)
	waitLog(t, e4, 30*time.Second)
	waitUp(t, e4, 0, 5*time.Second)
	if l := lastErrLine(e4.logs()); !strings.Contains(l, "certificate") {
		t.Errorf("exporter without the CA: want a certificate error in its log, got %q", l)
	} else {
		t.Logf("exporter without the CA: runlens_amqp_up 0; it logs: %s", l)
	}
	e4.stop()
}

// waitUp waits until the exporter's runlens_amqp_up is want.
func waitUp(t *testing.T, e *exporter, want float64, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, 100*time.Millisecond, fmt.Sprintf("%s runlens_amqp_up = %v", e.name, want), func() (bool, string) {
		s, err := e.scrape("runlens_amqp_up")
		if err != nil {
			return false, err.Error()
		}
		if !s.has("runlens_amqp_up") {
			return false, "no runlens_amqp_up"
		}
		return s.sum("runlens_amqp_up") == want, fmt.Sprintf("runlens_amqp_up = %v", s.sum("runlens_amqp_up"))
	})
}

// waitLog waits until the exporter logged a failed connection attempt.
func waitLog(t *testing.T, e *exporter, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, 100*time.Millisecond, e.name+" to log a failed connection", func() (bool, string) {
		return lastErrLine(e.logs()) != "", "nothing logged yet"
	})
}

// lastErrLine is the cause in the last log line that mentions a TLS or
// connection error (the whole line if it has no err=).
func lastErrLine(logs string) string {
	lines := strings.Split(logs, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if strings.Contains(l, "tls") || strings.Contains(l, "certificate") || strings.Contains(l, "connect to") {
			if j := strings.LastIndex(l, ": "); j >= 0 && strings.Contains(l, "err=") {
				return strings.Trim(strings.SplitN(l[j+2:], " retry_in=", 2)[0], ` \"`)
			}
			return l
		}
	}
	return ""
}

// startMTLSNode starts an extra RabbitMQ node (see startRabbitNodes) whose
// only listener is AMQPS with pki's server certificate, and which requires a
// client certificate signed by pki's CA (verify_peer, fail_if_no_peer_cert).
func startMTLSNode(t *testing.T, pki *testpki.PKI, prefix string) *rabbitNode {
	t.Helper()
	conf := strings.Join([]string{
		"listeners.tcp = none",
		"listeners.ssl.default = 127.0.0.1:%PORT%",
		"ssl_options.cacertfile = " + pki.CAFile,
		"ssl_options.certfile = " + pki.ServerCert,
		"ssl_options.keyfile = " + pki.ServerKey,
		"ssl_options.verify = verify_peer",
		"ssl_options.fail_if_no_peer_cert = true",
		"",
	}, "\n")
	return startRabbitNodes(t, erlangHome(t), prefix, conf)[0]
}
