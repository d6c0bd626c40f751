package plugin

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/runlens/runlens/internal/proctest"
	"github.com/runlens/runlens/internal/rabbittest"
)

func TestAlertHost(t *testing.T) {
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{"node": "web-1", "instance": "x:9100"}, "web-1"},
		{map[string]string{"instance": "web-1.example.internal:9100"}, "web-1.example.internal"},
		{map[string]string{"instance": "[::1]:9100"}, "::1"},
		{map[string]string{"instance": "web-1"}, "web-1"},
		{map[string]string{"host": "db-1"}, "db-1"},
		{map[string]string{"job": "x"}, ""},
	} {
		if got := alertHost(tc.labels); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.labels, got, tc.want)
		}
	}
}

// TestAlertOverlay runs the real Alertmanager (Debian
// prometheus-alertmanager), posts alerts to it and expects them on the
// topology's nodes.
func TestAlertOverlay(t *testing.T) {
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		t.Fatalf("prometheus-alertmanager is not installed: %v", err)
	}
	amURL := startAlertmanager(t, bin)
	now := time.Now()
	post := fmt.Sprintf(`[
 {"labels":{"alertname":"RunlensNodeRunFailing","node":"web-1"},"startsAt":%q},
 {"labels":{"alertname":"HighLatency","instance":"db-1.example.internal:9100"},"startsAt":%q},
 {"labels":{"alertname":"Silenced","host":"web-2"},"startsAt":%q,"endsAt":%q}
]`, now.Format(time.RFC3339), now.Format(time.RFC3339), now.Add(-time.Hour).Format(time.RFC3339), now.Add(-time.Minute).Format(time.RFC3339))
	resp, err := http.Post(amURL+"/api/v2/alerts", "application/json", bytes.NewBufferString(post))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("post alerts: %v %v", resp, err)
	}
	resp.Body.Close()

	e := newEnv(t)
	e.publish(t,
		handlerJSON(run{node: "web-1", env: "prod", role: "web", id: "o1", end: now.Add(-time.Minute)}),
		handlerJSON(run{node: "web-2", env: "prod", role: "web", id: "o2", end: now.Add(-time.Minute)}),
		handlerJSON(run{node: "db-1", env: "prod", role: "db", id: "o3", end: now.Add(-time.Minute)}),
	)
	inst := e.start(t, map[string]any{"alertmanagerUrl": amURL}, nil)
	e.waitReports(t, 3)
	var got string
	rabbittest.WaitFor(t, 10*time.Second, "alerts on the topology", func() bool {
		inst.alerts.mu.Lock()
		inst.alerts.fetched = time.Time{} // no waiting for the 15 s cache
		inst.alerts.mu.Unlock()
		f := mustFrames(t, inst, map[string]any{"queryType": "topology"}, now.Add(-time.Hour), time.Now())
		got = joined(t, f[0], "id") + " | " + strings.Join(col(t, f[0], "detail__alerts"), ";") + " | " + joined(t, f[0], "highlighted")
		return got == "db-1,web-1,web-2 | HighLatency;RunlensNodeRunFailing; | true,true,false"
	})
	res, _ := inst.CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if res.Status != backend.HealthStatusOk || !strings.Contains(res.Message, "Alertmanager at "+amURL+" OK") {
		t.Errorf("health: %s", res.Message)
	}
}

func startAlertmanager(t *testing.T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := "route:\n  receiver: none\nreceivers:\n  - name: none\n"
	if err := os.WriteFile(filepath.Join(dir, "am.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := proctest.FreeAddr(t)
	am := proctest.Start(t, dir, "alertmanager", bin, "--config.file="+filepath.Join(dir, "am.yml"),
		"--storage.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	url := "http://" + addr
	proctest.WaitReady(t, url+"/-/ready", 20*time.Second, am)
	return url
}
