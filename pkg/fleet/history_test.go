package fleet

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

func start(node, id string, at time.Time) *report.Run {
	return &report.Run{
		Format: report.FormatChefDataCollector, Kind: report.KindStart, Source: report.SourceChef,
		ID: id, Node: node, Start: at,
	}
}

func runIDs(rs []*report.Run) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func TestHistoryOrdersOutOfOrderAdds(t *testing.T) {
	h := NewHistory(HistoryOptions{})
	for _, m := range []int{5, 1, 3, 9, 0, 7, 2} {
		h.Add(run(fmt.Sprint("n", m%2), fmt.Sprint("r", m), t0.Add(time.Duration(m)*time.Minute), report.StatusSuccess, 0))
	}
	// Same end: sorted by node.
	h.Add(run("b", "same-b", t0.Add(4*time.Minute), report.StatusSuccess, 0))
	h.Add(run("a", "same-a", t0.Add(4*time.Minute), report.StatusSuccess, 0))
	// Starts are not runs.
	h.Add(start("n0", "s1", t0.Add(6*time.Minute)))

	got := runIDs(h.Runs(t0.Add(-time.Hour), t0.Add(time.Hour)))
	want := []string{"r0", "r1", "r2", "r3", "same-a", "same-b", "r5", "r7", "r9"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("runs = %v, want %v", got, want)
	}
	if h.Len() != 10 {
		t.Fatalf("Len = %d, want 10", h.Len())
	}
}

func TestHistoryDedupByKey(t *testing.T) {
	h := NewHistory(HistoryOptions{})
	r := run("web-1", "r1", t0, report.StatusSuccess, 1)
	if !h.Add(r) {
		t.Fatal("first add refused")
	}
	again := *r
	if h.Add(&again) {
		t.Fatal("redelivered run accepted")
	}
	// A start and a run of the same run id are different records.
	if !h.Add(start("web-1", "r1", t0.Add(-time.Minute))) {
		t.Fatal("start of r1 refused")
	}
	// Without an id the key hashes node, start, end, status.
	noID := run("web-2", "", t0, report.StatusFailure, 0)
	if !h.Add(noID) || h.Add(run("web-2", "", t0, report.StatusFailure, 0)) {
		t.Fatal("hash key dedup")
	}
	if !h.Add(run("web-2", "", t0, report.StatusSuccess, 0)) {
		t.Fatal("different status must be another record")
	}
	if h.Len() != 4 {
		t.Fatalf("Len = %d, want 4", h.Len())
	}
}

func TestHistoryEvictsByCount(t *testing.T) {
	h := NewHistory(HistoryOptions{MaxRuns: 3})
	for _, m := range []int{2, 0, 4, 1, 3} {
		h.Add(run("n", fmt.Sprint("r", m), t0.Add(time.Duration(m)*time.Minute), report.StatusSuccess, 0))
	}
	// 0 was evicted when 1 arrived... and 1 when 3 arrived: the oldest go first.
	got := runIDs(h.Runs(t0.Add(-time.Hour), t0.Add(time.Hour)))
	if want := []string{"r2", "r3", "r4"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("runs = %v, want %v", got, want)
	}
	// Older than everything in a full history: not held.
	if h.Add(run("n", "r0", t0, report.StatusSuccess, 0)) {
		t.Fatal("r0 held again")
	}
	// An evicted key is forgotten: a newer record may come back.
	if !h.Add(run("n", "r1", t0.Add(10*time.Minute), report.StatusSuccess, 0)) {
		t.Fatal("evicted key still remembered")
	}
	if got := runIDs(h.Runs(t0.Add(-time.Hour), t0.Add(time.Hour))); !reflect.DeepEqual(got, []string{"r3", "r4", "r1"}) {
		t.Fatalf("runs = %v", got)
	}
	if h.Len() != 3 {
		t.Fatalf("Len = %d, want 3", h.Len())
	}
	if len(h.keys) != 3 {
		t.Fatalf("keys = %d, want 3", len(h.keys))
	}
}

