package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v2"

	"github.com/runlens/runlens/internal/proctest"
	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/pkg/broker"
)

// e2eFor replaces every alert's `for:` in the rule file the end-to-end test
// loads; the expressions stay as written.
const e2eFor = "2s"

// TestAlertsEndToEnd runs the whole chain with real programs: run reports
// published to RabbitMQ, the exporter, Prometheus evaluating
// runlens.rules.yml (only the `for:` durations shortened), Alertmanager, and
// a webhook receiver in the test. It makes RunlensNodeRunFailing fire for a
// node with failing runs, then resolve once the node's latest run succeeds.
func TestAlertsEndToEnd(t *testing.T) {
	promBin := tool(t, "prometheus")
	amBin := tool(t, "prometheus-alertmanager", "alertmanager")
	promtool := tool(t, "promtool")
	dir := t.TempDir()

	// Broker entities, deleted after every process is stopped (cleanups run
	// last-registered first).
	exchange := rabbittest.Name(t, "runlens.e2e.x.")
	queue := rabbittest.Name(t, "runlens.e2e.q.")
	stream := rabbittest.Name(t, "runlens.e2e.s.")
	rabbittest.DeleteQueues(t, queue, queue+".dead", stream)
	rabbittest.DeleteExchanges(t, exchange, queue+".dlx")

	// Each process shows the tail of its output when the test fails
	// (proctest.Start); the Prometheus queries are in a later cleanup.
	var procs []*proctest.Proc
	var promBase string

	// 1. The exporter.
	exporterBin, err := proctest.BuildExporter(dir)
	if err != nil {
		t.Fatal(err)
	}
	exporterAddr := proctest.FreeAddr(t)
	procs = append(procs, proctest.Start(t, dir, "exporter", exporterBin,
		"--amqp.url="+rabbittest.URL,
		"--amqp.exchange="+exchange,
		"--amqp.queue="+queue,
		"--history.stream="+stream,
		"--history.replay=0",
		"--web.listen-address="+exporterAddr,
		"--log.level=info",
	))
	proctest.WaitReady(t, "http://"+exporterAddr+"/-/ready", 30*time.Second, procs...)

	// 2. The webhook receiver.
	hook := &webhookRecorder{}
	hookSrv := httptest.NewServer(hook)
	t.Cleanup(hookSrv.Close)

	// 3. Alertmanager, routing everything to the webhook, one group per
	// alert.
	amAddr := proctest.FreeAddr(t)
	amConfig := filepath.Join(dir, "alertmanager.yml")
	writeFile(t, amConfig, fmt.Sprintf(`global:
  resolve_timeout: 10s
route:
  receiver: hook
  group_by: ['...']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %q
        send_resolved: true
`, hookSrv.URL+"/hook"))
	amtool := tool(t, "amtool")
	mustRun(t, amtool, "check-config", amConfig)
	procs = append(procs, proctest.Start(t, dir, "alertmanager", amBin,
		"--config.file="+amConfig,
		"--storage.path="+filepath.Join(dir, "am-data"),
		"--web.listen-address="+amAddr,
		"--cluster.listen-address=",
		"--log.level=info",
	))
	proctest.WaitReady(t, "http://"+amAddr+"/-/ready", 30*time.Second, procs...)

	// 4. Prometheus with the real rules, only `for:` shortened.
	rulesFile := filepath.Join(dir, "runlens.rules.yml")
	writeFile(t, rulesFile, shortenFor(t, RulesYAML, e2eFor))
	mustRun(t, promtool, "check", "rules", rulesFile)
	promAddr := proctest.FreeAddr(t)
	promConfig := filepath.Join(dir, "prometheus.yml")
	writeFile(t, promConfig, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
scrape_configs:
  - job_name: runlens
    static_configs:
      - targets: [%q]
`, rulesFile, amAddr, exporterAddr))
	mustRun(t, promtool, "check", "config", promConfig)
	procs = append(procs, proctest.Start(t, dir, "prometheus", promBin,
		"--config.file="+promConfig,
		"--storage.tsdb.path="+filepath.Join(dir, "prom-data"),
		"--web.listen-address="+promAddr,
		"--rules.alert.resend-delay=1s",
		"--log.level=info",
	))
	promBase = "http://" + promAddr
	proctest.WaitReady(t, promBase+"/-/ready", 30*time.Second, procs...)

	// Diagnostics while Prometheus still runs (this cleanup runs first).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if b, err := httpGet(promBase + "/api/v1/alerts"); err == nil {
			t.Logf("prometheus /api/v1/alerts:\n%s", b)
		} else {
			t.Logf("prometheus /api/v1/alerts: %v", err)
		}
		for _, q := range []string{
			`node:runlens_run_failures:increase1h`,
			`node:runlens_runs:increase1h`,
			`node:runlens_last_run_success:latest`,
		} {
			v, err := promQuery(promBase, q)
			t.Logf("query %s: %v %v", q, v, err)
		}
		t.Logf("webhook payloads:\n%s", hook.dump())
	})

	// Prometheus must scrape the exporter before the counters move, or the
	// first failures vanish into the counter's first sample.
	waitUntil(t, 30*time.Second, "prometheus scraping the exporter", func() (bool, string) {
		v, err := promQuery(promBase, `up{job="runlens"}`)
		return err == nil && len(v) == 1 && v[0] == 1, fmt.Sprintf("up = %v, err %v", v, err)
	})

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	pub, err := broker.NewPublisher(ctx, rabbittest.URL, exchange, nil)
	if err != nil {
		t.Fatalf("publisher: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close() })

	const node, env = "web-1", "e2e"
	runs := 0
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	// publish sends one run report of the node, ending a minute after the
	// previous one, and waits until Prometheus has scraped it, so that every
	// run is a step in the counters that increase() sees.
	publish := func(status string) {
		t.Helper()
		runs++
		end := base.Add(time.Duration(runs) * time.Minute)
		body, _ := json.Marshal(map[string]any{
			"node_name":         node,
			"environment":       env,
			"status":            status,
			"run_start_time":    end.Add(-30 * time.Second).Format(time.RFC3339),
			"run_end_time":      end.Format(time.RFC3339),
			"run_elapsed_time":  30,
			"updated_resources": []string{"file[/a]"},
			"run_id":            fmt.Sprintf("%s-%d-%d", t.Name(), time.Now().UnixNano(), runs),
		})
		if err := pub.PublishAll(ctx, [][]byte{body}, 0); err != nil {
			t.Fatalf("publish run %d: %v", runs, err)
		}
		q := fmt.Sprintf(`runlens_runs_total{node=%q,environment=%q}`, node, env)
		waitUntil(t, 30*time.Second, fmt.Sprintf("prometheus seeing run %d", runs), func() (bool, string) {
			v, err := promQuery(promBase, q)
			return err == nil && len(v) == 1 && v[0] == float64(runs), fmt.Sprintf("%s = %v, err %v", q, v, err)
		})
	}

	// 5. Four failed runs: the counters go 1 → 4 between scrapes, so the
	// increase over 1h is at least 3 failures and no success.
	start := time.Now()
	for range 4 {
		publish("failure")
	}
	want := map[string]string{"alertname": "RunlensNodeRunFailing", "node": node, "environment": env, "severity": "warning"}
	hook.waitFor(t, 90*time.Second, "firing", want)
	t.Logf("RunlensNodeRunFailing firing %v after the first failed run", time.Since(start).Round(time.Millisecond))

	// 6. A successful run ends the node's failure streak.
	start = time.Now()
	publish("success")
	hook.waitFor(t, 90*time.Second, "resolved", want)
	t.Logf("RunlensNodeRunFailing resolved %v after the successful run", time.Since(start).Round(time.Millisecond))
}

// shortenFor returns the rule file with every rule's `for:` set to d.
func shortenFor(t *testing.T, rules, d string) string {
	t.Helper()
	var f yaml.MapSlice
	if err := yaml.Unmarshal([]byte(rules), &f); err != nil {
		t.Fatalf("parse rules: %v", err)
	}
	changed := 0
	for _, top := range f {
		if top.Key != "groups" {
			continue
		}
		groups, _ := top.Value.([]any)
		for _, g := range groups {
			group, _ := g.(yaml.MapSlice)
			for _, gi := range group {
				if gi.Key != "rules" {
					continue
				}
				rules, _ := gi.Value.([]any)
				for _, r := range rules {
					rule, _ := r.(yaml.MapSlice)
					for i := range rule {
						if rule[i].Key == "for" {
							rule[i].Value = d
							changed++
						}
					}
				}
			}
		}
	}
	if changed == 0 {
		t.Fatal("no `for:` found in the rules: has the file's layout changed?")
	}
	out, err := yaml.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, detail)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func httpGet(u string) ([]byte, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", resp.Status, b)
	}
	return b, err
}

// promQuery runs an instant query and returns the samples' values.
func promQuery(base, q string) ([]float64, error) {
	b, err := httpGet(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	if r.Status != "success" || r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: %s", q, b)
	}
	var out []float64
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		var v float64
		if _, err := fmt.Sscan(str, &v); err != nil {
			return nil, fmt.Errorf("query %s: value %q: %v", q, str, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// webhookRecorder records Alertmanager's webhook notifications.
type webhookRecorder struct {
	mu       sync.Mutex
	payloads []webhookPayload
}

type webhookPayload struct {
	Status string `json:"status"`
	Alerts []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

func (h *webhookRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var p webhookPayload
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.payloads = append(h.payloads, p)
	h.mu.Unlock()
}

// has reports whether an alert with status and (at least) these labels was
// received.
func (h *webhookRecorder) has(status string, labels map[string]string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.payloads {
	alerts:
		for _, a := range p.Alerts {
			if a.Status != status {
				continue
			}
			for k, v := range labels {
				if a.Labels[k] != v {
					continue alerts
				}
			}
			return true
		}
	}
	return false
}

func (h *webhookRecorder) dump() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, p := range h.payloads {
		for _, a := range p.Alerts {
			fmt.Fprintf(&b, "%s %v\n", a.Status, a.Labels)
		}
	}
	return b.String()
}

func (h *webhookRecorder) waitFor(t *testing.T, timeout time.Duration, status string, labels map[string]string) {
	t.Helper()
	waitUntil(t, timeout, fmt.Sprintf("webhook: %s alert %v", status, labels), func() (bool, string) {
		return h.has(status, labels), "received:\n" + h.dump()
	})
}
