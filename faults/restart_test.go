//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/datasource/plugin"
	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/internal/testlog"
	"github.com/runlens/runlens/pkg/broker"
)

// handlerReport is a Chef handler report of one successful run.
func handlerReport(node, env, runID string, end time.Time) []byte {
	b, _ := json.Marshal(map[string]any{
		"node_name": node, "fqdn": node + ".example.internal", "ip_address": "10.1.2.3", "environment": env,
		"status": "success", "run_start_time": end.Add(-20 * time.Second).UTC().Format(time.RFC3339),
		"run_end_time": end.UTC().Format(time.RFC3339), "run_elapsed_time": 20, "updated_resources_count": 1,
		"updated_resources": []string{"file[/etc/motd]"}, "run_id": runID, "roles": []string{"base", "web"},
	})
	return b
}

// confirmedRun is a report the broker confirmed.
type confirmedRun struct {
	node  string
	phase int32
}

// TestBrokerRestartMidStream restarts the RabbitMQ node (stop_app, 3 s,
// start_app) while a publisher publishes with confirms (one run per distinct
// node, retrying a publish until it is confirmed: a failed publish may or may
// not have been stored, and a stored retry is a duplicate the exporter drops
// by run_id) and the exporter consumes. Assertions:
//
//   - runlens_amqp_up goes 0 during the outage and back to 1 by itself (the
//     exporter reconnects without help);
//   - every confirmed report is counted, exactly once (the quorum queue is
//     durable; redeliveries of unacked messages and stored retries are
//     duplicates within the exporter's lifetime);
//   - a datasource plugin instance following the history stream recovers:
//     its topology query shows every node published after the restart;
//   - nothing is rejected or dead-lettered.
func TestBrokerRestartMidStream(t *testing.T) {
	n := newNames(t)
	n.declareHistory(t)
	keepBrokerHealthy(t) // after newNames: runs before the entities are deleted

	e := startExporter(t, "exporter", n.args(rabbittest.URL, "--history.replay=0")...)

	// The datasource, following the stream.
	dsLogs := &testlog.Buffer{}
	jd, _ := json.Marshal(map[string]any{
		"amqpUrl": "amqp://guest@127.0.0.1:5672/", "exchange": n.exchange, "stream": n.stream,
		"replay": "1h", "liveInterval": "1s",
		"groupByRoleAbove": 1000, // the 300 nodes by node, not grouped by role
	})
	inst, err := plugin.Factory(slog.New(slog.NewTextHandler(dsLogs, nil)))(context.Background(), backend.DataSourceInstanceSettings{
		UID: "runlens-faults", Name: "runlens", JSONData: jd, DecryptedSecureJSONData: map[string]string{"amqpPassword": "guest"},
	})
	if err != nil {
		t.Fatalf("plugin instance: %v", err)
	}
	ds := inst.(*plugin.Instance)
	t.Cleanup(ds.Dispose)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- tail of the datasource log ---\n%s", tail(dsLogs.String(), 40))
		}
	})

	// Publisher: phase 0 before the stop, 1 from stop_app until start_app
	// returned, 2 after.
	var phase atomic.Int32
	pub, err := broker.NewPublisher(context.Background(), rabbittest.URL, n.exchange, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	stopPub := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-stopPub:
		default:
			close(stopPub)
		}
	})
	var mu sync.Mutex
	var confirmed []confirmedRun
	retries := 0
	pubDone := make(chan struct{})
	const afterRestart = 300 // reports to confirm after the restart (under the datasource's groupByRoleAbove below)
	go func() {
		defer close(pubDone)
		end := time.Now().Add(-time.Minute).Truncate(time.Second)
		inPhase2 := 0
		for i := 0; ; i++ {
			select {
			case <-stopPub:
				return
			case <-time.After(10 * time.Millisecond):
			}
			ph := phase.Load()
			if ph == 2 {
				if inPhase2 >= afterRestart {
					return
				}
				inPhase2++
			}
			node := fmt.Sprintf("rs-p%d-%05d", ph, i)
			body := handlerReport(node, "prod", fmt.Sprintf("run-%05d", i), end)
			for attempt := 0; ; attempt++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := pub.Publish(ctx, body, nil)
				cancel()
				if err == nil {
					break
				}
				mu.Lock()
				retries++
				mu.Unlock()
				select {
				case <-stopPub:
					// Never confirmed: not counted as published. It is
					// the last one; it may still arrive (and be counted).
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			mu.Lock()
			confirmed = append(confirmed, confirmedRun{node, ph})
			mu.Unlock()
		}
	}()
	nConfirmed := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(confirmed)
	}

	waitFor(t, 30*time.Second, 100*time.Millisecond, "reports flowing before the restart", func() (bool, string) {
		s, err := e.scrape("runlens_reports_total")
		if err != nil {
			return false, err.Error()
		}
		return s.reports("processed") >= 50, fmt.Sprintf("%.0f processed", s.reports("processed"))
	})

	// Watch runlens_amqp_up throughout.
	type upSample struct {
		at time.Time
		up float64
	}
	var upMu sync.Mutex
	var ups []upSample
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(100 * time.Millisecond):
			}
			s, err := e.scrape("runlens_amqp_up")
			if err != nil || !s.has("runlens_amqp_up") {
				continue
			}
			upMu.Lock()
			ups = append(ups, upSample{time.Now(), s.sum("runlens_amqp_up")})
			upMu.Unlock()
		}
	}()

	stopAt := time.Now()
	phase.Store(1)
	if err := rabbitmqctl("stop_app"); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	time.Sleep(3 * time.Second)
	if err := rabbitmqctl("start_app"); err != nil {
		t.Fatal(err)
	}
	if err := rabbitmqctl("await_startup"); err != nil {
		t.Fatal(err)
	}
	phase.Store(2)
	started := time.Now()
	t.Logf("stop_app took %s; the app was stopped for %s (3 s pause, then start_app and await_startup took %s)",
		stopped.Sub(stopAt).Round(time.Millisecond), started.Sub(stopped).Round(time.Millisecond),
		started.Sub(stopped.Add(3*time.Second)).Round(time.Millisecond))

	waitFor(t, 90*time.Second, 100*time.Millisecond, "runlens_amqp_up back to 1", func() (bool, string) {
		upMu.Lock()
		defer upMu.Unlock()
		if len(ups) == 0 {
			return false, "no scrape yet"
		}
		l := ups[len(ups)-1]
		return l.up == 1 && l.at.After(started), fmt.Sprintf("runlens_amqp_up = %v", l.up)
	})
	reconnected := time.Now()
	// The publisher goes on until afterRestart reports are confirmed after
	// the restart.
	select {
	case <-pubDone:
	case <-time.After(2 * time.Minute):
		t.Fatalf("publisher stuck: %d reports confirmed", nConfirmed())
	}
	close(stopPub)
	close(stopWatch)
	<-watchDone

	// amqp_up: 1, then 0 during the outage, then 1.
	var downFrom, downTo time.Time
	upMu.Lock()
	for _, s := range ups {
		if s.up == 0 && downFrom.IsZero() {
			downFrom = s.at
		}
		if s.up == 1 && !downFrom.IsZero() && downTo.IsZero() {
			downTo = s.at
		}
	}
	upMu.Unlock()
	if downFrom.IsZero() || downTo.IsZero() {
		t.Errorf("runlens_amqp_up never went 0 then 1 again (%d samples)", len(ups))
	} else {
		t.Logf("runlens_amqp_up was 0 for %s (from %s after stop_app began); reconnected %s after start_app returned",
			downTo.Sub(downFrom).Round(time.Millisecond), downFrom.Sub(stopAt).Round(time.Millisecond),
			downTo.Sub(started).Round(time.Millisecond))
	}

	mu.Lock()
	all := append([]confirmedRun(nil), confirmed...)
	t.Logf("%d reports confirmed (%d in phase 2, after the restart), %d failed publishes retried", len(all), countPhase(all, 2), retries)
	mu.Unlock()

	// Every confirmed report counted exactly once.
	var runs map[string]float64
	waitFor(t, 60*time.Second, 250*time.Millisecond, "every confirmed report counted", func() (bool, string) {
		s, err := e.scrape("runlens_runs_total")
		if err != nil {
			return false, err.Error()
		}
		runs = s.byNode("runlens_runs_total")
		missing := 0
		for _, c := range all {
			if runs[c.node] < 1 {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d confirmed reports not counted", missing)
	})
	t.Logf("every confirmed report counted %s after the exporter reconnected", time.Since(reconnected).Round(time.Millisecond))
	var twice []string
	for _, c := range all {
		if runs[c.node] != 1 {
			twice = append(twice, fmt.Sprintf("%s(%v)", c.node, runs[c.node]))
		}
	}
	if len(twice) > 0 {
		t.Errorf("reports counted more than once: %s", firstFew(twice))
	}
	s := e.mustScrape("runlens_reports_total")
	t.Logf("exporter: %.0f processed, %.0f duplicates (redeliveries and stored retries)", s.reports("processed"), s.reports("duplicate"))
	if r := s.reports("rejected"); r != 0 {
		t.Errorf("%v reports rejected", r)
	}
	if !strings.Contains(e.logs(), "reconnect") {
		t.Errorf("the exporter logged no reconnect")
	}

	// The datasource recovered: its live topology shows every node
	// published after the restart.
	var want []string
	for _, c := range all {
		if c.phase == 2 {
			want = append(want, c.node)
		}
	}
	waitFor(t, 60*time.Second, 500*time.Millisecond, "the datasource's topology to show the nodes published after the restart", func() (bool, string) {
		ids, err := topologyNodeIDs(ds, `rs-p2-.*`) // anchored: the whole name
		if err != nil {
			return false, err.Error()
		}
		var missing []string
		for _, node := range want {
			if !ids[node] {
				missing = append(missing, node)
			}
		}
		return len(missing) == 0, fmt.Sprintf("%d of %d missing: %s", len(missing), len(want), firstFew(missing))
	})
	t.Logf("datasource topology complete %s after the broker came back", time.Since(started).Round(time.Millisecond))

	e.stop()
	if dead := rabbittest.MessageCount(t, n.dlq); dead != 0 {
		t.Errorf("%d messages dead-lettered", dead)
	}
	if ready := rabbittest.MessageCount(t, n.queue); ready != 0 {
		t.Errorf("%d messages left in the queue", ready)
	}
}

func countPhase(rs []confirmedRun, ph int32) int {
	n := 0
	for _, r := range rs {
		if r.phase == ph {
			n++
		}
	}
	return n
}

// topologyNodeIDs runs a live topology query (grouped by node, nodes
// matching the regex) and returns the ids of the nodes frame.
func topologyNodeIDs(ds *plugin.Instance, nodeRegex string) (map[string]bool, error) {
	q, _ := json.Marshal(map[string]any{"queryType": "topology", "node": nodeRegex, "groupBy": "node"})
	now := time.Now()
	resp, err := ds.QueryData(context.Background(), &backend.QueryDataRequest{
		PluginContext: backend.PluginContext{DataSourceInstanceSettings: &backend.DataSourceInstanceSettings{UID: "runlens-faults"}},
		Queries: []backend.DataQuery{{
			RefID: "A", QueryType: "topology", JSON: q,
			TimeRange: backend.TimeRange{From: now.Add(-time.Hour), To: now},
		}},
	})
	if err != nil {
		return nil, err
	}
	r := resp.Responses["A"]
	if r.Error != nil {
		return nil, r.Error
	}
	if len(r.Frames) != 2 {
		return nil, fmt.Errorf("%d frames, want 2 (nodes, edges)", len(r.Frames))
	}
	nodes := r.Frames[0]
	var idField *data.Field
	for _, f := range nodes.Fields {
		if f.Name == "id" {
			idField = f
		}
	}
	if idField == nil {
		return nil, fmt.Errorf("nodes frame has no id field")
	}
	ids := map[string]bool{}
	for i := range idField.Len() {
		if v, ok := idField.ConcreteAt(i); ok {
			if s, ok := v.(string); ok {
				ids[s] = true
			}
		}
	}
	return ids, nil
}
