package plugin

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/snapshot"
)

// snapshotHistory publishes rounds of runs for nodes and writes, as an
// exporter would, a snapshot of the fleet covering the first rounds.
func snapshotHistory(t *testing.T, e *env, nodes, before, after int) (end time.Time) {
	t.Helper()
	rabbittest.DeleteQueues(t, e.stream+snapshot.StreamSuffix)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	round := func(k int) [][]byte {
		var bodies [][]byte
		for i := range nodes {
			bodies = append(bodies, handlerJSON(run{node: fmt.Sprintf("node-%03d", i), env: "prod", role: "web",
				id: fmt.Sprintf("run-%d-%03d", k, i), end: base.Add(time.Duration(k) * time.Minute), failed: (i+k)%7 == 0,
				updated: []string{fmt.Sprintf("file[/etc/round-%d]", k)}}))
		}
		return bodies
	}
	// What the exporter's follower would hold after the first rounds.
	state := fleet.New(fleet.Options{})
	var dec report.Decoder
	for k := range before {
		bodies := round(k)
		e.publish(t, bodies...)
		for _, b := range bodies {
			r, err := dec.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			state.Restore(r, time.Now())
		}
	}
	cfg := snapshot.Config{URL: rabbittest.URL, Stream: snapshot.Stream("", e.stream), History: e.stream}
	if _, err := snapshot.Write(context.Background(), cfg, state, int64(before*nodes-1), nil); err != nil {
		t.Fatal(err)
	}
	for k := before; k < before+after; k++ {
		e.publish(t, round(k)...)
	}
	return base.Add(time.Duration(before+after-1) * time.Minute)
}

// A snapshot serves the current topology: the instance follows only the
// history after it, has every node's latest run once caught up, and loads
// the older runs after (they serve the runs query and the node details).
func TestStartFromSnapshot(t *testing.T) {
	e := newEnv(t)
	const nodes, before, after = 40, 6, 2
	last := snapshotHistory(t, e, nodes, before, after)
	inst := e.start(t, nil, nil)
	if n, _ := inst.Replayed(); n != nodes*after {
		t.Errorf("caught up after %d messages, want the %d after the snapshot", n, nodes*after)
	}
	if !strings.Contains(e.logs.String(), "fleet snapshot loaded") {
		t.Fatalf("no snapshot loaded:\n%s", e.logs)
	}
	for i := range nodes {
		n, ok := inst.fleet.Node(fmt.Sprintf("node-%03d", i))
		if !ok || n.Last == nil || !n.Last.End.Equal(last) {
			t.Fatalf("node-%03d once caught up: %+v (present %v), want its run ending %v", i, n.Last, ok, last)
		}
	}
	rabbittest.WaitFor(t, 15*time.Second, "the older history", func() bool { return !inst.OlderHistoryLoading() })
	if got := inst.history.Len(); got != nodes*(before+after) {
		t.Errorf("history holds %d runs, want %d", got, nodes*(before+after))
	}
	f := mustFrames(t, inst, map[string]any{"queryType": "runs"}, last.Add(-time.Hour), last.Add(time.Minute))[0]
	if f.Rows() != nodes*(before+after) {
		t.Errorf("runs query: %d rows, want %d", f.Rows(), nodes*(before+after))
	}
	// The last runs came after the snapshot; their changed resources are
	// listed (the live feed keeps them).
	if n, _ := inst.fleet.Node("node-001"); len(n.Last.Changes) != 1 || n.Last.Changes[0].Name != fmt.Sprintf("/etc/round-%d", before+after-1) {
		t.Errorf("node-001 last run changes %v", n.Last.Changes)
	}
}

// While the older history loads, every answer says so.
func TestOlderHistoryNotice(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, nil, nil)
	notices := func() []data.Notice {
		r := query(t, inst, map[string]any{"queryType": "runs"}, time.Now().Add(-time.Hour), time.Now())
		if r.Error != nil {
			t.Fatal(r.Error)
		}
		return r.Frames[0].Meta.Notices
	}
	if inst.OlderHistoryLoading() {
		t.Fatal("loading older history without a snapshot")
	}
	for _, n := range notices() {
		if strings.Contains(n.Text, "older history") {
			t.Fatalf("notice %q without a snapshot", n.Text)
		}
	}
	inst.backfill.running.Store(true)
	found := false
	for _, n := range notices() {
		found = found || strings.Contains(n.Text, "still loading the older history")
	}
	if !found {
		t.Fatal("no notice while the older history loads")
	}
	inst.backfill.running.Store(false)
}

// A damaged snapshot: the instance says so and replays the whole window.
func TestStartFromDamagedSnapshot(t *testing.T) {
	e := newEnv(t)
	const nodes = 30
	rabbittest.DeleteQueues(t, e.stream+snapshot.StreamSuffix)
	var bodies [][]byte
	for i := range nodes {
		bodies = append(bodies, handlerJSON(run{node: fmt.Sprintf("node-%03d", i), env: "prod", role: "web", id: fmt.Sprint("r", i), end: time.Now().Add(-time.Minute)}))
	}
	e.publish(t, bodies...)
	// A snapshot stream holding something that is not a snapshot.
	conn := rabbittest.Dial(t)
	ch, err := broker.DeclareStream(conn, snapshot.Stream("", e.stream), nil)
	if err != nil {
		t.Fatal(err)
	}
	ch.Close()
	w, err := broker.NewStreamWriter(conn, e.stream+snapshot.StreamSuffix, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(context.Background(), []byte("RLSN not really a snapshot"), nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	inst := e.start(t, nil, nil)
	if n, _ := inst.Replayed(); n != nodes {
		t.Errorf("replayed %d messages, want the whole window (%d)", n, nodes)
	}
	if !strings.Contains(e.logs.String(), "no usable fleet snapshot (damaged or incomplete)") {
		t.Errorf("no warning about the snapshot:\n%s", e.logs)
	}
	if inst.OlderHistoryLoading() {
		t.Error("loading older history without a usable snapshot")
	}
}
