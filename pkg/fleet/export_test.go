package fleet

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

// randomHistory is a history of finished runs and run starts for a few
// nodes, in a shuffled order, with identities that change over time, so that
// the order-dependent rules (newest run wins, stale starts ignored) matter.
func randomHistory(rng *rand.Rand, n int) []*report.Run {
	var out []*report.Run
	for i := range n {
		node := fmt.Sprintf("n-%d", rng.IntN(6))
		at := t0.Add(time.Duration(rng.IntN(600)) * time.Second)
		id := fmt.Sprintf("r-%d", i)
		if rng.IntN(4) == 0 {
			out = append(out, &report.Run{Kind: report.KindStart, Source: report.SourceChef, ID: id, Node: node, Start: at})
			continue
		}
		r := run(node, id, at, report.StatusSuccess, rng.IntN(5))
		if rng.IntN(3) == 0 {
			r.Status = report.StatusFailure
			r.Error = &report.RunError{Class: "E", Message: fmt.Sprint("failed ", i)}
		}
		r.Environment = []string{"prod", "staging"}[rng.IntN(2)]
		r.Roles = []string{"web", fmt.Sprint("r", rng.IntN(3))}
		r.FQDN = node + fmt.Sprintf(".%d.example", i)
		if rng.IntN(5) == 0 {
			r.ID = "" // keyed by hash
		}
		out = append(out, r)
		if rng.IntN(4) == 0 {
			// The same run's start arriving after its end.
			out = append(out, &report.Run{Kind: report.KindStart, Source: report.SourceChef, ID: r.ID, Node: node, Start: r.Start})
		}
	}
	return out
}

// comparable strips what Import does not carry (counters).
func comparable(nodes []Node) []Node {
	out := make([]Node, len(nodes))
	for i, n := range nodes {
		n.Runs, n.Failures, n.UpdatedResources = 0, 0, 0
		out[i] = n
	}
	return out
}

// Importing a snapshot of the state taken anywhere in a history (and even
// one that already holds some later reports, as a snapshot written while the
// counted queue runs ahead of the history does), then restoring the history
// after that point, gives exactly the state of restoring the whole history.
func TestImportCommutesWithRestore(t *testing.T) {
	now := t0.Add(2 * time.Hour)
	for seed := range 300 {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		hist := randomHistory(rng, 5+rng.IntN(40))
		cut := rng.IntN(len(hist) + 1)
		// Some later reports reach the writer through the counted queue
		// before it snapshots (heard from now, not at the report's time).
		var early []*report.Run
		for _, r := range hist[cut:] {
			if rng.IntN(3) == 0 {
				early = append(early, r)
			}
		}
		want := New(Options{KeepChanges: 2})
		for _, r := range hist {
			want.Restore(r, now)
		}
		for _, r := range early {
			want.Apply(r, now)
		}

		writer := New(Options{KeepChanges: 2})
		for _, r := range hist[:cut] {
			writer.Restore(r, now)
		}
		for _, r := range early {
			writer.Apply(r, now)
		}
		loaded := New(Options{KeepChanges: 2})
		writer.EachOf(writer.Names(), func(n *Node) { loaded.Import(n, now) })
		for _, r := range hist[cut:] {
			loaded.Restore(r, now)
		}
		got, exp := comparable(loaded.Snapshot()), comparable(want.Snapshot())
		if !reflect.DeepEqual(got, exp) {
			t.Fatalf("seed %d, cut %d of %d:\n got %+v\nwant %+v", seed, cut, len(hist), got, exp)
		}
	}
}

func TestImportKeepsTheNewer(t *testing.T) {
	now := t0.Add(time.Hour)
	s := New(Options{})
	s.Apply(run("web-1", "r2", t0.Add(time.Minute), report.StatusSuccess, 1), now)

	older := New(Options{})
	older.Restore(run("web-1", "r1", t0, report.StatusFailure, 3), now)
	n, _ := older.Node("web-1")
	s.Import(&n, now)
	got, _ := s.Node("web-1")
	if got.Last.ID != "r2" || got.Runs != 1 {
		t.Fatalf("an older imported run replaced the newer one or touched counters: %+v, last %+v", got, got.Last)
	}
	if !got.Seen.Equal(now) {
		t.Fatalf("seen = %v, want %v (the counted report's)", got.Seen, now)
	}
}

func TestImportConvergingAndSeen(t *testing.T) {
	now := t0.Add(time.Hour)
	src := New(Options{})
	src.Restore(run("web-1", "r1", t0, report.StatusSuccess, 1), now)
	src.Restore(&report.Run{Kind: report.KindStart, Source: report.SourceChef, ID: "r2", Node: "web-1", Start: t0.Add(time.Minute)}, now)
	src.Restore(&report.Run{Kind: report.KindStart, Source: report.SourceSalt, ID: "s1", Node: "only-started", Start: t0.Add(2 * time.Minute)}, now)
	in, _ := src.Node("web-1")
	in.Seen = t0.Add(30 * time.Minute) // heard from through the queue

	s := New(Options{})
	s.Import(&in, now)
	started, _ := src.Node("only-started")
	s.Import(&started, now)
	got, _ := s.Node("web-1")
	if !got.Converging || got.ConvergingRun() != "r2" || !got.ConvergingSince.Equal(t0.Add(time.Minute)) {
		t.Fatalf("converging not imported: %+v", got)
	}
	if !got.Seen.Equal(in.Seen) {
		t.Fatalf("seen = %v, want %v", got.Seen, in.Seen)
	}
	// The imported start ends with its own run.
	s.Restore(run("web-1", "r2", t0.Add(2*time.Minute), report.StatusSuccess, 0), now)
	if got, _ := s.Node("web-1"); got.Converging {
		t.Fatalf("still converging after its run ended")
	}
	if got, ok := s.Node("only-started"); !ok || got.Last != nil || !got.Converging || got.Source != report.SourceSalt {
		t.Fatalf("start-only node = %+v (present %v)", got, ok)
	}
	// A start stamped after the node was last heard from (a clock ahead):
	// the imported Seen stands, not the start's time.
	ahead := in
	ahead.Name, ahead.Seen = "ahead", t0
	s.Import(&ahead, now)
	if got, _ := s.Node("ahead"); !got.Seen.Equal(t0) || !got.Converging {
		t.Fatalf("seen = %v (converging %v), want %v", got.Seen, got.Converging, t0)
	}
	future := in
	future.Name, future.Seen = "future", now.Add(time.Hour)
	s.Import(&future, now)
	if got, _ := s.Node("future"); !got.Seen.Equal(now) {
		t.Fatalf("seen in the future = %v, want capped at %v", got.Seen, now)
	}
}

func TestNamesAndEachOf(t *testing.T) {
	s := New(Options{})
	for _, n := range []string{"c", "a", "b"} {
		s.Apply(run(n, "r-"+n, t0, report.StatusSuccess, 0), t0)
	}
	names := s.Names()
	if !reflect.DeepEqual(names, []string{"a", "b", "c"}) {
		t.Fatalf("names = %v", names)
	}
	s.Expire(t0.Add(time.Hour), time.Minute) // all gone
	s.Apply(run("b", "r-b2", t0.Add(time.Hour), report.StatusSuccess, 0), t0.Add(time.Hour))
	var seen []string
	s.EachOf(names, func(n *Node) { seen = append(seen, n.Name) })
	if !reflect.DeepEqual(seen, []string{"b"}) {
		t.Fatalf("EachOf visited %v, want only the node still tracked", seen)
	}
}
