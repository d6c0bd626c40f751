//go:build faults

package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/pkg/simulator"
)

// TestKill9MidFlow publishes one run for each of 100,000 nodes while an
// exporter consumes, kills it with SIGKILL after about 30% are counted, and
// lets a second exporter (history replay on) drain the queue.
//
// What at-least-once means here, precisely. Every node has exactly one run,
// so a run is identified by its node. Let A be the runs the first exporter
// acked (the broker removed them from the queue). The second exporter
// receives exactly the runs not in A, so a run is lost iff it is in A but
// the first exporter did not count it, or not in A and the second did not
// count it. The first exporter acks a delivery only after counting it, but a
// scrape taken before the kill can miss runs counted and acked after it; a
// check "first's last scrape + second's count ≥ published" could then fail
// without any loss. So the first exporter talks to the broker through a
// proxy that is frozen before its last scrape: after Freeze no ack can reach
// the broker, so A ⊆ {runs counted in that scrape}. Then it is killed with
// SIGKILL (still consuming: it goes on applying what it had received) and
// the proxy resets its connections, so the broker requeues its unacked
// deliveries. Assertions:
//
//  1. every node's run is counted by the first exporter (last scrape) or by
//     the second: runs1[n] + runs2[n] ≥ 1 — fails for a real loss, never for
//     a legitimate redelivery;
//  2. the second exporter counts no run twice (runs2[n] ≤ 1): redeliveries
//     within one process are duplicates;
//  3. runs counted by both are at most --amqp.prefetch: only deliveries the
//     broker still held as unacked when the proxy froze can be counted by
//     the first exporter and redelivered to the second;
//  4. the second exporter, with history replay on, knows every node with the
//     right last-run time (runlens_nodes == N and each node's
//     runlens_last_run_timestamp_seconds), from the replay or the queue;
//  5. queue and dead-letter queue are empty once the second exporter has
//     stopped (SIGTERM: acks what it received), nothing rejected.
func TestKill9MidFlow(t *testing.T) {
	const nodes = 100_000
	const prefetch = 256
	n := newNames(t)
	n.declareHistory(t)
	proxy := newFreezeProxy(t)
	e1 := startExporter(t, "exporter-1", n.args(proxy.URL(), fmt.Sprintf("--amqp.prefetch=%d", prefetch))...)

	// One run per node, ends on whole seconds so the expected
	// runlens_last_run_timestamp_seconds is exact for every format.
	fleet := simulator.New(simulator.Config{Nodes: nodes, Seed: 9, NodeAttributeBytes: 64, Resources: 8})
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Second)
	var bodies [][]byte
	lastEnd := make(map[string]int64, nodes)
	for i := range nodes {
		r := fleet.NextRun(i, base.Add(time.Duration(i%600)*time.Second), simulator.Random)
		bodies = append(bodies, r.Messages...)
		lastEnd[r.Node.Name] = r.End.Unix()
	}
	var size int
	for _, b := range bodies {
		size += len(b)
	}
	t.Logf("%d runs in %d messages, %.1f MiB", nodes, len(bodies), float64(size)/(1<<20))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pubStart := time.Now()
	pubDone := make(chan error, 1)
	var pubTook time.Duration
	go func() {
		err := publishAll(ctx, n.exchange, bodies)
		pubTook = time.Since(pubStart)
		pubDone <- err
	}()

	// Kill after ~30% of the messages are counted.
	target := float64(len(bodies)) * 0.3
	waitFor(t, 3*time.Minute, 200*time.Millisecond, "30% of the messages counted by exporter-1", func() (bool, string) {
		s, err := e1.scrape("runlens_reports_total")
		if err != nil {
			return false, err.Error()
		}
		got := s.reports("")
		return got >= target, fmt.Sprintf("%.0f of %d", got, len(bodies))
	})
	proxy.Freeze()
	last := e1.mustScrape("runlens_runs_total", "runlens_reports_total")
	e1.kill9()
	proxy.Cut()
	runs1 := last.byNode("runlens_runs_total")
	t.Logf("exporter-1 killed after %s: %.0f messages, %d runs counted in its last scrape (after the freeze)",
		time.Since(pubStart).Round(time.Millisecond), last.reports(""), countPositive(runs1))

	restart := time.Now()
	e2 := startExporter(t, "exporter-2", n.args(rabbittest.URL, fmt.Sprintf("--amqp.prefetch=%d", prefetch))...)
	t.Logf("exporter-2 ready (history replayed) after %s", time.Since(restart).Round(time.Millisecond))

	select {
	case err := <-pubDone:
		if err != nil {
			t.Fatalf("publishing: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("publishing did not finish within 5 minutes")
	}
	t.Logf("published and confirmed %d messages in %s (%.0f msg/s)", len(bodies), pubTook.Round(time.Millisecond),
		float64(len(bodies))/pubTook.Seconds())

	// Drained: nothing ready in the queue and the counts stopped moving.
	prev := -1.0
	waitFor(t, 3*time.Minute, 500*time.Millisecond, "exporter-2 to drain the queue", func() (bool, string) {
		ready := rabbittest.MessageCount(t, n.queue)
		s, err := e2.scrape("runlens_reports_total")
		if err != nil {
			return false, err.Error()
		}
		got := s.reports("")
		settled := ready == 0 && got == prev
		prev = got
		return settled, fmt.Sprintf("%d ready in the queue, exporter-2 at %.0f messages", ready, got)
	})
	t.Logf("queue drained %s after the restart", time.Since(restart).Round(time.Millisecond))

	final := e2.mustScrape("runlens_runs_total", "runlens_reports_total", "runlens_last_run_timestamp_seconds", "runlens_nodes")
	e2.stop()
	runs2 := final.byNode("runlens_runs_total")
	stamps := final.byNode("runlens_last_run_timestamp_seconds")

	var lost, twice, wrongTime []string
	both := 0
	for node, end := range lastEnd {
		r1, r2 := runs1[node], runs2[node]
		switch {
		case r1+r2 < 1:
			lost = append(lost, node)
		case r1 >= 1 && r2 >= 1:
			both++
		}
		if r2 > 1 {
			twice = append(twice, fmt.Sprintf("%s(%v)", node, r2))
		}
		if got, ok := stamps[node]; !ok || int64(got) != end {
			wrongTime = append(wrongTime, fmt.Sprintf("%s(got %v present %v, want %d)", node, got, ok, end))
		}
	}
	t.Logf("counted by exporter-1: %d, by exporter-2: %d, by both (redelivered after the kill): %d",
		countPositive(runs1), countPositive(runs2), both)
	if len(lost) > 0 {
		t.Errorf("%d runs lost (counted by neither exporter): %s", len(lost), firstFew(lost))
	}
	if len(twice) > 0 {
		t.Errorf("exporter-2 counted %d runs more than once: %s", len(twice), firstFew(twice))
	}
	if both > prefetch {
		t.Errorf("%d runs counted by both exporters, more than the %d deliveries exporter-1 could hold unacked", both, prefetch)
	}
	if got := final.sum("runlens_nodes"); got != nodes {
		t.Errorf("exporter-2 runlens_nodes = %v, want %d", got, nodes)
	}
	if len(wrongTime) > 0 {
		t.Errorf("%d nodes without the right runlens_last_run_timestamp_seconds on exporter-2: %s", len(wrongTime), firstFew(wrongTime))
	}
	if got := final.reports("rejected") + last.reports("rejected"); got != 0 {
		t.Errorf("%v reports rejected", got)
	}
	if ready := rabbittest.MessageCount(t, n.queue); ready != 0 {
		t.Errorf("%d messages left in the queue after exporter-2 stopped", ready)
	}
	if dead := rabbittest.MessageCount(t, n.dlq); dead != 0 {
		t.Errorf("%d messages dead-lettered", dead)
	}
}

func countPositive(m map[string]float64) int {
	n := 0
	for _, v := range m {
		if v > 0 {
			n++
		}
	}
	return n
}
