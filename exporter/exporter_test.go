package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/bcrypt"

	"github.com/runlens/runlens/internal/fixtures"
	"github.com/runlens/runlens/internal/proctest"
	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/internal/testlog"
	"github.com/runlens/runlens/internal/testpki"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/simulator"
	"github.com/runlens/runlens/pkg/snapshot"
)

// harness runs the exporter in-process against the real broker, with
// exchange, queues and stream named for the test alone.
type harness struct {
	t                            *testing.T
	exchange, queue, dlq, stream string
	addr                         string
	url                          string
	extra                        []string
	cancel                       context.CancelFunc
	done                         chan int
	logs                         *testlog.Buffer
}

func newHarness(t *testing.T, extra ...string) *harness {
	t.Helper()
	h := &harness{
		t:        t,
		exchange: rabbittest.Name(t, "ex"),
		queue:    rabbittest.Name(t, "q"),
		stream:   rabbittest.Name(t, "hist"),
		url:      rabbittest.URL,
		extra:    extra,
		logs:     &testlog.Buffer{},
	}
	h.dlq = h.queue + ".dead"
	rabbittest.DeleteQueues(t, h.queue, h.dlq, h.stream, h.stream+snapshot.StreamSuffix)
	rabbittest.DeleteExchanges(t, h.exchange, h.queue+".dlx")
	return h
}