func TestHistoryEvictsByAge(t *testing.T) {
	h := NewHistory(HistoryOptions{MaxAge: time.Hour})
	h.Add(run("n", "old", t0, report.StatusSuccess, 0))
	h.Add(run("n", "edge", t0.Add(30*time.Minute), report.StatusSuccess, 0))
	h.Add(run("n", "mid", t0.Add(time.Hour), report.StatusSuccess, 0))
	if h.Len() != 3 {
		t.Fatalf("Len = %d, want 3 (exactly MaxAge old is kept)", h.Len())
	}
	h.Add(run("n", "new", t0.Add(90*time.Minute), report.StatusSuccess, 0))
	got := runIDs(h.Runs(time.Time{}, t0.Add(24*time.Hour)))
	if want := []string{"edge", "mid", "new"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("runs = %v, want %v", got, want)
	}
	// Arriving already too old: not held.
	if h.Add(run("n", "late", t0.Add(20*time.Minute), report.StatusSuccess, 0)) {
		t.Fatal("record older than newest-MaxAge accepted")
	}
	if _, held := h.keys["run:old"]; held {
		t.Fatal("evicted key still held")
	}

	// Negative: no age bound.
	h = NewHistory(HistoryOptions{MaxAge: -1})
	h.Add(run("n", "a", t0.Add(-365*24*time.Hour), report.StatusSuccess, 0))
	h.Add(run("n", "b", t0, report.StatusSuccess, 0))
	if h.Len() != 2 {
		t.Fatalf("MaxAge<0: Len = %d, want 2", h.Len())
	}
	// Zero: the default week.
	h = NewHistory(HistoryOptions{})
	h.Add(run("n", "a", t0.Add(-8*24*time.Hour), report.StatusSuccess, 0))
	h.Add(run("n", "b", t0, report.StatusSuccess, 0))
	if h.Len() != 1 {
		t.Fatalf("default MaxAge: Len = %d, want 1", h.Len())
	}
}

func TestHistoryRunsBoundsInclusive(t *testing.T) {
	h := NewHistory(HistoryOptions{})
	for m := range 5 {
		h.Add(run("n", fmt.Sprint("r", m), t0.Add(time.Duration(m)*time.Minute), report.StatusSuccess, 0))
	}
	cases := []struct {
		from, to time.Duration
		want     []string
	}{
		{1 * time.Minute, 3 * time.Minute, []string{"r1", "r2", "r3"}},
		{time.Minute - 1, 3*time.Minute + 1, []string{"r1", "r2", "r3"}},
		{time.Minute + 1, 3*time.Minute - 1, []string{"r2"}},
		{2 * time.Minute, 2 * time.Minute, []string{"r2"}},
		{10 * time.Minute, 20 * time.Minute, nil},
		{3 * time.Minute, 1 * time.Minute, nil},
	}
	for _, c := range cases {
		got := h.Runs(t0.Add(c.from), t0.Add(c.to))
		if ids := runIDs(got); len(ids) != len(c.want) || (len(ids) > 0 && !reflect.DeepEqual(ids, c.want)) {
			t.Errorf("Runs(%v, %v) = %v, want %v", c.from, c.to, ids, c.want)
		}
	}
}

func TestHistoryStateAtLastStatus(t *testing.T) {
	h := NewHistory(HistoryOptions{})
	ok := run("web-1", "r1", t0, report.StatusSuccess, 2)
	bad := run("web-1", "r2", t0.Add(30*time.Minute), report.StatusFailure, 0)
	bad.Error = &report.RunError{Class: "Chef::Exceptions::Exec", Message: "boom"}
	bad.Roles = []string{"db"}
	h.Add(bad)
	h.Add(ok)

	cases := []struct {
		at     time.Duration
		want   report.Status
		id     string
		roles  []string
		exists bool
	}{
		{-time.Second, "", "", nil, false},
		{0, report.StatusSuccess, "r1", []string{"base", "web"}, true},
		{30*time.Minute - 1, report.StatusSuccess, "r1", []string{"base", "web"}, true},
		{30 * time.Minute, report.StatusFailure, "r2", []string{"db"}, true},
		{time.Hour, report.StatusFailure, "r2", []string{"db"}, true},
	}
	for _, c := range cases {
		s := h.StateAt(t0.Add(c.at), Options{KeepChanges: 10})
		n, found := s.Node("web-1")
		if found != c.exists {
			t.Fatalf("at %v: node exists = %v", c.at, found)
		}
		if !found {
			continue
		}
		if n.Last.Status != c.want || n.Last.ID != c.id || !reflect.DeepEqual(n.Roles, c.roles) {
			t.Errorf("at %v: last = %s %s roles %v, want %s %s %v", c.at, n.Last.ID, n.Last.Status, n.Roles, c.id, c.want, c.roles)
		}
		if n.Converging || n.Runs != 0 {
			t.Errorf("at %v: converging %v runs %d", c.at, n.Converging, n.Runs)
		}
		if c.id == "r1" && len(n.Last.Changes) != 2 {
			t.Errorf("KeepChanges not honoured: %v", n.Last.Changes)
		}
		if !n.Seen.Equal(n.Last.End) {
			t.Errorf("at %v: seen %v, want the run's end", c.at, n.Seen)
		}
	}
}

