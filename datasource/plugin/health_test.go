package plugin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
)

func TestCheckHealth(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	e.publish(t, handlerJSON(run{node: "web-1", env: "prod", role: "web", id: "h1", end: now.Add(-time.Minute)}))
	// A fake Prometheus and Alertmanager answering the probes.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/query":
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"scalar","result":[0,"1"]}}`))
		case "/api/v2/status":
			_, _ = w.Write([]byte(`{"cluster":{"status":"ready","peers":[]},"config":{"original":""},"uptime":"2024-01-01T00:00:00Z","versionInfo":{"branch":"","buildDate":"","buildUser":"","goVersion":"","revision":"","version":"0.27"}}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()
	inst := e.start(t, map[string]any{"prometheusUrl": api.URL, "alertmanagerUrl": api.URL}, nil)
	e.waitReports(t, 1)
	res, err := inst.CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != backend.HealthStatusOk {
		t.Fatalf("health %v: %s", res.Status, res.Message)
	}
	for _, want := range []string{"1 nodes tracked", "1 reports replayed", "AMQP broker at amqp://guest:xxxxx@127.0.0.1:5672/", "Prometheus at " + api.URL + " OK", "Alertmanager at " + api.URL + " OK"} {
		if !strings.Contains(res.Message, want) {
			t.Errorf("health message lacks %q: %s", want, res.Message)
		}
	}
	var details map[string]any
	if err := json.Unmarshal(res.JSONDetails, &details); err != nil || details["nodes"] != float64(1) {
		t.Errorf("details %s", res.JSONDetails)
	}
}

func TestCheckHealthNamesWhatIsUnreachable(t *testing.T) {
	e := newEnv(t)
	// Wrong AMQP port and a Prometheus that is not listening.
	i, err := Factory(slogTo(e.logs))(context.Background(), e.settings(map[string]any{
		"amqpUrl": "amqp://guest@127.0.0.1:1/", "prometheusUrl": "http://127.0.0.1:1",
	}, nil))
	if err != nil {
		t.Fatal(err)
	}
	inst := i.(*Instance)
	defer inst.Dispose()
	res, _ := inst.CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if res.Status != backend.HealthStatusError {
		t.Fatalf("health OK with nothing reachable: %s", res.Message)
	}
	for _, want := range []string{"AMQP broker at amqp://guest:xxxxx@127.0.0.1:1/: connection refused", "Prometheus at http://127.0.0.1:1: ", "connection refused"} {
		if !strings.Contains(res.Message, want) {
			t.Errorf("health message lacks %q: %s", want, res.Message)
		}
	}
	if strings.Contains(res.Message, "Alertmanager") {
		t.Errorf("Alertmanager is not configured: %s", res.Message)
	}

	// A broker that is up but lacks the stream.
	s := inst.settings
	s.AMQPURL = "amqp://guest:guest@127.0.0.1:5672/"
	s.Stream = e.stream + ".missing"
	if err := checkAMQP(context.Background(), s); err == nil || !strings.Contains(err.Error(), "stream "+s.Stream+" not found") {
		t.Errorf("missing stream: %v", err)
	}
	// Bad credentials.
	s.AMQPURL = "amqp://guest:wrong@127.0.0.1:5672/"
	if err := checkAMQP(context.Background(), s); err == nil || !strings.Contains(err.Error(), "login refused") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("bad password: %v", err)
	}
}

