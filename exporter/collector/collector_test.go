package collector

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func chefRun(node, env, id string, status report.Status, updated int) *report.Run {
	return &report.Run{
		Format: report.FormatChefHandler, Kind: report.KindRun, Source: report.SourceChef, ID: id,
		Node: node, Environment: env, FQDN: node + ".example.com", IPAddress: "10.0.0.1", Roles: []string{"web", "base"},
		Status: status, Start: t0.Add(-90 * time.Second), End: t0, Duration: 90 * time.Second,
		UpdatedCount: updated, UpdatedByType: map[string]int{"file": updated},
	}
}

func parse(t *testing.T, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("output is not valid text exposition: %v", err)
	}
	return mfs
}

func value(mf *dto.MetricFamily, labels map[string]string) (float64, bool) {
next:
	for _, m := range mf.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(labels) {
			continue
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		if m.Counter != nil {
			return m.Counter.GetValue(), true
		}
		return m.Gauge.GetValue(), true
	}
	return 0, false
}

func TestFleetWriter(t *testing.T) {
	st := fleet.New(fleet.Options{})
	st.Apply(chefRun("web-1", "prod", "a", report.StatusSuccess, 2), t0)
	st.Apply(chefRun("web-1", "prod", "b", report.StatusFailure, 3), t0.Add(time.Second))
	st.Apply(chefRun("db-1", "prod", "c", report.StatusSuccess, 0), t0)
	// A node name with characters the text format must escape.
	st.Apply(chefRun("we\"ird\\node", "prod", "d", report.StatusSuccess, 0), t0)
	// Known from a run start only: counted in runlens_nodes, not exported.
	st.Apply(&report.Run{Kind: report.KindStart, Node: "starting-1", ID: "s", Start: t0}, t0)

	var buf bytes.Buffer
	if _, err := NewFleetWriter(st).WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	mfs := parse(t, &buf)
	web := map[string]string{"node": "web-1", "environment": "prod"}
	for name, want := range map[string]float64{
		"runlens_runs_total": 2, "runlens_run_failures_total": 1, "runlens_updated_resources_total": 5,
		// Runs a and b end at the same time; b arrived later and is the
		// last run.
		"runlens_last_run_success": 0, "runlens_last_run_updated_resources": 3,
		"runlens_last_run_duration_seconds": 90, "runlens_last_run_timestamp_seconds": float64(t0.Unix()),
	} {
		mf, ok := mfs[name]
		if !ok {
			t.Fatalf("family %s missing", name)
		}
		got, ok := value(mf, web)
		if !ok || got != want {
			t.Errorf("%s{web-1} = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if got, _ := value(mfs["runlens_runs_total"], map[string]string{"node": "db-1", "environment": "prod"}); got != 1 {
		t.Errorf("db-1 runs = %v, want 1", got)
	}
	if _, ok := value(mfs["runlens_run_failures_total"], map[string]string{"node": "db-1", "environment": "prod"}); !ok {
		t.Error("a healthy node must have runlens_run_failures_total at 0, not no series")
	}
	if _, ok := value(mfs["runlens_runs_total"], map[string]string{"node": "we\"ird\\node", "environment": "prod"}); !ok {
		t.Error("escaped node name did not round-trip")
	}
	if got, _ := value(mfs["runlens_nodes"], map[string]string{}); got != 4 {
		t.Errorf("runlens_nodes = %v, want 4", got)
	}
	if n := len(mfs["runlens_runs_total"].Metric); n != 3 {
		t.Errorf("runs_total has %d series, want 3 (the run-start-only node has none)", n)
	}
	info := map[string]string{"node": "web-1", "environment": "prod", "fqdn": "web-1.example.com", "ip_address": "10.0.0.1", "source": "chef", "roles": "base,web"}
	if got, ok := value(mfs["runlens_node_info"], info); !ok || got != 1 {
		t.Errorf("node_info = %v %v", got, ok)
	}
	for _, name := range FamilyNames() {
		if _, ok := mfs[name]; !ok {
			t.Errorf("FamilyNames lists %s, which was not written", name)
		}
	}
}

func TestIngestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewIngestMetrics(reg, 2, 10)
	r := chefRun("web-1", "prod", "a", report.StatusSuccess, 0)
	r.UpdatedByType = map[string]int{"file": 2, "package": 1, "service": 4, "other": 1}
	m.Processed(r, t0.Add(3*time.Second))
	m.Duplicate(report.FormatSalt)
	m.Rejected(report.FormatUnknown)

	if got := testutil.ToFloat64(m.reports.WithLabelValues("chef_handler", OutcomeProcessed)); got != 1 {
		t.Errorf("processed = %v", got)
	}
	if got := testutil.ToFloat64(m.reports.WithLabelValues("salt", OutcomeDuplicate)); got != 1 {
		t.Errorf("duplicate = %v", got)
	}
	// Every format × outcome exists from the start.
	if n := testutil.CollectAndCount(m.reports); n != len(report.Formats)*3 {
		t.Errorf("reports_total has %d series, want %d", n, len(report.Formats)*3)
	}
	// Two types fit the bound; the third and "other" itself go to other.
	total := 0.0
	types := 0
	for _, typ := range []string{"file", "package", "service", "other"} {
		v := testutil.ToFloat64(m.resourceUpdates.WithLabelValues("prod", typ))
		total += v
		if v > 0 {
			types++
		}
	}
	if total != 8 || types != 3 {
		t.Errorf("resource updates: total %v over %d types, want 8 over 3 (2 named + other)", total, types)
	}
	if got := testutil.ToFloat64(m.resourceUpdates.WithLabelValues("prod", "other")); got < 1 {
		t.Errorf("other = %v", got)
	}
	if n := testutil.CollectAndCount(m.delay); n != 1 {
		t.Errorf("delay histogram = %d", n)
	}
}

func TestHandlerServesBothAndGzips(t *testing.T) {
	st := fleet.New(fleet.Options{})
	for i := range 50 {
		st.Apply(chefRun(fmt.Sprintf("n-%02d", i), "prod", fmt.Sprint(i), report.StatusSuccess, 1), t0)
	}
	reg := prometheus.NewRegistry()
	RegisterBuildInfo(reg)
	RegisterAMQPUp(reg, func() bool { return true })
	srv := httptest.NewServer(Handler(reg, NewFleetWriter(st), slog.Default(), HandlerOpts{MaxInFlight: 2}))
	defer srv.Close()

	for _, gz := range []bool{false, true} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		body := io.Reader(resp.Body)
		if gz {
			if resp.Header.Get("Content-Encoding") != "gzip" {
				t.Fatal("gzip asked, not served")
			}
			zr, err := gzip.NewReader(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			body = zr
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("content type %q", ct)
		}
		mfs := parse(t, body)
		resp.Body.Close()
		if len(mfs["runlens_runs_total"].Metric) != 50 {
			t.Errorf("gzip=%v: %d runs_total series", gz, len(mfs["runlens_runs_total"].Metric))
		}
		if v, ok := value(mfs["runlens_amqp_up"], map[string]string{}); !ok || v != 1 {
			t.Errorf("amqp_up = %v %v", v, ok)
		}
		if _, ok := mfs["runlens_build_info"]; !ok {
			t.Error("build_info missing")
		}
	}
}

func TestGzipAccepted(t *testing.T) {
	for h, want := range map[string]bool{"": false, "gzip": true, "deflate, gzip;q=0.5": true, "gzip;q=0": false, "identity": false} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Accept-Encoding", h)
		if got := gzipAccepted(r); got != want {
			t.Errorf("%q: %v", h, got)
		}
	}
}