func TestHistoryStateAtConverging(t *testing.T) {
	h := NewHistory(HistoryOptions{})
	h.Add(run("web-1", "r1", t0, report.StatusSuccess, 0)) // start t0-1m
	h.Add(start("web-1", "r2", t0.Add(10*time.Minute)))
	h.Add(run("web-1", "r2", t0.Add(12*time.Minute), report.StatusFailure, 0))
	h.Add(start("web-2", "x1", t0.Add(11*time.Minute))) // never finishes

	cases := []struct {
		at         time.Duration
		node       string
		converging bool
		last       string
	}{
		{5 * time.Minute, "web-1", false, "r1"},
		{10 * time.Minute, "web-1", true, "r1"},
		{11 * time.Minute, "web-1", true, "r1"},
		{12 * time.Minute, "web-1", false, "r2"},
		{11 * time.Minute, "web-2", true, ""},
		{time.Hour, "web-2", true, ""},
	}
	for _, c := range cases {
		s := h.StateAt(t0.Add(c.at), Options{})
		n, ok := s.Node(c.node)
		if !ok {
			t.Fatalf("at %v: %s missing", c.at, c.node)
		}
		last := ""
		if n.Last != nil {
			last = n.Last.ID
		}
		if n.Converging != c.converging || last != c.last {
			t.Errorf("at %v %s: converging %v last %q, want %v %q", c.at, c.node, n.Converging, last, c.converging, c.last)
		}
	}
	if s := h.StateAt(t0.Add(10*time.Minute), Options{}); s.Len() != 1 {
		t.Fatalf("web-2 exists before its start")
	}
}

// StateAt restores only each node's latest run and start; it must agree with
// restoring every record in time order.
func TestHistoryStateAtMatchesFullReplay(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := NewHistory(HistoryOptions{MaxAge: -1})
	for i := range 3000 {
		node := fmt.Sprint("n", rng.IntN(40))
		at := t0.Add(time.Duration(rng.IntN(600)) * time.Second)
		id := fmt.Sprint("r", i)
		if rng.IntN(3) == 0 {
			if rng.IntN(4) == 0 {
				id = "" // hash key
			}
			h.Add(start(node, id, at))
			continue
		}
		st := report.StatusSuccess
		if rng.IntN(4) == 0 {
			st = report.StatusFailure
		}
		r := run(node, id, at, st, rng.IntN(5))
		r.Environment = fmt.Sprint("env", rng.IntN(3))
		h.Add(r)
	}
	for _, at := range []time.Duration{-time.Second, 0, time.Minute, 150 * time.Second, 5 * time.Minute, 599 * time.Second, time.Hour} {
		when := t0.Add(at)
		got := h.StateAt(when, Options{KeepChanges: 5}).Snapshot()
		full := New(Options{KeepChanges: 5})
		h.mu.RLock()
		for _, rec := range h.recs {
			if !rec.at.After(when) {
				full.Restore(rec.run, when)
			}
		}
		h.mu.RUnlock()
		want := full.Snapshot()
		if !reflect.DeepEqual(got, want) {
			for i := range min(len(got), len(want)) {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Fatalf("at %v: node %d differs:\n got %+v\nwant %+v", at, i, got[i], want[i])
				}
			}
			t.Fatalf("at %v: %d nodes, want %d", at, len(got), len(want))
		}
	}
}

func TestHistoryConcurrent(t *testing.T) {
	h := NewHistory(HistoryOptions{MaxRuns: 500})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 400 {
				at := t0.Add(time.Duration(i*4+w) * time.Second)
				if i%5 == 0 {
					h.Add(start(fmt.Sprint("n", w), fmt.Sprint(w, "-", i), at))
				} else {
					h.Add(run(fmt.Sprint("n", w), fmt.Sprint(w, "-", i), at, report.StatusSuccess, 1))
				}
				h.Add(run(fmt.Sprint("n", w), fmt.Sprint(w, "-", i), at, report.StatusSuccess, 1)) // dup
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				at := t0.Add(time.Duration(i*16) * time.Second)
				rs := h.Runs(t0, at)
				for j := 1; j < len(rs); j++ {
					if rs[j].End.Before(rs[j-1].End) {
						t.Error("Runs out of order")
						return
					}
				}
				h.StateAt(at, Options{}).Snapshot()
				h.Len()
			}
		}()
	}
	wg.Wait()
	if h.Len() != 500 {
		t.Fatalf("Len = %d, want 500", h.Len())
	}
}

func BenchmarkStateAt(b *testing.B) {
	h := NewHistory(HistoryOptions{MaxAge: -1})
	const nodes = 2000
	for i := range 100_000 {
		node := fmt.Sprint("node-", i%nodes)
		at := t0.Add(time.Duration(i) * time.Second)
		if i%10 == 0 {
			h.Add(start(node, fmt.Sprint("s", i), at))
			continue
		}
		h.Add(run(node, fmt.Sprint("r", i), at, report.StatusSuccess, 2))
	}
	if h.Len() != 100_000 {
		b.Fatalf("Len = %d", h.Len())
	}
	at := t0.Add(90_000 * time.Second)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if s := h.StateAt(at, Options{KeepChanges: 10}); s.Len() != nodes {
			b.Fatalf("nodes = %d", s.Len())
		}
	}
}
