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
	s, err := ParseSettings(base(map[string]any{"amqpUrl": "amqp://runlens@mq:5672/prod"}, map[string]string{"amqpPassword": "p@ss:w/rd"}))
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
		_, err := ParseSettings(base(tc.jd, tc.sec))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %q", tc.jd, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secretpw") {
			t.Errorf("error repeats the password: %v", err)
		}
	}
	// The factory fails with the reason.
	if _, err := Factory(nil)(context.Background(), base(map[string]any{"amqpUrl": "amqp://mq/", "replay": "x"}, nil)); err == nil ||
		!strings.Contains(err.Error(), "replay") {
		t.Errorf("factory: %v", err)
	}
}
