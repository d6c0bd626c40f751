package plugin

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/runlens/runlens/internal/rabbittest"
)

// Replayed counts every message of the stream once it is handled (applied,
// or skipped as rejected), says caught up only once the replay has, and
// keeps counting live messages afterwards.
func TestReplayed(t *testing.T) {
	e := newEnv(t)
	const nodes, runs = 50, 400
	end := time.Now().Add(-time.Hour)
	var bodies [][]byte
	for i := range runs {
		bodies = append(bodies, handlerJSON(run{node: fmt.Sprintf("node-%03d", i%nodes), env: "prod", role: "web",
			id: fmt.Sprintf("run-%04d", i), end: end.Add(time.Duration(i) * time.Second)}))
	}
	bodies = append(bodies, []byte("not a report"))
	e.publish(t, bodies...)

	i, err := Factory(slogTo(e.logs))(context.Background(), e.settings(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	inst := i.(*Instance)
	t.Cleanup(inst.Dispose)
	if n, caughtUp := inst.Replayed(); caughtUp {
		// The replay waits 500 ms of quiet before saying so.
		t.Errorf("Replayed() = %d, true right after the start", n)
	}
	rabbittest.WaitFor(t, 15*time.Second, "caught up", func() bool { _, c := inst.Replayed(); return c })
	if n, _ := inst.Replayed(); n != runs+1 {
		t.Errorf("caught up with %d messages handled, want %d (%d reports + 1 rejected)", n, runs+1, runs)
	}
	// Counted once applied: the fleet has them all.
	if got := inst.fleet.Len(); got != nodes {
		t.Errorf("fleet has %d nodes, want %d", got, nodes)
	}
	if got := inst.rejected.Load(); got != 1 {
		t.Errorf("%d rejected, want 1", got)
	}

	// Live messages keep counting; caught up stays true.
	e.publish(t, handlerJSON(run{node: "node-new", env: "prod", role: "web", id: "run-live", end: time.Now()}))
	rabbittest.WaitFor(t, 10*time.Second, "live message", func() bool { n, _ := inst.Replayed(); return n == runs+2 })
	if n, caughtUp := inst.Replayed(); !caughtUp || inst.fleet.Len() != nodes+1 {
		t.Errorf("after a live report: Replayed() = %d, %v; fleet %d nodes, want %d", n, caughtUp, inst.fleet.Len(), nodes+1)
	}
}
