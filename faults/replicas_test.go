//go:build faults

package faults

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runlens/runlens/internal/proctest"
	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/pkg/simulator"
)

// TestReplicas runs three exporters on one queue (competing consumers),
// publishes 10 runs for each of 300 nodes, and checks the aggregation both
// on the scraped samples and through a real Prometheus (scraping the three
// every second, with alerts/runlens.rules.yml loaded as is):
//
//   - each replica consumed some of the runs, and summed over replicas
//     runlens_runs_total is exactly 3,000 and runlens_run_failures_total
//     exactly the failures published; per node, 10 runs;
//   - max over replicas of runlens_last_run_timestamp_seconds is each
//     node's last published end time, and the replica holding it has the
//     right runlens_last_run_success;
//   - in Prometheus: sum(runlens_runs_total) == 3000, the failures sum, and
//     the recording rules node:runlens_last_run_timestamp_seconds:max,
//     node:runlens_last_run_success:latest, environment:runlens_nodes:count
//     and environment:runlens_nodes_failing:count give the published truth
//     for every node and environment.
//
// The increase()/rate() rules (failure ratios) are not compared with exact
// figures: increase() extrapolates to the window's edges, so with counters
// born during the window its value is not the number of runs.
func TestReplicas(t *testing.T) {
	const nodes, rounds, replicas = 300, 10, 3
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not found (apt-get install prometheus): %v", err)
	}
	rules, err := filepath.Abs(filepath.Join("..", "alerts", "runlens.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	n := newNames(t)
	var exps []*exporter
	for i := range replicas {
		// A small prefetch, so the broker spreads the deliveries over the
		// three consumers instead of filling the first.
		exps = append(exps, startExporter(t, fmt.Sprintf("replica-%d", i), n.args(rabbittest.URL, "--history.replay=0", "--amqp.prefetch=16")...))
	}

	// Prometheus scraping the three replicas.
	dir := t.TempDir()
	promAddr := proctest.FreeAddr(t)
	var targets []string
	for _, e := range exps {
		targets = append(targets, fmt.Sprintf("%q", e.addr))
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: runlens
    static_configs:
      - targets: [%s]
`, rules, strings.Join(targets, ", "))), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := proctest.Start(t, dir, "prometheus", promBin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	base := "http://" + promAddr
	proctest.WaitReady(t, base+"/-/ready", 60*time.Second, prom)

	// 3,000 runs: rounds of the whole fleet, a minute apart, whole seconds.
	fleet := simulator.New(simulator.Config{Nodes: nodes, Seed: 4, NodeAttributeBytes: 512, FailureRate: 0.2})
	start := time.Now().Add(-30 * time.Minute).Truncate(time.Second)
	var bodies [][]byte
	failures := 0
	last := map[string]simulator.Run{}
	env := map[string]string{}
	for r := range rounds {
		for i := range nodes {
			run := fleet.NextRun(i, start.Add(time.Duration(r)*time.Minute+time.Duration(i%60)*time.Second), simulator.Random)
			bodies = append(bodies, run.Messages...)
			if run.Failed {
				failures++
			}
			last[run.Node.Name] = run
			env[run.Node.Name] = run.Node.Environment
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	if err := publishAll(ctx, n.exchange, bodies); err != nil {
		t.Fatalf("publish: %v", err)
	}
	t.Logf("published %d runs (%d failed) in %d messages", nodes*rounds, failures, len(bodies))

	// Direct from the replicas' /metrics.
	var scraped []samples
	waitFor(t, 2*time.Minute, 250*time.Millisecond, "every message handled by the replicas", func() (bool, string) {
		scraped = scraped[:0]
		total := 0.0
		for _, e := range exps {
			s, err := e.scrape("runlens_reports_total", "runlens_runs_total", "runlens_run_failures_total",
				"runlens_last_run_timestamp_seconds", "runlens_last_run_success")
			if err != nil {
				return false, err.Error()
			}
			scraped = append(scraped, s)
			total += s.reports("")
		}
		return total >= float64(len(bodies)), fmt.Sprintf("%.0f of %d", total, len(bodies))
	})
	t.Logf("drained by %d replicas in %s", replicas, time.Since(began).Round(time.Millisecond))

	var runsSum, failSum float64
	perNode := map[string]float64{}
	maxTS := map[string]float64{}
	successAtMax := map[string][]float64{}
	for i, s := range scraped {
		r := s.sum("runlens_runs_total")
		t.Logf("replica-%d: %.0f runs, %.0f failures, %.0f duplicates", i, r, s.sum("runlens_run_failures_total"), s.reports("duplicate"))
		if r == 0 {
			t.Errorf("replica-%d consumed no run: the test does not exercise aggregation", i)
		}
		runsSum += r
		failSum += s.sum("runlens_run_failures_total")
		for node, v := range s.byNode("runlens_runs_total") {
			perNode[node] += v
		}
		ok := s.byNode("runlens_last_run_success")
		for node, ts := range s.byNode("runlens_last_run_timestamp_seconds") {
			switch {
			case ts > maxTS[node]:
				maxTS[node], successAtMax[node] = ts, []float64{ok[node]}
			case ts == maxTS[node]:
				successAtMax[node] = append(successAtMax[node], ok[node])
			}
		}
	}
	if runsSum != nodes*rounds {
		t.Errorf("sum over replicas of runlens_runs_total = %v, want %d", runsSum, nodes*rounds)
	}
	if failSum != float64(failures) {
		t.Errorf("sum over replicas of runlens_run_failures_total = %v, want %d", failSum, failures)
	}
	var wrong []string
	for node, run := range last {
		want := 1.0
		if run.Failed {
			want = 0
		}
		if perNode[node] != rounds || maxTS[node] != float64(run.End.Unix()) || len(successAtMax[node]) == 0 {
			wrong = append(wrong, fmt.Sprintf("%s(runs %v, last %v want %d)", node, perNode[node], maxTS[node], run.End.Unix()))
			continue
		}
		for _, v := range successAtMax[node] {
			if v != want {
				wrong = append(wrong, fmt.Sprintf("%s(last success %v, want %v)", node, v, want))
			}
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d nodes wrong on the replicas' samples: %s", len(wrong), firstFew(wrong))
	}

	// Through Prometheus and the recording rules. Scrapes and rule
	// evaluations lag by a second or two: poll until the answers are
	// right, then fail with the last difference.
	q := func(expr string) ([]sample, error) { return promQuery(base, expr) }
	scalar := func(expr string, want float64) {
		t.Helper()
		waitFor(t, 30*time.Second, 500*time.Millisecond, expr, func() (bool, string) {
			r, err := q(expr)
			if err != nil {
				return false, err.Error()
			}
			if len(r) != 1 {
				return false, fmt.Sprintf("%d samples", len(r))
			}
			return r[0].value == want, fmt.Sprintf("got %v, want %v", r[0].value, want)
		})
	}
	scalar(`count(up{job="runlens"} == 1)`, replicas)
	scalar(`sum(runlens_runs_total{job="runlens"})`, nodes*rounds)
	scalar(`sum(runlens_run_failures_total{job="runlens"})`, float64(failures))
	scalar(`count(count by (node) (runlens_runs_total{job="runlens"}))`, nodes)

	perNodeRule := func(expr string, want func(node string) float64) {
		t.Helper()
		waitFor(t, 30*time.Second, 500*time.Millisecond, expr, func() (bool, string) {
			r, err := q(expr)
			if err != nil {
				return false, err.Error()
			}
			got := map[string]float64{}
			for _, x := range r {
				if x.labels["instance"] != "" {
					return false, "series still has an instance label: " + fmt.Sprint(x.labels)
				}
				if _, dup := got[x.labels["node"]]; dup {
					return false, "two series for node " + x.labels["node"]
				}
				got[x.labels["node"]] = x.value
			}
			var bad []string
			for node := range last {
				if v, ok := got[node]; !ok || v != want(node) {
					bad = append(bad, fmt.Sprintf("%s(got %v present %v, want %v)", node, v, ok, want(node)))
				}
			}
			if len(got) != len(last) {
				bad = append(bad, fmt.Sprintf("%d series, want %d", len(got), len(last)))
			}
			return len(bad) == 0, firstFew(bad)
		})
	}
	perNodeRule(`node:runlens_last_run_timestamp_seconds:max{job="runlens"}`, func(node string) float64 {
		return float64(last[node].End.Unix())
	})
	perNodeRule(`node:runlens_last_run_success:latest{job="runlens"}`, func(node string) float64 {
		if last[node].Failed {
			return 0
		}
		return 1
	})
	perNodeRule(`sum without (instance) (runlens_runs_total{job="runlens"})`, func(string) float64 { return rounds })

	wantNodes, wantFailing := map[string]float64{}, map[string]float64{}
	for node, run := range last {
		wantNodes[env[node]]++
		if run.Failed {
			wantFailing[env[node]]++
		} else {
			wantFailing[env[node]] += 0
		}
	}
	perEnvRule := func(expr string, want map[string]float64) {
		t.Helper()
		waitFor(t, 30*time.Second, 500*time.Millisecond, expr, func() (bool, string) {
			r, err := q(expr)
			if err != nil {
				return false, err.Error()
			}
			got := map[string]float64{}
			for _, x := range r {
				got[x.labels["environment"]] = x.value
			}
			for e, w := range want {
				if g, ok := got[e]; !ok || math.Abs(g-w) > 0 {
					return false, fmt.Sprintf("got %v, want %v", got, want)
				}
			}
			return len(got) == len(want), fmt.Sprintf("got %v, want %v", got, want)
		})
	}
	perEnvRule(`environment:runlens_nodes:count{job="runlens"}`, wantNodes)
	perEnvRule(`environment:runlens_nodes_failing:count{job="runlens"}`, wantFailing)
	t.Logf("Prometheus agrees: %v nodes per environment, %v failing their latest run", wantNodes, wantFailing)

	for _, e := range exps {
		e.stop()
	}
	if ready := rabbittest.MessageCount(t, n.queue); ready != 0 {
		t.Errorf("%d messages left in the queue", ready)
	}
	if dead := rabbittest.MessageCount(t, n.dlq); dead != 0 {
		t.Errorf("%d messages dead-lettered", dead)
	}
}
