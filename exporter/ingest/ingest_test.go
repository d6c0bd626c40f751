package ingest

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runlens/runlens/exporter/collector"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

const good = `{"node_name":"web-1","environment":"prod","status":"failure","run_start_time":"2026-11-01T11:59:00Z",` +
	`"run_end_time":"2026-11-01T12:00:00Z","run_id":"r1","updated_resources":["file[/a]"]}`

func newPipeline(t *testing.T) (*Pipeline, *fleet.State, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	st := fleet.New(fleet.Options{})
	m := collector.NewIngestMetrics(prometheus.NewRegistry(), 10, 10)
	now := func() time.Time { return time.Date(2026, 11, 1, 12, 0, 5, 0, time.UTC) }
	return New(report.Decoder{MaxBytes: 4096}, st, m, slog.New(slog.NewTextHandler(&logs, nil)), now), st, &logs
}

func TestHandle(t *testing.T) {
	p, st, logs := newPipeline(t)
	ctx := context.Background()
	if err := p.Handle(ctx, broker.Message{Body: []byte(good)}); err != nil {
		t.Fatalf("good report: %v", err)
	}
	// Redelivered, and prepared ahead by the broker this time.
	m := broker.Message{Body: []byte(good), Redelivered: true}
	m.Prepared = p.Prepare(m.Body)
	if err := p.Handle(ctx, m); err != nil {
		t.Fatalf("duplicate: %v", err)
	}
	n, _ := st.Node("web-1")
	if n.Runs != 1 || n.Failures != 1 {
		t.Fatalf("counted %d runs %d failures, want 1 and 1", n.Runs, n.Failures)
	}

	err := p.Handle(ctx, broker.Message{Body: []byte(`{"node_name":"x"`)})
	reason, ok := broker.IsDeadLetter(err)
	if !ok || !strings.Contains(reason, "JSON") {
		t.Fatalf("bad JSON: err %v, reason %q", err, reason)
	}
	err = p.Handle(ctx, broker.Message{Body: bytes.Repeat([]byte(" "), 5000)})
	if reason, ok := broker.IsDeadLetter(err); !ok || !strings.Contains(reason, "limit") {
		t.Fatalf("oversize: %v", err)
	}
	if c := strings.Count(logs.String(), "report rejected"); c != 2 {
		t.Errorf("%d rejection log lines, want 2:\n%s", c, logs)
	}
}

func TestRejectionLogIsRateLimited(t *testing.T) {
	p, _, logs := newPipeline(t)
	for range 1000 {
		_ = p.Handle(context.Background(), broker.Message{Body: []byte("garbage")})
	}
	if c := strings.Count(logs.String(), "report rejected"); c > 50 {
		t.Errorf("a flood of 1000 bad messages wrote %d log lines", c)
	}
}

func TestRestoreDoesNotCount(t *testing.T) {
	p, st, _ := newPipeline(t)
	p.Restore(broker.Message{Body: []byte(good)})
	p.Restore(broker.Message{Body: []byte("garbage")}) // skipped quietly
	n, ok := st.Node("web-1")
	if !ok || n.Last == nil || n.Runs != 0 {
		t.Fatalf("restore: %+v", n)
	}
	if err := p.Handle(context.Background(), broker.Message{Body: []byte(good)}); err != nil {
		t.Fatal(err)
	}
	if n, _ = st.Node("web-1"); n.Runs != 1 {
		t.Fatalf("the same report through the queue after a restore must count once, got %d", n.Runs)
	}
}

// The history follower decodes ahead (Prepare, in parallel); Restore takes
// that result rather than decoding again.
func TestRestoreUsesPrepared(t *testing.T) {
	p, st, _ := newPipeline(t)
	m := broker.Message{Body: []byte("not what was prepared")}
	m.Prepared = p.Prepare([]byte(good))
	p.Restore(m)
	if n, ok := st.Node("web-1"); !ok || n.Last == nil || n.Last.ID != "r1" {
		t.Fatalf("restore of a prepared message: %+v (present %v)", n, ok)
	}
}
