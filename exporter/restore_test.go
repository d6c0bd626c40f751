package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/snapshot"
)

// When a snapshot is due: the history moved since the newest one, and the
// interval passed or half a fleet's worth of reports (at least 10,000) came.
func TestSnapshotDue(t *testing.T) {
	state := fleet.New(fleet.Options{})
	for i := range 30_000 {
		state.Restore(&report.Run{Kind: report.KindRun, Node: fmt.Sprint("n", i), End: time.Now(), Status: report.StatusSuccess}, time.Now())
	}
	r := newRestorer(&config{snapshotInterval: 5 * time.Minute, historyStream: "h"}, nil, state, nil)
	fresh := &snapshot.Info{Covers: 1000, Written: time.Now()}
	old := &snapshot.Info{Covers: 1000, Written: time.Now().Add(-6 * time.Minute)}
	for _, tc := range []struct {
		name   string
		last   int64
		newest *snapshot.Info
		due    bool
	}{
		{"no history", -1, nil, false},
		{"no snapshot yet", 0, nil, true},
		{"nothing new", 1000, old, false},
		{"fresh, a few reports", 1100, fresh, false},
		{"interval passed", 1001, old, true},
		{"half the fleet since", 1000 + 15_000, fresh, true},
		{"just under half the fleet", 1000 + 14_999, fresh, false},
	} {
		r.last.Store(tc.last)
		if got := r.due(tc.newest); got != tc.due {
			t.Errorf("%s: due = %v, want %v", tc.name, got, tc.due)
		}
	}
	// A small fleet: at least 10,000 reports.
	r.state = fleet.New(fleet.Options{})
	r.last.Store(1000 + 9_999)
	if r.due(fresh) {
		t.Error("due after 9,999 reports in a small fleet")
	}
	r.last.Store(1000 + 10_000)
	if !r.due(fresh) {
		t.Error("not due after 10,000 reports")
	}
}