// start runs the exporter and waits until it is ready.
func (h *harness) start() {
	h.t.Helper()
	h.launch()
	h.waitFor("ready", func() bool {
		resp, err := http.Get("http://" + h.addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// args are the exporter's flags for the harness's names, on a fresh listen
// address (h.addr), followed by the extra ones.
func (h *harness) args() []string {
	h.addr = proctest.FreeAddr(h.t)
	return append([]string{
		"--amqp.url=" + h.url, "--amqp.exchange=" + h.exchange, "--amqp.queue=" + h.queue,
		"--history.stream=" + h.stream, "--web.listen-address=" + h.addr, "--log.level=info",
	}, h.extra...)
}

// launch runs the exporter without waiting for it.
func (h *harness) launch() {
	h.t.Helper()
	args := h.args()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan int, 1)
	go func() { h.done <- run(ctx, args, io.Discard, h.logs) }()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case code := <-h.done:
		if code != 0 {
			h.t.Errorf("exporter exited %d; logs:\n%s", code, h.logs)
		}
	case <-time.After(20 * time.Second):
		h.t.Errorf("exporter did not stop within 20s")
	}
	h.cancel = nil
}

func (h *harness) waitFor(what string, ok func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s; logs:\n%s", what, h.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *harness) publish(bodies ...[]byte) {
	h.t.Helper()
	p, err := broker.NewPublisher(context.Background(), rabbittest.URL, h.exchange, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	defer p.Close()
	if err := p.PublishAll(context.Background(), bodies, 0); err != nil {
		h.t.Fatal(err)
	}
}

// scrape returns every sample as "name{k="v",…}" → value, labels sorted
// (see parseScrape).
func (h *harness) scrape() map[string]float64 {
	h.t.Helper()
	return parseScrape(h.t, fetchMetrics(h.t, h.addr))
}

// fetchMetrics GETs /metrics (no gzip) and returns the body, failing on any
// status but 200.
func fetchMetrics(t *testing.T, addr string) []byte {
	t.Helper()
	client := http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading /metrics: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	return b
}

// parseScrape returns every sample of a scrape's body as
// "name{k="v",…}" → value, labels sorted; a histogram as its
// name_count{…}.
func parseScrape(t *testing.T, body []byte) map[string]float64 {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("scrape is not valid text exposition: %v", err)
	}
	out := map[string]float64{}
	for name, mf := range families {
		for _, m := range mf.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			key := name + "{" + strings.Join(ls, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[name+"_count{"+strings.Join(ls, ",")+"}"] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

func (h *harness) reports(format, outcome string) float64 {
	return h.scrape()[fmt.Sprintf(`runlens_reports_total{format=%q,outcome=%q}`, format, outcome)]
}

func (h *harness) totalReports() float64 {
	var n float64
	for k, v := range h.scrape() {
		if strings.HasPrefix(k, "runlens_reports_total{") {
			n += v
		}
	}
	return n
}

func nodeKey(metric, node, env string) string {
	return fmt.Sprintf(`%s{environment=%q,node=%q}`, metric, env, node)
}

func fixture(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(fixtures.Dir(t, parts...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func handlerReport(node, env, id string, end time.Time, status string, updated ...string) []byte {
	res := `[]`
	if len(updated) > 0 {
		res = `["` + strings.Join(updated, `","`) + `"]`
	}
	return []byte(fmt.Sprintf(`{"node_name":%q,"fqdn":"%s.example.com","ip_address":"10.0.0.1","environment":%q,"status":%q,`+
		`"run_start_time":%q,"run_end_time":%q,"run_elapsed_time":30,"updated_resources_count":%d,"updated_resources":%s,"run_id":%q,"roles":["web","base"]}`,
		node, node, env, status, end.Add(-30*time.Second).UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), len(updated), res, id))
}

// One of each format, a duplicate, an out-of-order run, garbage and an
// oversized message: exact values on /metrics, rejects in the DLQ.
func TestExporterEndToEnd(t *testing.T) {
	h := newHarness(t, "--report.max-bytes=400000", "--history.replay=0")
	h.start()
	now := time.Now().Add(-time.Minute).Truncate(time.Second)

	newer := handlerReport("web-1", "prod", "run-2", now, "failure", "file[/etc/a]", "package[nginx]", "service[nginx]")
	older := handlerReport("web-1", "prod", "run-1", now.Add(-30*time.Minute), "success", "file[/etc/a]")
	oversize := append([]byte(`{"node_name":"big","x":"`), bytes.Repeat([]byte("a"), 500_000)...)
	oversize = append(oversize, []byte(`"}`)...)
	h.publish(
		newer,
		older, // arrives after the newer run: counted, but the gauges stay on run-2
		newer, // a duplicate
		fixture(t, "chef", "02-run_start-resource-failure.json"),
		fixture(t, "chef", "03-run_converge-two-roles-success-129res.json"),
		fixture(t, "salt", "02-ret-state.apply-failure-one-state-false.json"),
		fixture(t, "chef", "05-run_start-MALFORMED-trailing-comma.json"),
		[]byte("\x00\x01 not json"),
		oversize,
	)
	h.waitFor("9 reports", func() bool { return h.totalReports() == 9 })
	m := h.scrape()

	want := map[string]float64{
		`runlens_reports_total{format="chef_handler",outcome="processed"}`:        2,
		`runlens_reports_total{format="chef_handler",outcome="duplicate"}`:        1,
		`runlens_reports_total{format="chef_data_collector",outcome="processed"}`: 2,
		`runlens_reports_total{format="salt",outcome="processed"}`:                1,
		nodeKey("runlens_runs_total", "web-1", "prod"):                            2,
		nodeKey("runlens_run_failures_total", "web-1", "prod"):                    1,
		nodeKey("runlens_updated_resources_total", "web-1", "prod"):               4,
		nodeKey("runlens_last_run_success", "web-1", "prod"):                      0,
		nodeKey("runlens_last_run_updated_resources", "web-1", "prod"):            3,
		nodeKey("runlens_last_run_duration_seconds", "web-1", "prod"):             30,
		nodeKey("runlens_last_run_timestamp_seconds", "web-1", "prod"):            float64(now.Unix()),
		// fixture 03: 63 updated resources (68 records), success, environment _default
		nodeKey("runlens_runs_total", "chef-client-dev-2.test", "_default"):                 1,
		nodeKey("runlens_run_failures_total", "chef-client-dev-2.test", "_default"):         0,
		nodeKey("runlens_last_run_success", "chef-client-dev-2.test", "_default"):           1,
		nodeKey("runlens_last_run_updated_resources", "chef-client-dev-2.test", "_default"): 63,
		// Salt fixture 02: retcode 2 → failure despite success:true; no saltenv → base
		nodeKey("runlens_runs_total", "MacPro", "base"):                              1,
		nodeKey("runlens_run_failures_total", "MacPro", "base"):                      1,
		nodeKey("runlens_last_run_success", "MacPro", "base"):                        0,
		`runlens_resource_updates_total{environment="prod",resource_type="file"}`:    2,
		`runlens_resource_updates_total{environment="prod",resource_type="package"}`: 1,
		`runlens_amqp_up{}`:                                      1,
		`runlens_report_delay_seconds_count{}`:                   4,
		`runlens_run_duration_seconds_count{environment="prod"}`: 2,
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	rejected := 0.0
	for k, v := range m {
		if strings.HasPrefix(k, "runlens_reports_total{") && strings.Contains(k, `outcome="rejected"`) {
			rejected += v
		}
	}
	if rejected != 3 {
		t.Errorf("rejected = %v, want 3", rejected)
	}
	// The run_start of fixture 02 alone makes a node known but not exported
	// (no environment yet): 4 nodes tracked, 3 exported.
	if m[`runlens_nodes{}`] != 4 {
		t.Errorf("runlens_nodes = %v, want 4", m[`runlens_nodes{}`])
	}
	if k := nodeKey("runlens_runs_total", "insights.chef.co", ""); m[k] != 0 {
		t.Errorf("node with only a run_start exported: %s", k)
	}
	info := `runlens_node_info{environment="prod",fqdn="web-1.example.com",ip_address="10.0.0.1",node="web-1",roles="base,web",source="chef"}`
	if m[info] != 1 {
		t.Errorf("%s missing", info)
	}

	dead := rabbittest.Get(t, h.dlq, 10)
	if len(dead) != 3 {
		t.Fatalf("DLQ holds %d messages, want 3", len(dead))
	}
	reasons := map[string]bool{}
	for _, d := range dead {
		r, _ := d.Headers["x-runlens-reason"].(string)
		if r == "" {
			t.Errorf("dead-lettered message without reason header: %q", d.Body[:min(40, len(d.Body))])
		}
		reasons[r] = true
	}
	if !containsAll(reasons, "JSON", "JSON", "bytes") {
		t.Errorf("reasons %v should name invalid JSON and the size", reasons)
	}
	if !bytes.Equal(dead[0].Body, fixture(t, "chef", "05-run_start-MALFORMED-trailing-comma.json")) {
		t.Errorf("first dead letter is not the malformed fixture byte for byte")
	}
	if strings.Count(h.logs.String(), "report rejected") != 3 || strings.Count(h.logs.String(), "reason=") != 3 {
		t.Errorf("each rejection should be logged once:\n%s", h.logs)
	}
}

func containsAll(set map[string]bool, subs ...string) bool {
	for _, s := range subs {
		found := false
		for k := range set {
			if strings.Contains(k, s) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Cutting the connection mid-stream loses nothing and counts nothing twice.
func TestExporterSurvivesConnectionCuts(t *testing.T) {
	proxy := rabbittest.NewProxy(t)
	h := newHarness(t, "--history.replay=0", "--amqp.prefetch=50")
	h.url = proxy.URL()
	h.start()

	fleet := simulator.New(simulator.Config{Nodes: 200, Seed: 11, NodeAttributeBytes: 256})
	var bodies [][]byte
	runs := 0
	for round := range 10 {
		for _, r := range fleet.Round(time.Now().Add(time.Duration(round-20)*time.Minute), time.Minute, simulator.Random) {
			bodies = append(bodies, r.Messages...)
			runs++
		}
	}
	go h.publish(bodies...)
	for cut := range 3 {
		h.waitFor("progress before a cut", func() bool { return h.totalReports() > float64((cut+1)*len(bodies)/5) })
		proxy.CutAll()
	}
	h.waitFor("all reports", func() bool {
		m := h.scrape()
		return m[`runlens_reports_total{format="chef_handler",outcome="processed"}`]+
			m[`runlens_reports_total{format="chef_data_collector",outcome="processed"}`]+
			m[`runlens_reports_total{format="salt",outcome="processed"}`] >= float64(len(bodies))
	})
	m := h.scrape()
	var sum float64
	for k, v := range m {
		if strings.HasPrefix(k, "runlens_runs_total{") {
			sum += v
		}
	}
	if sum != float64(runs) {
		t.Errorf("sum of runlens_runs_total = %v, published %d runs", sum, runs)
	}
	for _, o := range []string{"rejected"} {
		for _, f := range report.Formats {
			if v := h.reports(string(f), o); v != 0 {
				t.Errorf("%s %s = %v", f, o, v)
			}
		}
	}
	if !strings.Contains(h.logs.String(), "reconnect") {
		t.Errorf("no reconnect logged:\n%s", h.logs)
	}
}

// After a restart the per-node gauges come back from the history stream at
// once, while counters restart from zero.
func TestExporterRestoresGaugesAfterRestart(t *testing.T) {
	h := newHarness(t)
	h.start()
	end := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	h.publish(handlerReport("db-1", "prod", "r1", end, "failure", "file[/etc/db.conf]"))
	h.waitFor("first report", func() bool { return h.reports("chef_handler", "processed") == 1 })
	h.stop()

	h2 := newHarness(t)
	h2.exchange, h2.queue, h2.dlq, h2.stream, h2.extra = h.exchange, h.queue, h.dlq, h.stream, h.extra
	h2.start() // ready means the history replay caught up
	m := h2.scrape()
	if got := m[nodeKey("runlens_last_run_timestamp_seconds", "db-1", "prod")]; got != float64(end.Unix()) {
		t.Errorf("last run timestamp after restart = %v, want %v", got, end.Unix())
	}
	if got, ok := m[nodeKey("runlens_last_run_success", "db-1", "prod")]; !ok || got != 0 {
		t.Errorf("last run success after restart = %v (present %v), want 0", got, ok)
	}
	if got, ok := m[nodeKey("runlens_runs_total", "db-1", "prod")]; !ok || got != 0 {
		t.Errorf("runs_total after restart = %v (present %v), want 0: replayed history is not counted", got, ok)
	}
	// A report published while the exporter was down is still counted once.
	h2.publish(handlerReport("db-1", "prod", "r2", end.Add(time.Minute), "success"))
	h2.waitFor("second report", func() bool { return h2.reports("chef_handler", "processed") == 1 })
	m = h2.scrape()
	if m[nodeKey("runlens_runs_total", "db-1", "prod")] != 1 || m[nodeKey("runlens_last_run_success", "db-1", "prod")] != 1 {
		t.Errorf("after a new run: runs %v success %v", m[nodeKey("runlens_runs_total", "db-1", "prod")], m[nodeKey("runlens_last_run_success", "db-1", "prod")])
	}
}

func TestExporterExpiresDepartedNodes(t *testing.T) {
	// Long enough that the node cannot expire before the first scrape.
	h := newHarness(t, "--node.ttl=10s", "--history.replay=0")
	h.start()
	h.publish(handlerReport("gone-1", "dev", "g1", time.Now(), "success"))
	h.waitFor("report", func() bool { return h.reports("chef_handler", "processed") == 1 })
	if _, ok := h.scrape()[nodeKey("runlens_runs_total", "gone-1", "dev")]; !ok {
		t.Fatal("node not exported")
	}
	rabbittest.WaitFor(t, time.Minute, "expiry", func() bool {
		for k := range h.scrape() {
			if strings.Contains(k, `node="gone-1"`) {
				return false
			}
		}
		return true
	})
}

// The password reaches the broker but never the logs, the help or the page.
func TestExporterKeepsThePasswordSecret(t *testing.T) {
	user, password := "runlens-test-"+rabbittest.Name(t, "u")[:20], "pw-"+rabbittest.Name(t, "secret")
	rabbitctl(t, "add_user", user, password)
	t.Cleanup(func() { _ = exec.Command("rabbitmqctl", "-q", "delete_user", user).Run() })
	rabbitctl(t, "set_permissions", "-p", "/", user, ".*", ".*", ".*")

	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, "--amqp.password-file="+pwFile, "--history.replay=0")
	h.url = "amqp://" + user + "@127.0.0.1:5672/"
	h.start()
	h.publish(handlerReport("s-1", "prod", "s1", time.Now(), "success"))
	h.waitFor("report", func() bool { return h.reports("chef_handler", "processed") == 1 })
	resp, err := http.Get("http://" + h.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	h.stop()

	t.Setenv("RUNLENS_AMQP_URL", "amqp://"+user+":"+password+"@127.0.0.1:5672/")
	var help bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &help, &help); code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for what, text := range map[string]string{"logs": h.logs.String(), "landing page": string(page), "help": help.String()} {
		if strings.Contains(text, password) {
			t.Errorf("the password appears in the %s", what)
		}
	}
	if !strings.Contains(h.logs.String(), user) {
		t.Errorf("logs should name the user (redacted URL); got:\n%s", h.logs)
	}
}

func rabbitctl(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
	}
}

func TestFlagErrors(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"--amqp.prefetch=0"}, &out, &out); code != 2 {
		t.Errorf("--amqp.prefetch=0 exited %d, want 2", code)
	}
	if code := run(context.Background(), []string{"--amqp.password-file=/nonexistent/pw"}, &out, &out); code != 2 {
		t.Errorf("missing password file exited %d, want 2", code)
	}
	if !strings.Contains(out.String(), "password-file") {
		t.Errorf("error should name the flag: %s", out.String())
	}
}

// Basic auth through exporter-toolkit's web config: /metrics needs
// the password, and the exporter still works behind it.
func TestExporterWebConfigBasicAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("scrape-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(cfg, []byte("basic_auth_users:\n  prometheus: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// start() polls /-/ready, which is behind the same auth: poll by hand.
	h := newHarness(t, "--web.config.file="+cfg, "--history.replay=0")
	h.launch()
	get := func(user, pw string) int {
		req, _ := http.NewRequest("GET", "http://"+h.addr+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	h.waitFor("listener", func() bool { return get("prometheus", "scrape-pw") == http.StatusOK })
	if code := get("", ""); code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", code)
	}
	if code := get("prometheus", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", code)
	}
}

// Stock Chef clients POST to the exporter, which publishes to the exchange
// and so feeds its own queue: the run shows up on /metrics.
func TestExporterDataCollectorIngest(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("chef-token-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, "--ingest.token-file="+tokenFile, "--ingest.spool.dir="+filepath.Join(t.TempDir(), "spool"), "--history.replay=0")
	h.start()
	post := func(token string, body []byte) int {
		req, _ := http.NewRequest("POST", "http://"+h.addr+"/data-collector/v0/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-data-collector-token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	converge := fixture(t, "chef", "01-run_converge-ubuntu-success-92res.json")
	if code := post("wrong", converge); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	if code := post("chef-token-123", fixture(t, "chef", "01-run_start-ubuntu-success.json")); code != http.StatusNoContent {
		t.Fatalf("run_start: %d", code)
	}
	if code := post("chef-token-123", converge); code != http.StatusNoContent {
		t.Fatalf("run_converge: %d", code)
	}
	h.waitFor("both messages", func() bool { return h.reports("chef_data_collector", "processed") == 2 })
	m := h.scrape()
	if got := m[nodeKey("runlens_last_run_updated_resources", "chefdk-ubuntu-16.04-tester-91bc78", "manhattan")]; got != 12 {
		t.Errorf("updated resources of the posted run = %v, want 12 (13 records, one resource twice)", got)
	}
	if strings.Contains(h.logs.String(), "chef-token-123") {
		t.Error("the ingest token was logged")
	}
}

// On a busy fleet the history stream never goes quiet: the replay must still
// end (at the first message published after it began) and the exporter
// become ready.
func TestExporterReadyWhileReportsKeepArriving(t *testing.T) {
	h := newHarness(t)
	h.start() // declares the exchange, queue and stream
	h.stop()

	p, err := broker.NewPublisher(context.Background(), rabbittest.URL, h.exchange, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	stop := make(chan struct{})
	published := make(chan int, 1)
	go func() {
		n := 0
		defer func() { published <- n }()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				n++
				if p.Publish(context.Background(), handlerReport(fmt.Sprintf("busy-%d", n%20), "prod", fmt.Sprint("busy-", n), time.Now(), "success"), nil) != nil {
					return
				}
			}
		}
	}()
	time.Sleep(1500 * time.Millisecond) // history to replay, and traffic with no pause

	h2 := newHarness(t)
	h2.exchange, h2.queue, h2.dlq, h2.stream = h.exchange, h.queue, h.dlq, h.stream
	h2.start() // fails after 30 s if the replay never ends
	close(stop)
	n := <-published
	h2.waitFor("every report counted", func() bool { return h2.reports("chef_handler", "processed") == float64(n) })
	if !strings.Contains(h2.logs.String(), "history replayed") {
		t.Errorf("no replay logged:\n%s", h2.logs)
	}
}

// TLS and basic auth together, end to end through exporter-toolkit: the
// exporter serves HTTPS only, with the certificate from the web config, and
// /metrics needs the password.
func TestExporterWebConfigTLS(t *testing.T) {
	cfg, caPool, _ := tlsBasicAuthWebConfig(t, t.TempDir())
	h := newHarness(t, "--web.config.file="+cfg, "--history.replay=0")
	h.launch()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool}}}
	get := func(c *http.Client, scheme, user, pw string) int {
		req, _ := http.NewRequest("GET", scheme+"://"+h.addr+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	h.waitFor("https listener", func() bool { return get(client, "https", "prometheus", "scrape-pw") == http.StatusOK })
	if code := get(client, "https", "", ""); code != http.StatusUnauthorized {
		t.Errorf("https without credentials: %d, want 401", code)
	}
	if code := get(http.DefaultClient, "http", "prometheus", "scrape-pw"); code == http.StatusOK {
		t.Error("plain http was served although the web config asks for TLS")
	}
	if code := get(http.DefaultClient, "https", "prometheus", "scrape-pw"); code != 0 {
		t.Errorf("a client that does not trust the CA got %d, want a TLS error", code)
	}
}

// tlsBasicAuthWebConfig writes an exporter-toolkit web configuration into
// dir: TLS with a certificate for 127.0.0.1 (testpki) and basic auth for the
// user prometheus with password scrape-pw. It returns the file, the CA that
// signed the certificate, and the password's bcrypt hash.
func tlsBasicAuthWebConfig(t *testing.T, dir string) (file string, ca *x509.CertPool, hash []byte) {
	t.Helper()
	pki := testpki.New(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("scrape-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(dir, "web.yml")
	webConfig := "tls_server_config:\n  cert_file: " + pki.ServerCert + "\n  key_file: " + pki.ServerKey +
		"\nbasic_auth_users:\n  prometheus: " + string(hash) + "\n"
	if err := os.WriteFile(file, []byte(webConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, pki.CAPool, hash
}
