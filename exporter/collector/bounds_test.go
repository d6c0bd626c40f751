package collector

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

// environments returns the environment label values of run_duration_seconds.
func environments(t *testing.T, m *IngestMetrics) map[string]bool {
	t.Helper()
	ch := make(chan prometheus.Metric, 100)
	m.runDuration.Collect(ch)
	close(ch)
	out := map[string]bool{}
	for metric := range ch {
		var pb dto.Metric
		if err := metric.Write(&pb); err != nil {
			t.Fatal(err)
		}
		for _, l := range pb.Label {
			out[l.GetValue()] = true
		}
	}
	return out
}

func resourceEnvs(m *IngestMetrics) int { return testutil.CollectAndCount(m.resourceUpdates) }

func TestEnvironmentBoundFoldsAndForgets(t *testing.T) {
	m := NewIngestMetrics(prometheus.NewRegistry(), 10, 2)
	for i, env := range []string{"a", "b", "c", "d", "a"} {
		m.Processed(chefRun("n", env, string(rune('0'+i)), report.StatusSuccess, 1), t0)
	}
	if got := environments(t, m); len(got) != 3 || !got["a"] || !got["b"] || !got["other"] {
		t.Fatalf("environments %v, want a, b and other", got)
	}
	if got := testutil.ToFloat64(m.folded.WithLabelValues(BoundEnvironment)); got != 2 {
		t.Errorf("folded environments = %v, want 2 (c and d)", got)
	}
	// Nodes left in a (labelled) and c (folded): b goes, a and other stay.
	if n := m.ForgetEnvironments(func() map[string]int { return map[string]int{"a": 1, "c": 1} }); n != 1 {
		t.Errorf("ForgetEnvironments removed %d, want 1", n)
	}
	if got := environments(t, m); len(got) != 2 || !got["a"] || !got["other"] {
		t.Fatalf("after forgetting b: %v, want a and other", got)
	}
	// b's place is free again: a new environment gets its own label.
	m.Processed(chefRun("n", "e", "e1", report.StatusSuccess, 1), t0)
	if got := environments(t, m); !got["e"] {
		t.Errorf("new environment after a place freed: %v", got)
	}
	// A report counted while the fleet is read is kept, though the fleet
	// read before it did not list its environment.
	m.ForgetEnvironments(func() map[string]int {
		m.Processed(chefRun("n", "a", "a2", report.StatusSuccess, 1), t0)
		return map[string]int{"": 3}
	})
	if got := environments(t, m); len(got) != 1 || !got["a"] {
		t.Fatalf("after the fleet emptied, with a counted meanwhile: %v, want a alone", got)
	}
	m.ForgetEnvironments(func() map[string]int { return nil })
	if got := environments(t, m); len(got) != 0 {
		t.Errorf("after the fleet emptied: %v", got)
	}
	if n := resourceEnvs(m); n != 0 {
		t.Errorf("%d resource-update series left", n)
	}
}

func TestResourceTypeBoundCountsFolds(t *testing.T) {
	m := NewIngestMetrics(prometheus.NewRegistry(), 1, 10)
	r := chefRun("n", "prod", "1", report.StatusSuccess, 0)
	r.UpdatedByType = map[string]int{"file": 1}
	m.Processed(r, t0)
	r.ID, r.UpdatedByType = "2", map[string]int{"file": 1, "package": 2, "service": 1, "other": 5}
	m.Processed(r, t0)
	// package and service were folded; "other" from the decoder was not.
	if got := testutil.ToFloat64(m.folded.WithLabelValues(BoundResourceType)); got != 2 {
		t.Errorf("folded resource types = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.resourceUpdates.WithLabelValues("prod", "other")); got != 8 {
		t.Errorf("other = %v, want 8", got)
	}
}

func TestFleetBoundsCounters(t *testing.T) {
	st := fleet.New(fleet.Options{MaxNodes: 1, MaxRoles: 1})
	st.Apply(chefRun("a", "prod", "1", report.StatusSuccess, 0), t0) // roles web, base: one dropped
	st.Apply(chefRun("b", "prod", "2", report.StatusSuccess, 0), t0) // refused
	reg := prometheus.NewRegistry()
	RegisterFleetBounds(reg, st.Refusals)
	RegisterDeadLettersDropped(reg, func() uint64 { return 7 })
	for name, want := range map[string]float64{
		"runlens_nodes_refused_total": 1, "runlens_roles_dropped_total": 1, "runlens_dead_letters_dropped_total": 7,
	} {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var got float64
		for _, mf := range mfs {
			if mf.GetName() == name {
				for _, m := range mf.Metric {
					got += m.Counter.GetValue()
				}
			}
		}
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// blockingGatherer holds every Gather until released, and says when one
// started.
type blockingGatherer struct {
	started chan struct{}
	release chan struct{}
}

func (g *blockingGatherer) Gather() ([]*dto.MetricFamily, error) {
	g.started <- struct{}{}
	<-g.release
	return nil, nil
}

// With the one slot taken, the next scrape waits for it and is served when it
// frees; one more than can wait gets 503, counted.
func TestHandlerQueuesThenRefuses(t *testing.T) {
	g := &blockingGatherer{started: make(chan struct{}, 4), release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	h := Handler(g, NewFleetWriter(fleet.New(fleet.Options{})), slog.Default(), HandlerOpts{MaxInFlight: 1, Registerer: reg}).(*handler)
	srv := httptest.NewServer(h)
	defer srv.Close()
	codes := make(chan int, 2)
	get := func() {
		resp, err := http.Get(srv.URL)
		if err != nil {
			codes <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes <- resp.StatusCode
	}
	go get()
	<-g.started // the first holds the slot
	go get()
	deadline := time.Now().Add(30 * time.Second)
	for len(h.waiting) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the second scrape never waited for the slot")
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("third scrape: %d, want 503", resp.StatusCode)
	}
	if got := testutil.ToFloat64(h.refused); got != 1 {
		t.Errorf("refused = %v, want 1", got)
	}
	close(g.release)
	for range 2 {
		if code := <-codes; code != http.StatusOK {
			t.Errorf("queued scrapes: %d, want 200", code)
		}
	}
}
