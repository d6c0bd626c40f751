//go:build faults

package faults

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/simulator"
	"github.com/runlens/runlens/pkg/snapshot"
)

// Restarts with fleet snapshots (pkg/snapshot). Each test publishes a long
// history (rounds of the whole fleet), lets exporters follow it and write
// snapshots, kills them with SIGKILL, publishes more while they are down, and
// restarts them while scraping /metrics every 250 ms from the first answer:
//
//   - no scrape ever serves a node's last run older than the truth (what was
//     published before the restart, all of which the killed exporter had
//     served or would have): before the state is restored the per-node
//     series are absent, after it they are exact;
//   - the first scrape once /-/ready answers 200 has every node, right;
//   - the restart loaded a snapshot and replayed only the history after it.
//
// snapshotNodes × snapshotRounds is sized so that each test takes seconds;
// the benchmark (cmd/runlens-bench -restart) measures the large fleets.
const (
	snapshotNodes  = 5000
	snapshotRounds = 8
)

// truthHistory publishes rounds of runs and remembers each node's last one.
type truthHistory struct {
	t        *testing.T
	exchange string
	fleet    *simulator.Fleet
	base     time.Time
	round    int
	messages int
	lastEnd  map[string]float64
	success  map[string]float64
}

func newTruthHistory(t *testing.T, exchange string, seed uint64) *truthHistory {
	return &truthHistory{
		t: t, exchange: exchange,
		fleet:   simulator.New(simulator.Config{Nodes: snapshotNodes, Seed: seed, NodeAttributeBytes: 64, Resources: 8, FailureRate: 0.2}),
		base:    time.Now().Add(-3 * time.Hour).Truncate(time.Second),
		lastEnd: map[string]float64{}, success: map[string]float64{},
	}
}

// publish publishes a round for the first n nodes (ends on whole seconds, a
// minute after the previous round's, so the truth is exact).
func (h *truthHistory) publish(n int) {
	h.t.Helper()
	var bodies [][]byte
	for i := range n {
		end := h.base.Add(time.Duration(h.round)*time.Minute + time.Duration(i%50)*time.Second)
		r := h.fleet.NextRun(i, end, simulator.Random)
		bodies = append(bodies, r.Messages...)
		h.lastEnd[r.Node.Name] = float64(r.End.Unix())
		h.success[r.Node.Name] = 1
		if r.Failed {
			h.success[r.Node.Name] = 0
		}
	}
	h.round++
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := publishAll(ctx, h.exchange, bodies); err != nil {
		h.t.Fatalf("publish: %v", err)
	}
	h.messages += len(bodies)
}

// check compares a scrape with the truth: stale lists nodes served with a
// last run older than the truth (or another success), missing those not
// served.
func (h *truthHistory) check(s samples) (stale, missing []string) {
	ts, ok := s.byNode("runlens_last_run_timestamp_seconds"), s.byNode("runlens_last_run_success")
	for node, v := range ts {
		if v != h.lastEnd[node] || ok[node] != h.success[node] {
			stale = append(stale, fmt.Sprintf("%s(last run %v success %v, truth %v %v)", node, v, ok[node], h.lastEnd[node], h.success[node]))
		}
	}
	for node := range h.lastEnd {
		if _, served := ts[node]; !served {
			missing = append(missing, node)
		}
	}
	return stale, missing
}

func (h *truthHistory) waitServed(e *exporter) {
	h.t.Helper()
	waitFor(h.t, 2*time.Minute, 250*time.Millisecond, e.name+" to serve every node's last run", func() (bool, string) {
		s, err := e.scrape("runlens_last_run_timestamp_seconds", "runlens_last_run_success")
		if err != nil {
			return false, err.Error()
		}
		stale, missing := h.check(s)
		return len(stale)+len(missing) == 0, fmt.Sprintf("%d behind, %d missing", len(stale), len(missing))
	})
}

// snapshotCovering waits until the snapshot stream's newest whole snapshot
// covers the history's last message.
func snapshotCovering(t *testing.T, n names, lastOffset int64) snapshot.Info {
	t.Helper()
	var info snapshot.Info
	cfg := snapshotConfig(n)
	waitFor(t, time.Minute, 250*time.Millisecond, "a snapshot covering the whole history", func() (bool, string) {
		var err error
		info, err = snapshot.Load(context.Background(), cfg, snapshot.LoadOptions{}, func(*fleet.Node) {})
		if err != nil {
			return false, err.Error()
		}
		return info.Covers == lastOffset, fmt.Sprintf("newest covers offset %d", info.Covers)
	})
	return info
}

