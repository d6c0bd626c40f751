package ingest

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/runlens/runlens/exporter/collector"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

// A valid report of one node past --node.max-nodes is dead-lettered with its
// reason and counted as rejected, not silently dropped.
func TestHandleRefusesNodesPastTheBound(t *testing.T) {
	var logs bytes.Buffer
	st := fleet.New(fleet.Options{MaxNodes: 1})
	reg := prometheus.NewRegistry()
	m := collector.NewIngestMetrics(reg, 10, 10)
	now := func() time.Time { return time.Date(2026, 11, 1, 12, 0, 5, 0, time.UTC) }
	p := New(report.Decoder{MaxBytes: 4096}, st, m, slog.New(slog.NewTextHandler(&logs, nil)), now)
	if err := p.Handle(context.Background(), broker.Message{Body: []byte(good)}); err != nil {
		t.Fatal(err)
	}
	other := strings.Replace(good, `"web-1"`, `"web-2"`, 1)
	err := p.Handle(context.Background(), broker.Message{Body: []byte(other)})
	if reason, ok := broker.IsDeadLetter(err); !ok || reason != ReasonNodeLimit {
		t.Fatalf("second node: %v, want a dead letter with %q", err, ReasonNodeLimit)
	}
	if st.Len() != 1 || st.Refusals().Nodes != 1 {
		t.Errorf("%d nodes, %d refused", st.Len(), st.Refusals().Nodes)
	}
	want := `
# HELP runlens_reports_total Reports received, by detected format and outcome (processed, duplicate, rejected).
# TYPE runlens_reports_total counter
runlens_reports_total{format="chef_data_collector",outcome="duplicate"} 0
runlens_reports_total{format="chef_data_collector",outcome="processed"} 0
runlens_reports_total{format="chef_data_collector",outcome="rejected"} 0
runlens_reports_total{format="chef_handler",outcome="duplicate"} 0
runlens_reports_total{format="chef_handler",outcome="processed"} 1
runlens_reports_total{format="chef_handler",outcome="rejected"} 1
runlens_reports_total{format="salt",outcome="duplicate"} 0
runlens_reports_total{format="salt",outcome="processed"} 0
runlens_reports_total{format="salt",outcome="rejected"} 0
runlens_reports_total{format="unknown",outcome="duplicate"} 0
runlens_reports_total{format="unknown",outcome="processed"} 0
runlens_reports_total{format="unknown",outcome="rejected"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "runlens_reports_total"); err != nil {
		t.Error(err)
	}
	if !strings.Contains(logs.String(), "node limit reached") {
		t.Errorf("refusal not logged:\n%s", logs.String())
	}
}
