package fleet

import (
	"fmt"
	"testing"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func run(node, id string, end time.Time, status report.Status, updated int) *report.Run {
	return &report.Run{
		Format: report.FormatChefHandler, Kind: report.KindRun, Source: report.SourceChef,
		ID: id, Node: node, Environment: "prod", Roles: []string{"web", "base", "web"},
		Status: status, Start: end.Add(-time.Minute), End: end, Duration: time.Minute,
		UpdatedCount: updated,
		Updated:      []report.Resource{{Type: "file", Name: "/a"}, {Type: "package", Name: "nginx"}},
	}
}

func TestApplyCountsAndLastRun(t *testing.T) {
	s := New(Options{})
	now := t0.Add(time.Hour)
	if got := s.Apply(run("web-1", "r1", t0, report.StatusSuccess, 3), now); got != Applied {
		t.Fatalf("first apply = %v", got)
	}
	s.Apply(run("web-1", "r2", t0.Add(30*time.Minute), report.StatusFailure, 2), now)
	n, ok := s.Node("web-1")
	if !ok {
		t.Fatal("node missing")
	}
	if n.Runs != 2 || n.Failures != 1 || n.UpdatedResources != 5 {
		t.Fatalf("counters = %d runs %d failures %d updated", n.Runs, n.Failures, n.UpdatedResources)
	}
	if n.Last.ID != "r2" || n.Last.Status != report.StatusFailure || n.Last.Updated != 2 {
		t.Fatalf("last run = %+v", n.Last)
	}
	if got := n.RolesLabel(); got != "base,web" {
		t.Fatalf("roles label = %q, want sorted, de-duplicated", got)
	}
	if n.Last.Changes != nil {
		t.Fatalf("KeepChanges 0 must keep no names, got %v", n.Last.Changes)
	}
}

func TestDuplicateIsNotCounted(t *testing.T) {
	s := New(Options{})
	r := run("web-1", "r1", t0, report.StatusFailure, 4)
	s.Apply(r, t0)
	if got := s.Apply(r, t0); got != Duplicate {
		t.Fatalf("second apply = %v, want Duplicate", got)
	}
	n, _ := s.Node("web-1")
	if n.Runs != 1 || n.Failures != 1 || n.UpdatedResources != 4 {
		t.Fatalf("duplicate was counted: %+v", n)
	}
}

func TestDedupWindowIsBounded(t *testing.T) {
	s := New(Options{DedupWindow: 3})
	for i := range 4 {
		s.Apply(run("n", fmt.Sprint("r", i), t0.Add(time.Duration(i)*time.Minute), report.StatusSuccess, 0), t0)
	}
	if len(s.dedup.set) != 3 {
		t.Fatalf("dedup holds %d keys, want 3", len(s.dedup.set))
	}
	// r0 fell out of the window: it is applied (counted) again.
	if got := s.Apply(run("n", "r0", t0, report.StatusSuccess, 0), t0); got != Applied {
		t.Fatalf("r0 after eviction = %v", got)
	}
	// r3 is still inside.
	if got := s.Apply(run("n", "r3", t0.Add(3*time.Minute), report.StatusSuccess, 0), t0); got != Duplicate {
		t.Fatalf("r3 = %v", got)
	}
}

func TestOutOfOrderDoesNotMoveLastRunBack(t *testing.T) {
	s := New(Options{})
	newer := run("db-1", "new", t0.Add(time.Hour), report.StatusSuccess, 1)
	newer.Environment = "prod"
	older := run("db-1", "old", t0, report.StatusFailure, 7)
	older.Environment = "staging" // identity of an old run must not win either
	s.Apply(newer, t0.Add(2*time.Hour))
	s.Apply(older, t0.Add(2*time.Hour))
	n, _ := s.Node("db-1")
	if n.Last.ID != "new" || !n.Last.End.Equal(t0.Add(time.Hour)) || n.Last.Status != report.StatusSuccess {
		t.Fatalf("last run moved backwards: %+v", n.Last)
	}
	if n.Environment != "prod" {
		t.Fatalf("environment = %q from an older run", n.Environment)
	}
	// The older run still happened: it is counted.
	if n.Runs != 2 || n.Failures != 1 || n.UpdatedResources != 8 {
		t.Fatalf("counters = %+v", n)
	}
}

func TestConverging(t *testing.T) {
	s := New(Options{})
	start := &report.Run{Kind: report.KindStart, Source: report.SourceChef, Format: report.FormatChefDataCollector,
		ID: "r1", Node: "web-1", Start: t0}
	s.Apply(start, t0)
	n, _ := s.Node("web-1")
	if !n.Converging || !n.ConvergingSince.Equal(t0) || n.Last != nil || n.Runs != 0 {
		t.Fatalf("after start: %+v", n)
	}
	s.Apply(run("web-1", "r1", t0.Add(time.Minute), report.StatusSuccess, 0), t0)
	n, _ = s.Node("web-1")
	if n.Converging {
		t.Fatal("still converging after its run ended")
	}
	// The start of that same run arriving late must not flip it back.
	start2 := *start
	start2.Format = report.FormatChefHandler // a different key: not a duplicate
	s.Restore(&start2, t0)
	if n, _ = s.Node("web-1"); n.Converging {
		t.Fatal("late start of the finished run marked the node converging")
	}
	// A new run starting later does.
	s.Apply(&report.Run{Kind: report.KindStart, ID: "r2", Node: "web-1", Start: t0.Add(time.Hour)}, t0)
	if n, _ = s.Node("web-1"); !n.Converging {
		t.Fatal("new start not shown")
	}
}

func TestRestoreDoesNotCountNorDedup(t *testing.T) {
	s := New(Options{})
	r := run("web-1", "r1", t0, report.StatusFailure, 3)
	s.Restore(r, t0)
	n, _ := s.Node("web-1")
	if n.Runs != 0 || n.Failures != 0 || n.Last == nil || n.Last.Status != report.StatusFailure {
		t.Fatalf("restore: %+v", n)
	}
	// The same report through the counted path after a restart is counted once.
	if got := s.Apply(r, t0); got != Applied {
		t.Fatalf("apply after restore = %v", got)
	}
	if n, _ = s.Node("web-1"); n.Runs != 1 || n.Failures != 1 {
		t.Fatalf("after apply: %+v", n)
	}
}

func TestExpire(t *testing.T) {
	s := New(Options{})
	s.Apply(run("old", "a", t0, report.StatusSuccess, 0), t0)
	s.Apply(run("new", "b", t0.Add(50*time.Minute), report.StatusSuccess, 0), t0.Add(50*time.Minute))
	// A node whose clock runs ahead is seen "now", not in the future.
	s.Apply(run("future", "c", t0.Add(48*time.Hour), report.StatusSuccess, 0), t0)
	gone := s.Expire(t0.Add(90*time.Minute), time.Hour)
	if len(gone) != 2 || gone[0] != "future" || gone[1] != "old" {
		t.Fatalf("expired %v, want [future old]", gone)
	}
	if s.Len() != 1 {
		t.Fatalf("len = %d", s.Len())
	}
	if s.Expire(t0.Add(1000*time.Hour), 0) != nil {
		t.Fatal("ttl 0 must keep everything")
	}
}

func TestKeepChangesAndSnapshotOrder(t *testing.T) {
	s := New(Options{KeepChanges: 1})
	for _, name := range []string{"c", "a", "b"} {
		s.Apply(run(name, name, t0, report.StatusSuccess, 2), t0)
	}
	snap := s.Snapshot()
	if len(snap) != 3 || snap[0].Name != "a" || snap[2].Name != "c" {
		t.Fatalf("snapshot not sorted: %v", snap)
	}
	if got := snap[0].Last.Changes; len(got) != 1 || got[0].String() != "file[/a]" {
		t.Fatalf("changes = %v", got)
	}
}

func TestGenerationMoves(t *testing.T) {
	s := New(Options{})
	g := s.Generation()
	s.Apply(run("a", "1", t0, report.StatusSuccess, 0), t0)
	if s.Generation() == g {
		t.Fatal("generation did not move on apply")
	}
}

func TestConcurrentUse(t *testing.T) {
	s := New(Options{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			s.Apply(run(fmt.Sprint("n", i%50), fmt.Sprint(i), t0.Add(time.Duration(i)*time.Second), report.StatusSuccess, 1), t0)
		}
	}()
	for range 200 {
		_ = s.Snapshot()
		s.Expire(t0, 24*time.Hour)
	}
	<-done
	var runs uint64
	for _, n := range s.Snapshot() {
		runs += n.Runs
	}
	if runs != 2000 {
		t.Fatalf("runs = %d", runs)
	}
}

// A counted report means the node was heard from now, whatever its clock
// says; a restored one is as old as the report.
func TestSeenIsArrivalForCountedReports(t *testing.T) {
	s := New(Options{})
	s.Apply(run("slow-clock", "a", t0.Add(-48*time.Hour), report.StatusSuccess, 0), t0)
	s.Restore(run("old-history", "b", t0.Add(-3*time.Hour), report.StatusSuccess, 0), t0)
	gone := s.Expire(t0.Add(30*time.Minute), time.Hour)
	if len(gone) != 1 || gone[0] != "old-history" {
		t.Fatalf("expired %v, want [old-history]", gone)
	}
}