func snapshotConfig(n names) snapshot.Config {
	return snapshot.Config{URL: rabbittest.URL, Stream: snapshot.Stream("", n.stream), History: n.stream,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// watched is what a restart looked like from outside.
type watched struct {
	name                 string
	firstAnswer, ready   time.Duration // since the process started
	scrapes, beforeReady int           // scrapes, and how many answered before ready
	stale                []string      // served values older than the truth, any scrape
	servedBeforeReady    int           // per-node series served before ready
	wrongAtReady         []string      // first scrape after ready: stale or missing nodes
}

// restartWatched starts an exporter and scrapes it every 250 ms from its
// first answer until two scrapes after it turned ready.
func restartWatched(t *testing.T, h *truthHistory, name string, args ...string) (*exporter, watched) {
	t.Helper()
	began := time.Now()
	e := startExporterNoWait(t, name, args...)
	w := watched{name: name}
	afterReady := 0
	deadline := time.Now().Add(2 * time.Minute)
	for afterReady < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 2 minutes; log:\n%s", name, tail(e.logs(), 40))
		}
		if !e.running() {
			t.Fatalf("%s exited (%v); log:\n%s", name, e.waitErr, tail(e.logs(), 40))
		}
		// Readiness first: a scrape that follows a 200 must be whole.
		ready := false
		if resp, err := http.Get(e.url("/-/ready")); err == nil {
			resp.Body.Close()
			ready = resp.StatusCode == http.StatusOK
		}
		s, err := e.scrape("runlens_last_run_timestamp_seconds", "runlens_last_run_success", "runlens_nodes")
		if err != nil {
			time.Sleep(20 * time.Millisecond) // not listening yet
			continue
		}
		if w.scrapes == 0 {
			w.firstAnswer = time.Since(began)
		}
		w.scrapes++
		stale, missing := h.check(s)
		w.stale = append(w.stale, stale...)
		if ready {
			if afterReady == 0 {
				w.ready = time.Since(began)
				w.wrongAtReady = append(stale, missing...)
				if got := s.sum("runlens_nodes"); got != float64(len(h.lastEnd)) {
					w.wrongAtReady = append(w.wrongAtReady, fmt.Sprintf("runlens_nodes %v", got))
				}
			}
			afterReady++
		} else {
			w.beforeReady++
			w.servedBeforeReady += s.count("runlens_last_run_timestamp_seconds")
		}
		time.Sleep(250 * time.Millisecond)
	}
	return e, w
}

func (w watched) assert(t *testing.T) {
	t.Helper()
	t.Logf("%s: first answer after %s, ready after %s; %d scrapes, %d before ready", w.name,
		w.firstAnswer.Round(time.Millisecond), w.ready.Round(time.Millisecond), w.scrapes, w.beforeReady)
	if len(w.stale) > 0 {
		t.Errorf("%s served %d last-run values older than the truth: %s", w.name, len(w.stale), firstFew(w.stale))
	}
	if w.servedBeforeReady > 0 {
		t.Errorf("%s served %d per-node series before it was ready", w.name, w.servedBeforeReady)
	}
	if len(w.wrongAtReady) > 0 {
		t.Errorf("%s once ready: %d nodes stale or missing: %s", w.name, len(w.wrongAtReady), firstFew(w.wrongAtReady))
	}
}

var replayedRE = regexp.MustCompile(`msg="history replayed".* reports=(\d+)`)

