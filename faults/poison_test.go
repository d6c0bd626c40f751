//go:build faults

package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/simulator"
)

const (
	// poisonMaxBytes is the exporter's --report.max-bytes in the poison test.
	poisonMaxBytes = 10 << 20
	// hugeBytes is the oversized report: RabbitMQ 3.10's max_message_size
	// defaults to 128 MiB (and is 134217728 on the test machines), so a
	// 50 MB body reaches the exporter, which must reject it on its size.
	hugeBytes = 50_000_000
	// manyResources is the updated resources of the big but valid report.
	manyResources = 200_000
	// rssLimit bounds the exporter's peak RSS (VmHWM) during the flood.
	// The exporter must hold the 50 MB body whole (amqp091 assembles a
	// message's body frames into one []byte, grown by appends, so up to
	// ~2× transiently) and re-publish it byte for byte to the dead-letter
	// exchange; the valid 200,000-resource report is 3-4 MB of JSON
	// decoded into 200,000 strings; with Go's GC letting the heap reach
	// twice the live size (GOGC=100), 2 × (100 MB + ~30 MB) plus the
	// runtime and the fleet state of 500 nodes comes to ~270 MB. A
	// decoder that materialised the 100,000-level nesting or copied the
	// huge body per pipeline stage would blow through it.
	rssLimit = 300 << 20
)

// poison is one bad message and the reason the exporter must give.
type poison struct {
	what   string
	body   []byte
	reason string // substring of the x-runlens-reason header
}

