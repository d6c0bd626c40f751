//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/runlens/runlens/datasource/plugin"
	"github.com/runlens/runlens/internal/testlog"
	"github.com/runlens/runlens/internal/testpki"
	"github.com/runlens/runlens/pkg/broker"
)

// TestDatasourceAMQPS runs an extra RabbitMQ node whose only listener is
// AMQPS with mutual TLS required (as TestAMQPS does; the main node is not
// touched) and connects the Grafana datasource to it through its settings:
// amqpTlsCaCert and amqpTlsClientCert (PEM text in jsonData), the key in
// secureJsonData amqpTlsClientKey, amqpTlsServerName.
//
//   - With all of them the health check passes, the history replay
//     follows the stream over TLS (reports published over amqps show in
//     the topology), and the broker lists the datasource's connections as
//     TLS with the client certificate.
//   - Without the client certificate, or with a server name the broker's
//     certificate does not have, the health check fails and says why.
func TestDatasourceAMQPS(t *testing.T) {
	const reports = 20
	dir := t.TempDir()
	pki := testpki.New(t, dir)
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	node := startMTLSNode(t, pki, "rldstls")
	exchange, stream := "faults.dstls.ex", "faults.dstls.hist"

	newDS := func(name string, jd map[string]any, secure map[string]string) (*plugin.Instance, *testlog.Buffer) {
		t.Helper()
		settings := map[string]any{
			"amqpUrl": fmt.Sprintf("amqps://guest@127.0.0.1:%d/", node.port), "exchange": exchange, "stream": stream,
			"replay": "1h", "liveInterval": "1s",
		}
		for k, v := range jd {
			settings[k] = v
		}
		raw, _ := json.Marshal(settings)
		sec := map[string]string{"amqpPassword": "guest"}
		for k, v := range secure {
			sec[k] = v
		}
		logs := &testlog.Buffer{}
		i, err := plugin.Factory(slog.New(slog.NewTextHandler(logs, nil)))(context.Background(), backend.DataSourceInstanceSettings{
			UID: name, Name: name, JSONData: raw, DecryptedSecureJSONData: sec})
		if err != nil {
			t.Fatal(err)
		}
		inst := i.(*plugin.Instance)
		t.Cleanup(inst.Dispose)
		return inst, logs
	}
	health := func(inst *plugin.Instance) *backend.CheckHealthResult {
		t.Helper()
		res, err := inst.CheckHealth(context.Background(), &backend.CheckHealthRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	all := map[string]any{"amqpTlsCaCert": string(pki.CAPEM), "amqpTlsClientCert": read(pki.ClientCert), "amqpTlsServerName": "localhost"}
	key := map[string]string{"amqpTlsClientKey": read(pki.ClientKey)}

	// 1. Everything set.
	ds, logs := newDS("ds-mtls", all, key)
	if res := health(ds); res.Status != backend.HealthStatusOk {
		t.Fatalf("health with the TLS settings: %s\nlogs:\n%s", res.Message, logs)
	} else {
		t.Logf("health: %s", res.Message)
	}
	q := url.Values{"cacertfile": {pki.CAFile}, "certfile": {pki.ClientCert}, "keyfile": {pki.ClientKey}}
	pubURL := fmt.Sprintf("amqps://guest:guest@127.0.0.1:%d/?%s", node.port, q.Encode())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pub, err := broker.NewPublisher(ctx, pubURL, exchange, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("publisher over amqps: %v", err)
	}
	defer pub.Close()
	var bodies [][]byte
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	for i := range reports {
		bodies = append(bodies, handlerReport(fmt.Sprintf("dstls-%02d", i), "prod", fmt.Sprintf("run-%02d", i), end))
	}
	if err := pub.PublishAll(ctx, bodies, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, 100*time.Millisecond, "the datasource's topology to show the reports published over amqps", func() (bool, string) {
		ids, err := topologyNodeIDs(ds, `dstls-.*`)
		if err != nil {
			return false, err.Error()
		}
		return len(ids) == reports, fmt.Sprintf("%d of %d nodes", len(ids), reports)
	})
	out, err := node.ctl(30*time.Second, "list_connections", "name", "ssl", "peer_cert_subject", "client_properties", "--formatter", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		SSL     bool   `json:"ssl"`
		Subject string `json:"peer_cert_subject"`
		Props   any    `json:"client_properties"`
	}
	if err := json.Unmarshal([]byte(jsonPart(out)), &rows); err != nil {
		t.Fatalf("list_connections: %v: %q", err, out)
	}
	datasource := 0
	for _, r := range rows {
		if p := fmt.Sprint(r.Props); strings.Contains(p, "runlens-datasource") {
			datasource++
			if !r.SSL || !strings.Contains(r.Subject, "CN="+testpki.ClientName) {
				t.Errorf("datasource connection without TLS or its client certificate: %+v", r)
			}
		}
	}
	if datasource == 0 {
		t.Errorf("no datasource connection among %d: %q", len(rows), out)
	}

	// 2. No client certificate: the broker refuses, the health check says so.
	noCert := map[string]any{"amqpTlsCaCert": string(pki.CAPEM)}
	ds2, _ := newDS("ds-nocert", noCert, nil)
	if res := health(ds2); res.Status != backend.HealthStatusError || !strings.Contains(res.Message, "certificate") {
		t.Errorf("health without a client certificate: %v %s", res.Status, res.Message)
	} else {
		t.Logf("without a client certificate: %s", res.Message)
	}

	// 3. A server name the broker's certificate is not for.
	wrong := map[string]any{"amqpTlsCaCert": string(pki.CAPEM), "amqpTlsClientCert": read(pki.ClientCert), "amqpTlsServerName": "rabbit.example"}
	ds3, _ := newDS("ds-wrongname", wrong, key)
	if res := health(ds3); res.Status != backend.HealthStatusError || !strings.Contains(res.Message, "rabbit.example") {
		t.Errorf("health with a wrong server name: %v %s", res.Status, res.Message)
	} else {
		t.Logf("with a wrong server name: %s", res.Message)
	}
}