// BenchmarkFleetWriter measures writing 10,000 nodes; compare with
// BenchmarkRegistryBaseline, the same series through client_golang.
func BenchmarkFleetWriter(b *testing.B) {
	st := benchFleet(10000)
	w := NewFleetWriter(st)
	for b.Loop() {
		_, _ = w.WriteTo(io.Discard)
	}
}

func BenchmarkRegistryBaseline(b *testing.B) {
	st := benchFleet(10000)
	reg := prometheus.NewRegistry()
	vec := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "x", Help: "x"}, []string{"node", "environment", "i"})
	reg.MustRegister(vec)
	st.Each(func(n *fleet.Node) {
		for i := range 8 {
			vec.WithLabelValues(n.Name, n.Environment, fmt.Sprint(i)).Set(1)
		}
	})
	for b.Loop() {
		mfs, _ := reg.Gather()
		enc := expfmt.NewEncoder(io.Discard, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			_ = enc.Encode(mf)
		}
	}
}

func benchFleet(n int) *fleet.State {
	st := fleet.New(fleet.Options{})
	for i := range n {
		st.Apply(chefRun(fmt.Sprintf("web-production-%05d", i), "production", fmt.Sprint(i), report.StatusSuccess, 1), t0)
	}
	return st
}

// MetricNames must be exactly the runlens_* series a scrape serves once
// every collector has something to show.
func TestMetricNamesMatchScrape(t *testing.T) {
	st := fleet.New(fleet.Options{})
	st.Apply(chefRun("web-1", "prod", "a", report.StatusSuccess, 1), t0)
	reg := prometheus.NewRegistry()
	m := NewIngestMetrics(reg, 10, 10)
	m.Processed(chefRun("web-1", "prod", "a", report.StatusSuccess, 1), t0.Add(time.Second))
	RegisterAMQPUp(reg, func() bool { return true })
	RegisterBuildInfo(reg)
	RegisterFleetBounds(reg, st.Refusals)
	RegisterDeadLettersDropped(reg, func() uint64 { return 0 })
	srv := httptest.NewServer(Handler(reg, NewFleetWriter(st), slog.Default(), HandlerOpts{MaxInFlight: 1, Registerer: reg}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	served := map[string]bool{}
	for name, mf := range parse(t, resp.Body) {
		served[name] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				served[name+s] = true
			}
		}
	}
	listed := map[string]bool{}
	for _, n := range MetricNames() {
		listed[n] = true
		if !served[n] {
			t.Errorf("MetricNames lists %s, which /metrics does not serve", n)
		}
	}
	for n := range served {
		if strings.HasPrefix(n, "runlens_") && !listed[n] {
			t.Errorf("/metrics serves %s, which MetricNames does not list", n)
		}
	}
}
