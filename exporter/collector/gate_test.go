package collector

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

// Until the state is restored, /metrics has no per-node series nor
// runlens_nodes, and still has the ingest, AMQP and process series.
func TestGateHoldsPerNodeSeriesUntilRestored(t *testing.T) {
	state := fleet.New(fleet.Options{})
	state.Apply(chefRun("web-1", "prod", "r1", report.StatusSuccess, 2), t0)
	reg := prometheus.NewRegistry()
	NewIngestMetrics(reg, 10, 10)
	RegisterAMQPUp(reg, func() bool { return true })
	fw := NewFleetWriter(state)
	var restored atomic.Bool
	fw.Gate(restored.Load)
	h := Handler(reg, fw, slog.New(slog.DiscardHandler), HandlerOpts{MaxInFlight: 1})

	scrape := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	body := scrape()
	for _, name := range FamilyNames() {
		if strings.Contains(body, name) {
			t.Errorf("%s served before the state was restored", name)
		}
	}
	for _, want := range []string{"runlens_amqp_up 1", "runlens_reports_total{"} {
		if !strings.Contains(body, want) {
			t.Errorf("%q missing while restoring", want)
		}
	}

	restored.Store(true)
	mfs := parse(t, bytes.NewBufferString(scrape()))
	for _, name := range FamilyNames() {
		if mfs[name] == nil {
			t.Errorf("%s missing once restored", name)
		}
	}
}
