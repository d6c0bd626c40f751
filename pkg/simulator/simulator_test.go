package simulator

import (
	"bytes"
	"testing"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// Every message the simulator makes must decode to the run it meant.
func TestRunsDecodeToWhatWasSimulated(t *testing.T) {
	f := New(Config{Nodes: 30, FailureRate: 0.3, Seed: 7})
	formats := map[report.Format]int{}
	failed := 0
	for _, r := range f.Round(t0, time.Minute, Random) {
		var last *report.Run
		for i, m := range r.Messages {
			got, err := report.Decode(m)
			if err != nil {
				t.Fatalf("%s message %d: %v", r.Node.Name, i, err)
			}
			last = got
		}
		formats[last.Format]++
		if last.Kind != report.KindRun || last.Node != r.Node.Name || last.Environment != r.Node.Environment {
			t.Fatalf("%s: decoded %v %q env %q", r.Node.Name, last.Kind, last.Node, last.Environment)
		}
		if want := r.Failed; (last.Status == report.StatusFailure) != want {
			t.Fatalf("%s: status %s, simulated failed=%v", r.Node.Name, last.Status, want)
		}
		if last.UpdatedCount != r.Updated {
			t.Fatalf("%s (%s): updated %d, simulated %d", r.Node.Name, last.Format, last.UpdatedCount, r.Updated)
		}
		if last.ID != r.ID {
			t.Fatalf("%s: id %q, simulated %q", r.Node.Name, last.ID, r.ID)
		}
		if r.Failed {
			failed++
		}
	}
	for _, fm := range []report.Format{report.FormatChefHandler, report.FormatChefDataCollector, report.FormatSalt} {
		if formats[fm] != 10 {
			t.Errorf("format %s: %d nodes, want 10", fm, formats[fm])
		}
	}
	if failed == 0 || failed == 30 {
		t.Errorf("failed runs = %d of 30 at rate 0.3", failed)
	}
}

func TestDataCollectorSendsStartThenConverge(t *testing.T) {
	f := New(Config{Nodes: 3, Formats: []report.Format{report.FormatChefDataCollector}})
	r := f.NextRun(0, t0, Succeed)
	if len(r.Messages) != 2 {
		t.Fatalf("messages = %d", len(r.Messages))
	}
	start, err := report.Decode(r.Messages[0])
	if err != nil || start.Kind != report.KindStart || start.ID != r.ID {
		t.Fatalf("first message: %+v %v", start, err)
	}
}

func TestSeedIsReproducible(t *testing.T) {
	a := New(Config{Nodes: 5, Seed: 3}).Round(t0, time.Minute, Random)
	b := New(Config{Nodes: 5, Seed: 3}).Round(t0, time.Minute, Random)
	for i := range a {
		for j := range a[i].Messages {
			if !bytes.Equal(a[i].Messages[j], b[i].Messages[j]) {
				t.Fatalf("run %d message %d differs between two fleets with one seed", i, j)
			}
		}
	}
}

func TestForcedOutcome(t *testing.T) {
	f := New(Config{Nodes: 6})
	for _, r := range f.Round(t0, 0, Fail) {
		got, err := report.Decode(r.Messages[len(r.Messages)-1])
		if err != nil || got.Status != report.StatusFailure {
			t.Fatalf("%s: %v %v", r.Node.Name, got, err)
		}
	}
}
