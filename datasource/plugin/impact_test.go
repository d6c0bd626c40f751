package plugin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/runlens/runlens/internal/proctest"
	"github.com/runlens/runlens/internal/rabbittest"
)

func TestExpandImpactQuery(t *testing.T) {
	got := expandImpactQuery(`x{node="$node",r="${role}",e="$environment"} / y{e="${environment}"}`, `we"b\1`, "web", "prod")
	if want := `x{node="we\"b\\1",r="web",e="prod"} / y{e="prod"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// fakeProm answers from a function of (query, time).
type fakeProm struct {
	f     func(q string, ts time.Time) (model.Value, error)
	calls atomic.Int64
}

func (p *fakeProm) Query(_ context.Context, q string, ts time.Time) (model.Value, error) {
	p.calls.Add(1)
	return p.f(q, ts)
}

func vec(v float64) model.Value { return model.Vector{{Value: model.SampleValue(v)}} }

func TestImpactRanking(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, map[string]any{"impactQuery": `err{node="$node",role="$role",env="$environment"}`, "impactWindow": "5m"}, nil)
	now := time.Now().Truncate(time.Second)
	e.publish(t,
		handlerJSON(run{node: "a", env: "prod", role: "web", id: "i1", end: now.Add(-50 * time.Minute), updated: []string{"file[x]"}}),
		handlerJSON(run{node: "b", env: "prod", role: "web", id: "i2", end: now.Add(-40 * time.Minute), updated: []string{"file[x]"}}),
		handlerJSON(run{node: "c", env: "prod", role: "db", id: "i3", end: now.Add(-30 * time.Minute), failed: true}),
		handlerJSON(run{node: "d", env: "prod", role: "db", id: "i4", end: now.Add(-20 * time.Minute), updated: []string{"file[x]"}}),
		handlerJSON(run{node: "quiet", env: "prod", role: "web", id: "i5", end: now.Add(-10 * time.Minute)}), // no change
	)
	e.waitReports(t, 5)
	// before/after per node; d has no data.
	values := map[string][2]float64{"a": {0.01, 0.02}, "b": {0.01, 0.30}, "c": {0.05, 0.01}}
	fp := &fakeProm{f: func(q string, ts time.Time) (model.Value, error) {
		for n, v := range values {
			if strings.Contains(q, `node="`+n+`"`) {
				// "after" is evaluated at end+5m, "before" at the start.
				for _, run := range inst.history.Runs(now.Add(-time.Hour), now) {
					if run.Node == n && ts.Equal(run.End.Add(5*time.Minute)) {
						return vec(v[1]), nil
					}
				}
				return vec(v[0]), nil
			}
		}
		return model.Vector{}, nil
	}}
	inst.prom = fp
	f := mustFrames(t, inst, map[string]any{"queryType": "impact"}, now.Add(-time.Hour), now)[0]
	if got := joined(t, f, "node"); got != "b,a,c,d" {
		t.Errorf("ranking %s, want b,a,c,d (d without data last)", got)
	}
	if got := col(t, f, "delta"); got[0] != "0.29" || got[3] != "" {
		t.Errorf("deltas %v", got)
	}
	if got := col(t, f, "title"); got[2] != "c: run failed" {
		t.Errorf("titles %v", got)
	}
	if q := col(t, f, "query")[0]; q != `err{node="b",role="web",env="prod"}` {
		t.Errorf("query %s", q)
	}
	for _, name := range []string{"time", "node", "environment", "role", "before", "after", "delta", "title"} {
		if _, i := f.FieldByName(name); i < 0 {
			t.Errorf("no field %q", name)
		}
	}
	// Filtered.
	f = mustFrames(t, inst, map[string]any{"queryType": "impact", "role": "db"}, now.Add(-time.Hour), now)[0]
	if got := joined(t, f, "node"); got != "c,d" {
		t.Errorf("role db: %s", got)
	}
	// Prometheus failing: an error naming Prometheus.
	fp.f = func(string, time.Time) (model.Value, error) { return nil, errors.New("connection refused") }
	r := query(t, inst, map[string]any{"queryType": "impact"}, now.Add(-time.Hour), now)
	if r.Error == nil || !strings.Contains(r.Error.Error(), "Prometheus at") {
		t.Errorf("error %v", r.Error)
	}
	// Not configured.
	inst.prom = nil
	r = query(t, inst, map[string]any{"queryType": "impact"}, now.Add(-time.Hour), now)
	if r.Error == nil || !strings.Contains(r.Error.Error(), "prometheusUrl") {
		t.Errorf("error %v", r.Error)
	}
}

// TestImpactWithPrometheus runs the real Prometheus (Debian package)
// scraping a test application whose error ratio jumps after a change.
func TestImpactWithPrometheus(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed (apt-get install prometheus): %v", err)
	}
	var (
		mu     sync.Mutex
		ratios = map[string]float64{"web": 0, "db": 0}
	)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		for svc, v := range ratios {
			fmt.Fprintf(w, "app_error_ratio{service=%q,environment=\"prod\"} %g\n", svc, v)
		}
	}))
	defer app.Close()
	promURL := startPrometheus(t, bin, strings.TrimPrefix(app.URL, "http://"))

	e := newEnv(t)
	inst := e.start(t, map[string]any{
		"prometheusUrl": promURL, "impactWindow": "1s",
		"impactQuery": `max(app_error_ratio{service="$role",environment="$environment"})`,
	}, nil)
	waitProm := func(svc string, want float64) time.Time {
		t.Helper()
		rabbittest.WaitFor(t, 20*time.Second, fmt.Sprintf("Prometheus to scrape %s=%g", svc, want), func() bool {
			v, err := inst.prom.Query(context.Background(), fmt.Sprintf(`app_error_ratio{service=%q}`, svc), time.Now())
			s := sampleValue(v)
			return err == nil && s != nil && *s == want
		})
		return time.Now()
	}
	waitProm("web", 0)
	// Reports carry whole seconds: the change starts at least a second
	// after Prometheus' first sample.
	time.Sleep(1500 * time.Millisecond)
	before := time.Now()
	time.Sleep(600 * time.Millisecond)
	mu.Lock()
	ratios["web"] = 0.25
	ratios["db"] = 0.01
	mu.Unlock()
	waitProm("web", 0.25)
	end := waitProm("db", 0.01) // end + impactWindow is after the jump
	e.publish(t,
		handlerJSON(run{node: "web-1", env: "prod", role: "web", id: "p1", start: before, end: end, updated: []string{"file[x]"}}),
		handlerJSON(run{node: "db-1", env: "prod", role: "db", id: "p2", start: before, end: end, updated: []string{"file[y]"}}),
	)
	e.waitReports(t, 2)
	time.Sleep(1200 * time.Millisecond) // end + impactWindow is past
	f := mustFrames(t, inst, map[string]any{"queryType": "impact"}, before.Add(-time.Minute), time.Now())[0]
	if got := joined(t, f, "node"); got != "web-1,db-1" {
		t.Fatalf("ranking %s; before %s after %s at %s / %s (start %s end %s)", got, joined(t, f, "before"), joined(t, f, "after"),
			joined(t, f, "time"), joined(t, f, "afterTime"), before, end)
	}
	if got := joined(t, f, "before") + " " + joined(t, f, "after"); got != "0,0 0.25,0.01" {
		t.Errorf("before/after %s", got)
	}
	// The health check's probe against the real Prometheus.
	if err := checkPrometheus(context.Background(), inst.settings); err != nil {
		t.Errorf("checkPrometheus: %v", err)
	}
}

func startPrometheus(t *testing.T, bin, target string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 500ms\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := proctest.FreeAddr(t)
	prom := proctest.Start(t, dir, "prometheus", bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	url := "http://" + addr
	proctest.WaitReady(t, url+"/-/ready", 20*time.Second, prom)
	return url
}