// replayedReports is how many history messages the restart replayed, from
// its log.
func replayedReports(t *testing.T, e *exporter) int {
	t.Helper()
	m := replayedRE.FindStringSubmatch(e.logs())
	if m == nil {
		t.Fatalf("%s logged no replay:\n%s", e.name, tail(e.logs(), 20))
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// snapshotNames are a test's names, with the history declared up front.
func snapshotNames(t *testing.T) names {
	t.Helper()
	n := newNames(t)
	n.declareHistory(t)
	return n
}

// TestRestartFromSnapshot: one exporter follows a 40,000-run history and
// writes snapshots (every 2 s while it moves); it is killed with SIGKILL
// right after a snapshot covering everything, two more rounds (over 10,000
// messages, so the next process finds a snapshot due as soon as it is
// restored) arrive while it is down, and the new process restores from the
// snapshot plus those. Stopped with SIGTERM straight away, it finishes that
// snapshot and writes its last one: the third start replays nothing.
func TestRestartFromSnapshot(t *testing.T) {
	n := snapshotNames(t)
	h := newTruthHistory(t, n.exchange, 21)
	e1 := startExporter(t, "exporter-1", n.args(rabbittest.URL, "--snapshot.interval=2s")...)
	for range snapshotRounds {
		h.publish(snapshotNodes)
	}
	h.waitServed(e1)
	info := snapshotCovering(t, n, int64(h.messages-1))
	e1.kill9()
	t.Logf("history of %d messages; exporter-1 killed after a snapshot of %d nodes in %d chunks, %d bytes (%.0f B/node)",
		h.messages, info.Nodes, info.Chunks, info.Bytes, float64(info.Bytes)/float64(info.Nodes))
	before := h.messages
	h.publish(snapshotNodes)
	h.publish(snapshotNodes)

	e2, w := restartWatched(t, h, "exporter-2", n.args(rabbittest.URL)...)
	w.assert(t)
	if !strings.Contains(e2.logs(), `msg="fleet snapshot loaded"`) {
		t.Errorf("exporter-2 did not load a snapshot:\n%s", tail(e2.logs(), 20))
	}
	if got, tailLen := replayedReports(t, e2), h.messages-before; got > tailLen+100 {
		t.Errorf("exporter-2 replayed %d history messages, want about the %d after the snapshot", got, tailLen)
	}
	// SIGTERM writes a last snapshot: the next start replays nothing.
	e2.stop()
	e3, w3 := restartWatched(t, h, "exporter-3", n.args(rabbittest.URL)...)
	w3.assert(t)
	if got := replayedReports(t, e3); got > 0 {
		t.Errorf("exporter-3 replayed %d history messages after a clean stop, want 0", got)
	}
}

// TestRestartWithDamagedSnapshots: the newest snapshot is damaged (a byte
// flipped in its last chunk): the restart walks back to the one before and
// replays the history after it. Then the only snapshot left is damaged: the
// restart falls back to the full replay. Both end right, and say so in the
// log.
func TestRestartWithDamagedSnapshots(t *testing.T) {
	n := snapshotNames(t)
	h := newTruthHistory(t, n.exchange, 22)
	e1 := startExporter(t, "exporter-1", n.args(rabbittest.URL, "--snapshot.interval=2s")...)
	for range snapshotRounds {
		h.publish(snapshotNodes)
	}
	h.waitServed(e1)
	snapshotCovering(t, n, int64(h.messages-1))
	e1.kill9()

	// A copy of the newest snapshot with its second chunk damaged, as the
	// newest on the stream.
	newest := readNewestSnapshot(t, n)
	damaged := make([][]byte, len(newest))
	for i, m := range newest {
		damaged[i] = bytes.Clone(m)
	}
	last := damaged[len(damaged)-1]
	last[len(last)/2] ^= 0x5a
	publishToStream(t, n.stream+snapshot.StreamSuffix, damaged...)
	h.publish(500)

	e2, w := restartWatched(t, h, "exporter-2", n.args(rabbittest.URL)...)
	w.assert(t)
	if !strings.Contains(e2.logs(), `msg="fleet snapshot loaded"`) {
		t.Errorf("exporter-2 did not walk back to the whole snapshot:\n%s", tail(e2.logs(), 20))
	}
	e2.kill9()

	// Only a damaged snapshot left.
	deleteStream(t, n.stream+snapshot.StreamSuffix)
	publishToStream(t, n.stream+snapshot.StreamSuffix, damaged...)
	h.publish(500)
	e3, w3 := restartWatched(t, h, "exporter-3", n.args(rabbittest.URL)...)
	w3.assert(t)
	logs := e3.logs()
	if !strings.Contains(logs, "no usable fleet snapshot (damaged or incomplete); replaying the whole history window") {
		t.Errorf("exporter-3 did not log the fallback:\n%s", tail(logs, 20))
	}
	if got := replayedReports(t, e3); got != h.messages {
		t.Errorf("exporter-3 replayed %d history messages, want all %d", got, h.messages)
	}
}

// readNewestSnapshot returns the messages of the newest whole snapshot.
func readNewestSnapshot(t *testing.T, n names) [][]byte {
	t.Helper()
	conn := rabbittest.Dial(t)
	var all [][]byte
	var starts []int
	_, err := broker.ReadStream(context.Background(), conn, n.stream+snapshot.StreamSuffix, broker.OffsetFirst, 32, 500*time.Millisecond,
		func(m broker.Message) bool {
			h, _, err := snapshot.Parse(m.Body)
			if err != nil {
				t.Fatalf("offset %d: %v", m.Offset, err)
			}
			if h.Index == 0 {
				starts = append(starts, len(all))
			}
			all = append(all, bytes.Clone(m.Body))
			return true
		})
	if err != nil || len(starts) == 0 {
		t.Fatalf("reading the snapshot stream: %v, %d snapshots", err, len(starts))
	}
	return all[starts[len(starts)-1]:]
}

func publishToStream(t *testing.T, stream string, msgs ...[]byte) {
	t.Helper()
	conn := rabbittest.Dial(t)
	ch, err := broker.DeclareStream(conn, snapshot.Stream(stream, ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	ch.Close()
	w, err := broker.NewStreamWriter(conn, stream, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, m := range msgs {
		if err := w.Write(context.Background(), m, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func deleteStream(t *testing.T, name string) {
	t.Helper()
	if _, err := rabbittest.Channel(t).QueueDelete(name, false, false, false); err != nil {
		t.Fatalf("delete %s: %v", name, err)
	}
}

// TestReplicasShareSnapshots: two replicas on one queue follow the history
// and share one snapshot stream (one writer at a time, every snapshot
// whole); both are killed, more runs arrive, both restart at once from the
// same snapshot and are right; each then counts only its share of the runs
// that came through the queue since (summed: each run once) while both show
// every node's last run.
func TestReplicasShareSnapshots(t *testing.T) {
	n := snapshotNames(t)
	h := newTruthHistory(t, n.exchange, 23)
	args := n.args(rabbittest.URL, "--snapshot.interval=2s", "--amqp.prefetch=16")
	a := startExporter(t, "replica-a", args...)
	b := startExporter(t, "replica-b", args...)
	for range snapshotRounds {
		h.publish(snapshotNodes)
	}
	h.waitServed(a)
	h.waitServed(b) // each follows the history: whole gauges, not its share
	// And the queue drained, so the counts after the restart are only of
	// what comes next.
	waitFor(t, time.Minute, 250*time.Millisecond, "the queue drained", func() (bool, string) {
		got := 0.0
		for _, e := range []*exporter{a, b} {
			s, err := e.scrape("runlens_reports_total")
			if err != nil {
				return false, err.Error()
			}
			got += s.reports("")
		}
		return got >= float64(h.messages), fmt.Sprintf("%.0f of %d", got, h.messages)
	})
	snapshotCovering(t, n, int64(h.messages-1))
	written := strings.Count(a.logs(), `msg="fleet snapshot written"`) + strings.Count(b.logs(), `msg="fleet snapshot written"`)
	whole := wholeSnapshots(t, n)
	t.Logf("replicas wrote %d snapshots, %d whole on the stream", written, whole)
	if whole != written {
		t.Errorf("%d snapshots written, %d whole on the stream (interleaved writers?)", written, whole)
	}
	a.kill9()
	b.kill9()
	atKill := h.messages
	h.publish(1000) // counted by the restarted replicas from the queue

	var wg sync.WaitGroup
	res := make([]watched, 2)
	exps := make([]*exporter, 2)
	for i, name := range []string{"replica-a2", "replica-b2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			exps[i], res[i] = restartWatched(t, h, name, args...)
		}()
	}
	wg.Wait()
	for _, w := range res {
		w.assert(t)
	}

	// A new round: counted once over both, every node right on both.
	h.publish(snapshotNodes)
	runs := 0.0
	waitFor(t, time.Minute, 250*time.Millisecond, "the new round counted", func() (bool, string) {
		counted, reports := 0.0, 0.0
		for _, e := range exps {
			s, err := e.scrape("runlens_runs_total", "runlens_reports_total")
			if err != nil {
				return false, err.Error()
			}
			counted += s.sum("runlens_runs_total")
			reports += s.reports("")
		}
		return reports >= float64(h.messages-atKill), fmt.Sprintf("%.0f of %d messages, %.0f runs", reports, h.messages-atKill, counted)
	})
	for _, e := range exps {
		s := e.mustScrape("runlens_runs_total", "runlens_last_run_timestamp_seconds", "runlens_last_run_success")
		runs += s.sum("runlens_runs_total")
		if s.sum("runlens_runs_total") == 0 {
			t.Errorf("%s counted none of the new round: not sharing the queue", e.name)
		}
		h.waitServed(e) // its follower may trail its queue share by a moment
	}
	if runs != 1000+snapshotNodes {
		t.Errorf("runs since the restart counted %v times over both replicas, want %d", runs, 1000+snapshotNodes)
	}
}

// wholeSnapshots reads the snapshot stream and counts whole snapshots,
// failing on chunks of two snapshots interleaved.
func wholeSnapshots(t *testing.T, n names) int {
	t.Helper()
	conn := rabbittest.Dial(t)
	var seq snapshot.Sequence
	whole := 0
	_, err := broker.ReadStream(context.Background(), conn, n.stream+snapshot.StreamSuffix, broker.OffsetFirst, 32, 500*time.Millisecond,
		func(m broker.Message) bool {
			h, _, err := snapshot.Parse(m.Body)
			if err != nil {
				t.Errorf("offset %d: %v", m.Offset, err)
				return false
			}
			if h.Index == 0 {
				seq = snapshot.Sequence{}
			}
			if err := seq.Next(h); err != nil {
				t.Errorf("offset %d: %v", m.Offset, err)
				return false
			}
			if seq.Complete() {
				whole++
			}
			return true
		})
	if err != nil {
		t.Fatal(err)
	}
	return whole
}