// TestPoisonFlood mixes bad messages into 5,000 good runs: garbage bytes,
// a 50 MB report over --report.max-bytes=10MiB, JSON nested 100,000 levels
// deep (a bare array, and inside a report object), a report whose node name
// is invalid UTF-8, and an empty body; plus two unusual but valid reports:
// a Chef handler report with 200,000 updated resources of 200,000 distinct
// types, and one with invalid UTF-8 in its fqdn. Assertions:
//
//   - every good run is counted exactly once (sum of runlens_runs_total and
//     runlens_reports_total{outcome="processed"} exact);
//   - each bad message is in the dead-letter queue, byte for byte, with its
//     reason in x-runlens-reason, and counted as rejected;
//   - the 200,000-resource run counts 200,000 updated resources while the
//     resource_type label stays bounded (--metrics.max-resource-types + other);
//   - /metrics still parses (labels valid UTF-8), the exporter stays
//     connected and ready, and its peak RSS stays under rssLimit.
func TestPoisonFlood(t *testing.T) {
	n := newNames(t)
	e := startExporter(t, "exporter", n.args(rabbittest.URL, "--history.replay=0",
		fmt.Sprintf("--report.max-bytes=%d", poisonMaxBytes), "--metrics.max-resource-types=100")...)

	// RSS sampled every 20 ms; VmHWM (the kernel's peak) read at the end.
	var rssPeak atomic.Int64
	stopRSS := make(chan struct{})
	var rssWG sync.WaitGroup
	rssWG.Add(1)
	go func() {
		defer rssWG.Done()
		for {
			if v, err := procStatus(e.pid(), "VmRSS"); err == nil && v > rssPeak.Load() {
				rssPeak.Store(v)
			}
			select {
			case <-stopRSS:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	rssStart, _ := procStatus(e.pid(), "VmRSS")

	// 5,000 good runs: 500 nodes, 10 rounds.
	fleet := simulator.New(simulator.Config{Nodes: 500, Seed: 3, NodeAttributeBytes: 2 << 10})
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	var good [][]byte
	goodRuns, goodFailures := 0, 0
	for round := range 10 {
		for _, r := range fleet.Round(base.Add(time.Duration(round)*time.Minute), time.Minute, simulator.Random) {
			good = append(good, r.Messages...)
			goodRuns++
			if r.Failed {
				goodFailures++
			}
		}
	}

	// Unusual but valid.
	end := base.Add(30 * time.Minute)
	res := make([]string, manyResources)
	for i := range res {
		res[i] = fmt.Sprintf("t%06d[/srv/%d]", i, i)
	}
	bigRun, _ := json.Marshal(map[string]any{
		"node_name": "many-resources", "fqdn": "many-resources.example.internal", "environment": "flood",
		"status": "success", "run_start_time": end.Add(-time.Minute).UTC().Format(time.RFC3339),
		"run_end_time": end.UTC().Format(time.RFC3339), "run_elapsed_time": 60,
		"updated_resources_count": manyResources, "updated_resources": res, "run_id": "many-resources-1",
	})
	badFQDN := bytes.Replace(handlerReport("bad-fqdn", "flood", "bad-fqdn-1", end),
		[]byte(`"bad-fqdn.example.internal"`), []byte("\"bad-fqdn.\xff\xfe.example.internal\""), 1)
	good = append(good, bigRun, badFQDN)
	goodRuns += 2
	t.Logf("the 200,000-resource report is %.1f MiB", float64(len(bigRun))/(1<<20))

	// Bad.
	rnd := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(rnd.IntN(256))
	}
	garbage[0] = 0xff // never a JSON start
	huge := handlerReport("huge", "flood", "huge-1", end)
	huge = append(huge[:len(huge)-1], []byte(`,"padding":"`)...)
	huge = append(huge, bytes.Repeat([]byte("a"), hugeBytes-len(huge)-2)...)
	huge = append(huge, '"', '}')
	const depth = 100_000
	nestedArray := append(bytes.Repeat([]byte("["), depth), bytes.Repeat([]byte("]"), depth)...)
	nestedReport := append([]byte(`{"node_name":"deep","run_end_time":"2026-01-01T00:00:00Z","x":`), nestedArray...)
	nestedReport = append(nestedReport, '}')
	badName := bytes.Replace(handlerReport("bad-name-PLACEHOLDER", "flood", "bad-name-1", end),
		[]byte(`"node_name":"bad-name-PLACEHOLDER"`), []byte("\"node_name\":\"bad-name-\xff\xfe\""), 1)
	bad := []poison{
		{"garbage", garbage, "invalid JSON"},
		{"text", []byte("\x00\x01 not json at all"), "invalid JSON"},
		{"empty", []byte{}, "empty message"},
		{"huge", huge, "exceeds the limit"},
		{"unclosed nesting", bytes.Repeat([]byte("["), depth), "invalid JSON"},
		{"nested array", nestedArray, "invalid JSON"},
		{"nested report", nestedReport, "invalid JSON"},
		{"invalid UTF-8 node name", badName, "not valid UTF-8"},
	}

	// Bad ones at random places among the good.
	bodies := append([][]byte(nil), good...)
	for _, p := range bad {
		i := rnd.IntN(len(bodies) + 1)
		bodies = append(bodies[:i], append([][]byte{p.body}, bodies[i:]...)...)
	}
	t.Logf("publishing %d messages: %d good (%d runs), %d bad", len(bodies), len(good), goodRuns, len(bad))
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := publishAll(ctx, n.exchange, bodies); err != nil {
		t.Fatalf("publish: %v", err)
	}
	t.Logf("published in %s", time.Since(start).Round(time.Millisecond))

	waitFor(t, 3*time.Minute, 250*time.Millisecond, "every message handled", func() (bool, string) {
		s, err := e.scrape("runlens_reports_total")
		if err != nil {
			return false, err.Error()
		}
		return s.reports("") >= float64(len(bodies)), fmt.Sprintf("%.0f of %d", s.reports(""), len(bodies))
	})
	t.Logf("all %d messages handled %s after publishing began", len(bodies), time.Since(start).Round(time.Millisecond))
	close(stopRSS)
	rssWG.Wait()
	hwm, err := procStatus(e.pid(), "VmHWM")
	if err != nil {
		t.Fatal(err)
	}

	s := e.mustScrape() // all of it: a label with invalid UTF-8 would fail the parse
	if got := s.sum("runlens_runs_total"); got != float64(goodRuns) {
		t.Errorf("sum of runlens_runs_total = %v, want %d", got, goodRuns)
	}
	if got := s.sum("runlens_run_failures_total"); got != float64(goodFailures) {
		t.Errorf("sum of runlens_run_failures_total = %v, want %d", got, goodFailures)
	}
	if got := s.reports("processed"); got != float64(len(good)) {
		t.Errorf("processed = %v, want %d", got, len(good))
	}
	if got := s.reports("duplicate"); got != 0 {
		t.Errorf("duplicate = %v, want 0", got)
	}
	if got := s.reports("rejected"); got != float64(len(bad)) {
		t.Errorf("rejected = %v, want %d", got, len(bad))
	}
	if got := s.sum("runlens_last_run_updated_resources", "node", "many-resources"); got != manyResources {
		t.Errorf("many-resources: last run updated resources = %v, want %d", got, manyResources)
	}
	// 200,000 from many-resources, 1 (file[/etc/motd]) from bad-fqdn.
	if got := s.sum("runlens_resource_updates_total", "environment", "flood"); got != manyResources+1 {
		t.Errorf("runlens_resource_updates_total{environment=flood} sums to %v, want %d", got, manyResources+1)
	}
	if types := s.count("runlens_resource_updates_total", "environment", "flood"); types > 101 {
		t.Errorf("%d resource_type series for one environment, want at most 100 + other", types)
	}
	if !s.has("runlens_runs_total", "node", "bad-fqdn") {
		t.Errorf("the report with invalid UTF-8 in its fqdn was not counted")
	}
	if got := s.sum("runlens_amqp_up"); got != 1 {
		t.Errorf("runlens_amqp_up = %v after the flood", got)
	}
	e.waitReady(5 * time.Second)

	// The dead-letter queue holds exactly the bad messages, each with its
	// reason.
	dead := rabbittest.Get(t, n.dlq, len(bad)+10)
	if len(dead) != len(bad) {
		t.Errorf("%d messages dead-lettered, want %d", len(dead), len(bad))
	}
	for _, p := range bad {
		found := false
		for _, d := range dead {
			if !bytes.Equal(d.Body, p.body) {
				continue
			}
			found = true
			reason, _ := d.Headers[broker.HeaderReason].(string)
			t.Logf("dead-lettered %s (%d bytes): %s", p.what, len(p.body), reason)
			if !strings.Contains(reason, p.reason) {
				t.Errorf("%s: reason %q, want it to mention %q", p.what, reason, p.reason)
			}
			break
		}
		if !found {
			t.Errorf("%s (%d bytes) is not in the dead-letter queue byte for byte", p.what, len(p.body))
		}
	}
	if ready := rabbittest.MessageCount(t, n.queue); ready != 0 {
		t.Errorf("%d messages left in the queue", ready)
	}

	t.Logf("exporter RSS: %.0f MiB at start, %.0f MiB peak sampled, %.0f MiB VmHWM (limit %d MiB)",
		float64(rssStart)/(1<<20), float64(rssPeak.Load())/(1<<20), float64(hwm)/(1<<20), rssLimit>>20)
	if hwm > rssLimit {
		t.Errorf("exporter peak RSS %.0f MiB over the %d MiB limit", float64(hwm)/(1<<20), rssLimit>>20)
	}
	if strings.Contains(e.logs(), "panic") {
		t.Errorf("the exporter logged a panic")
	}
}
