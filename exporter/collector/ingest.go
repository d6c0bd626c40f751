package collector

import (
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runlens/runlens/pkg/report"
)

// Outcomes of one report, the `outcome` label of runlens_reports_total.
const (
	OutcomeProcessed = "processed"
	OutcomeDuplicate = "duplicate"
	OutcomeRejected  = "rejected"
)

// IngestMetrics are the exporter's aggregate series: what came in, how late,
// how long runs took, which kinds of resources changed.
type IngestMetrics struct {
	reports         *prometheus.CounterVec
	delay           prometheus.Histogram
	runDuration     *prometheus.HistogramVec
	resourceUpdates *prometheus.CounterVec

	// resource_type is bounded: the first maxTypes types seen get a label
	// of their own, later ones are added to "other". Chef resource types are
	// a small set in practice, but a custom resource per cookbook must not be
	// able to grow the series count without end.
	mu       sync.Mutex
	types    map[string]struct{}
	maxTypes int
}

// NewIngestMetrics registers the ingest series on reg.
func NewIngestMetrics(reg prometheus.Registerer, maxResourceTypes int) *IngestMetrics {
	m := &IngestMetrics{
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "reports_total",
			Help: "Reports received, by detected format and outcome (processed, duplicate, rejected).",
		}, []string{"format", "outcome"}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "report_delay_seconds",
			Help:    "Time from a run's end (node clock) to the exporter processing its report.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "run_duration_seconds",
			Help:    "Duration of finished runs.",
			Buckets: []float64{1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600},
		}, []string{"environment"}),
		resourceUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "resource_updates_total",
			Help: "Resources changed by runs, by environment and resource type (types past the bound are counted as \"other\").",
		}, []string{"environment", "resource_type"}),
		types:    make(map[string]struct{}),
		maxTypes: maxResourceTypes,
	}
	// Every format × outcome exists from the start, so rate() and alert
	// rules on rejections have a zero to compare with.
	for _, f := range report.Formats {
		for _, o := range []string{OutcomeProcessed, OutcomeDuplicate, OutcomeRejected} {
			m.reports.WithLabelValues(string(f), o)
		}
	}
	reg.MustRegister(m.reports, m.delay, m.runDuration, m.resourceUpdates)
	return m
}

// Rejected counts a report that was refused.
func (m *IngestMetrics) Rejected(f report.Format) {
	m.reports.WithLabelValues(string(f), OutcomeRejected).Inc()
}

// Duplicate counts a redelivered or re-published report.
func (m *IngestMetrics) Duplicate(f report.Format) {
	m.reports.WithLabelValues(string(f), OutcomeDuplicate).Inc()
}

// Processed counts a new report and, for a finished run, observes its delay,
// duration and changed resource types.
func (m *IngestMetrics) Processed(r *report.Run, now time.Time) {
	m.reports.WithLabelValues(string(r.Format), OutcomeProcessed).Inc()
	if r.Kind != report.KindRun {
		return
	}
	m.delay.Observe(max(now.Sub(r.End).Seconds(), 0))
	m.runDuration.WithLabelValues(r.Environment).Observe(r.Duration.Seconds())
	for typ, n := range r.UpdatedByType {
		m.resourceUpdates.WithLabelValues(r.Environment, m.typeLabel(typ)).Add(float64(n))
	}
}

func (m *IngestMetrics) typeLabel(typ string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.types[typ]; ok {
		return typ
	}
	if typ == report.OtherResourceType || len(m.types) >= m.maxTypes {
		return report.OtherResourceType
	}
	m.types[typ] = struct{}{}
	return typ
}

// RegisterAMQPUp exposes runlens_amqp_up from a connection probe.
func RegisterAMQPUp(reg prometheus.Registerer, up func() bool) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "amqp_up",
		Help: "1 while the exporter holds an open connection to the AMQP broker.",
	}, func() float64 {
		if up() {
			return 1
		}
		return 0
	}))
}

// BuildInfo is runlens_build_info's label values, read from the binary's
// embedded build information (module version and VCS revision).
func BuildInfo() (version, revision string) {
	version, revision = "unknown", "unknown"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		version = v
	} else {
		version = "devel"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			revision = s.Value
		}
	}
	return
}

// RegisterBuildInfo exposes runlens_build_info.
func RegisterBuildInfo(reg prometheus.Registerer) {
	version, revision := BuildInfo()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; labels name the build.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(version, revision, runtime.Version()).Set(1)
	reg.MustRegister(g)
}