func TestSettings(t *testing.T) {
	base := func(jd map[string]any, sec map[string]string) backend.DataSourceInstanceSettings {
		raw, _ := json.Marshal(jd)
		return backend.DataSourceInstanceSettings{UID: "u", JSONData: raw, DecryptedSecureJSONData: sec}
	}
	s, err := ParseSettings(context.Background(), base(map[string]any{"amqpUrl": "amqp://runlens@mq:5672/prod"}, map[string]string{"amqpPassword": "p@ss:w/rd"}))
	if err != nil {
		t.Fatal(err)
	}
	if s.AMQPURL != "amqp://runlens:p%40ss%3Aw%2Frd@mq:5672/prod" || s.RedactedAMQPURL() != "amqp://runlens:xxxxx@mq:5672/prod" {
		t.Errorf("url %s / %s", s.AMQPURL, s.RedactedAMQPURL())
	}
	if s.Exchange != "chef_reports" || s.Stream != "runlens.history" || s.Replay != 24*time.Hour || s.LiveInterval != time.Second ||
		s.ImpactWindow != 15*time.Minute || s.ImpactQuery != DefaultImpactQuery {
		t.Errorf("defaults: %+v", s)
	}
	for _, tc := range []struct {
		jd   map[string]any
		sec  map[string]string
		want string
	}{
		{map[string]any{}, nil, "amqpUrl is not set"},
		{map[string]any{"amqpUrl": "amqp://u:secretpw@mq/"}, nil, "holds a password"},
		{map[string]any{"amqpUrl": "http://mq/"}, nil, "scheme must be amqp"},
		{map[string]any{"amqpUrl": "amqp://mq/"}, map[string]string{"amqpPassword": "x"}, "names no user"},
		{map[string]any{"amqpUrl": "amqp://mq/", "replay": "1 day"}, nil, `replay "1 day"`},
		{map[string]any{"amqpUrl": "amqp://mq/", "liveInterval": "1ms"}, nil, "liveInterval"},
		{map[string]any{"amqpUrl": "amqp://mq/", "impactWindow": "-5m"}, nil, "impactWindow"},
		{map[string]any{"amqpUrl": "amqp://mq/", "prometheusUrl": "prom:9090"}, nil, "prometheusUrl"},
		{map[string]any{"amqpUrl": "amqp://mq/", "alertmanagerUrl": "ftp://am"}, nil, "alertmanagerUrl"},
		{map[string]any{"amqpUrl": "amqp://mq/", "topology": "web: [db"}, nil, "topology"},
	} {
		_, err := ParseSettings(context.Background(), base(tc.jd, tc.sec))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %q", tc.jd, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secretpw") {
			t.Errorf("error repeats the password: %v", err)
		}
	}
	// An invalid configuration still makes an instance; its health check
	// and every query say exactly what is wrong (Grafana shows only
	// "Plugin health check failed" when the factory fails).
	i, err := Factory(nil)(context.Background(), base(map[string]any{"amqpUrl": "amqp://mq/", "replay": "x", "topology": "web: [db"},
		map[string]string{"amqpPassword": "secretpw"}))
	if err != nil {
		t.Fatalf("factory: %v", err)
	}
	inst := i.(*Instance)
	defer inst.Dispose()
	res, err := inst.CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if err != nil || res.Status != backend.HealthStatusError {
		t.Fatalf("health of invalid settings: %+v %v", res, err)
	}
	for _, want := range []string{`replay "x" is not a Go duration`, "topology: yaml: line 1", "amqpPassword is set but amqpUrl"} {
		if !strings.Contains(res.Message, want) {
			t.Errorf("health message %q lacks %q", res.Message, want)
		}
	}
	q, err := inst.QueryData(context.Background(), &backend.QueryDataRequest{Queries: []backend.DataQuery{
		{RefID: "A", QueryType: "topology"}, {RefID: "B", QueryType: "runs"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"A", "B"} {
		if r := q.Responses[ref]; r.Error == nil || r.Error.Error() != res.Message {
			t.Errorf("query %s error %v, want the health message %q", ref, r.Error, res.Message)
		}
	}
	if sub, err := inst.SubscribeStream(context.Background(), &backend.SubscribeStreamRequest{Path: "topology/x/nodes"}); err != nil ||
		sub.Status != backend.SubscribeStreamStatusNotFound {
		t.Errorf("subscribe on invalid settings: %+v %v", sub, err)
	}
	if strings.Contains(res.Message, "secretpw") {
		t.Errorf("message repeats the password: %s", res.Message)
	}
}

// Every new setting: its default, and an error naming it and saying why.
func TestSettingsTLSAndLimits(t *testing.T) {
	pki := newTestPKI(t)
	base := func(jd map[string]any, sec map[string]string) backend.DataSourceInstanceSettings {
		raw, _ := json.Marshal(jd)
		return backend.DataSourceInstanceSettings{UID: "u", JSONData: raw, DecryptedSecureJSONData: sec}
	}
	s, err := ParseSettings(context.Background(), base(map[string]any{
		"amqpUrl": "amqps://runlens@mq:5671/", "amqpTlsCaCert": pki.caPEM, "amqpTlsClientCert": pki.clientCertPEM,
		"amqpTlsServerName": "rabbit.internal",
		"prometheusUrl":     "https://prom:9090", "prometheusTlsSkipVerify": true,
		"alertmanagerUrl": "https://am:9093", "alertmanagerTlsCaCert": pki.caPEM,
		"groupByRoleAbove": 50,
	}, map[string]string{"amqpTlsClientKey": pki.clientKeyPEM}))
	if err != nil {
		t.Fatal(err)
	}
	if s.AMQPTLSConfig == nil || s.AMQPTLSConfig.RootCAs == nil || len(s.AMQPTLSConfig.Certificates) != 1 || s.AMQPTLSConfig.ServerName != "rabbit.internal" {
		t.Errorf("AMQP TLS config %+v", s.AMQPTLSConfig)
	}
	if !s.PrometheusTLS.SkipVerify || s.AlertmanagerTLS.CACert == "" || s.GroupByRoleAbove != 50 || s.Proxy != nil {
		t.Errorf("settings %+v", s)
	}
	if d, _ := ParseSettings(context.Background(), base(map[string]any{"amqpUrl": "amqp://mq/"}, nil)); d.GroupByRoleAbove != 200 || d.AMQPTLSConfig != nil || d.HighlightScore != DefaultHighlightScore {
		t.Errorf("defaults: groupByRoleAbove %d, AMQP TLS %v, highlightScore %v", d.GroupByRoleAbove, d.AMQPTLSConfig, d.HighlightScore)
	}
	for _, tc := range []struct {
		jd   map[string]any
		sec  map[string]string
		want string
	}{
		{map[string]any{"amqpUrl": "amqp://mq/", "amqpTlsCaCert": pki.caPEM}, nil, "amqpTls options are set but amqpUrl is not an amqps:// URL"},
		{map[string]any{"amqpUrl": "amqps://mq/", "amqpTlsCaCert": "junk"}, nil, "amqpTlsCaCert holds no PEM certificate"},
		{map[string]any{"amqpUrl": "amqps://mq/", "amqpTlsClientCert": pki.clientCertPEM}, nil, "amqpTlsClientCert is set but the secure setting amqpTlsClientKey is not"},
		{map[string]any{"amqpUrl": "amqps://mq/"}, map[string]string{"amqpTlsClientKey": pki.clientKeyPEM}, "amqpTlsClientKey is set but amqpTlsClientCert is not"},
		{map[string]any{"amqpUrl": "amqps://mq/", "amqpTlsClientCert": pki.caPEM}, map[string]string{"amqpTlsClientKey": pki.clientKeyPEM}, "amqpTlsClientCert and amqpTlsClientKey: tls: private key does not match public key"},
		{map[string]any{"amqpUrl": "amqp://mq/", "prometheusUrl": "http://p", "prometheusTlsSkipVerify": true}, nil, "prometheusTls options are set but prometheusUrl is not an https:// URL"},
		{map[string]any{"amqpUrl": "amqp://mq/", "alertmanagerUrl": "https://a", "alertmanagerTlsCaCert": "x"}, nil, "alertmanagerTlsCaCert holds no PEM certificate"},
		{map[string]any{"amqpUrl": "amqp://mq/", "groupByRoleAbove": 0}, nil, "groupByRoleAbove 0 is not a whole number"},
		{map[string]any{"amqpUrl": "amqp://mq/", "groupByRoleAbove": "many"}, nil, "groupByRoleAbove many is not a whole number"},
		{map[string]any{"amqpUrl": "amqp://mq/", "groupByRoleAbove": 2.5}, nil, "groupByRoleAbove 2.5"},
		{map[string]any{"amqpUrl": "amqp://mq/", "highlightScore": -1}, nil, "highlightScore -1 is not a number of 0 or more"},
		{map[string]any{"amqpUrl": "amqp://mq/", "highlightScore": "high"}, nil, "highlightScore high is not a number"},
		{map[string]any{"amqpUrl": "amqp://mq/", "enableSecureSocksProxy": true}, nil, "enableSecureSocksProxy is set but Grafana's secure socks proxy is not enabled"},
	} {
		_, err := ParseSettings(context.Background(), base(tc.jd, tc.sec))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v\n want an error containing %q", tc.jd, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("error quotes the key: %v", err)
		}
	}
	// A number given as a string (provisioning YAML quoting it) is fine.
	if s, err := ParseSettings(context.Background(), base(map[string]any{"amqpUrl": "amqp://mq/", "groupByRoleAbove": "300"}, nil)); err != nil || s.GroupByRoleAbove != 300 {
		t.Errorf("groupByRoleAbove \"300\": %d %v", s.GroupByRoleAbove, err)
	}
	for raw, want := range map[any]float64{0: 0, "2.5": 2.5, 25: 25} {
		if s, err := ParseSettings(context.Background(), base(map[string]any{"amqpUrl": "amqp://mq/", "highlightScore": raw}, nil)); err != nil || s.HighlightScore != want {
			t.Errorf("highlightScore %v: %v %v, want %v", raw, s.HighlightScore, err, want)
		}
	}
}
