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
	folded          *prometheus.CounterVec

	// Both labels of the aggregates are bounded: the first maxTypes
	// resource types and maxEnvs environments seen get a label value of
	// their own, later ones are counted under "other". Chef resource types
	// and environments are small sets in practice, but a producer (a custom
	// resource per cookbook, an environment per report) must not be able to
	// grow the series count without end. An environment's label is given
	// back, and its series removed, once no tracked node is in it
	// (ForgetEnvironments). mu covers the maps and the observations made
	// with their labels, so that a label is never removed while a report is
	// being counted under it.
	mu       sync.Mutex
	types    map[string]struct{}
	maxTypes int
	envs     map[string]uint64 // environment → seq of the last report counted under it
	maxEnvs  int
	otherEnv uint64 // seq of the last report counted under environment "other"
	seq      uint64 // reports counted
}

// otherLabel collects label values past a bound.
const otherLabel = report.OtherResourceType

// Values of the bound label of runlens_series_folded_total.
const (
	BoundEnvironment  = "environment"
	BoundResourceType = "resource_type"
)

// DefaultMaxEnvironments is --metrics.max-environments' default.
const DefaultMaxEnvironments = 100

// NewIngestMetrics registers the ingest series on reg, with at most
// maxResourceTypes resource_type and maxEnvironments environment values
// (each at least 1).
func NewIngestMetrics(reg prometheus.Registerer, maxResourceTypes, maxEnvironments int) *IngestMetrics {
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
			Help:    "Duration of finished runs (environments past --metrics.max-environments are counted as \"other\").",
			Buckets: []float64{1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600},
		}, []string{"environment"}),
		resourceUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "resource_updates_total",
			Help: "Resources changed by runs, by environment and resource type (values past their bound are counted as \"other\").",
		}, []string{"environment", "resource_type"}),
		folded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "series_folded_total",
			Help: "Observations counted under \"other\" because a bound on distinct label values was reached: " +
				"one per run for environment (--metrics.max-environments), one per run and resource type for resource_type (--metrics.max-resource-types).",
		}, []string{"bound"}),
		types:    make(map[string]struct{}),
		maxTypes: max(maxResourceTypes, 1),
		envs:     make(map[string]uint64),
		maxEnvs:  max(maxEnvironments, 1),
	}
	// Every format × outcome exists from the start, so rate() and alert
	// rules on rejections have a zero to compare with.
	for _, f := range report.Formats {
		for _, o := range []string{OutcomeProcessed, OutcomeDuplicate, OutcomeRejected} {
			m.reports.WithLabelValues(string(f), o)
		}
	}
	m.folded.WithLabelValues(BoundEnvironment)
	m.folded.WithLabelValues(BoundResourceType)
	reg.MustRegister(m.reports, m.delay, m.runDuration, m.resourceUpdates, m.folded)
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
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	env := m.envLabel(r.Environment)
	m.runDuration.WithLabelValues(env).Observe(r.Duration.Seconds())
	for typ, n := range r.UpdatedByType {
		m.resourceUpdates.WithLabelValues(env, m.typeLabel(typ)).Add(float64(n))
	}
}

// envLabel returns the environment label for env and marks it used. Called
// with mu held.
func (m *IngestMetrics) envLabel(env string) string {
	if _, ok := m.envs[env]; ok {
		m.envs[env] = m.seq
		return env
	}
	if env == otherLabel || len(m.envs) >= m.maxEnvs {
		if env != otherLabel {
			m.folded.WithLabelValues(BoundEnvironment).Inc()
		}
		m.otherEnv = m.seq
		return otherLabel
	}
	m.envs[env] = m.seq
	return env
}

// typeLabel returns the resource_type label for typ. Called with mu held.
func (m *IngestMetrics) typeLabel(typ string) string {
	if _, ok := m.types[typ]; ok {
		return typ
	}
	if typ == otherLabel {
		// Folded by the decoder's per-report bound, not by this one.
		return otherLabel
	}
	if len(m.types) >= m.maxTypes {
		m.folded.WithLabelValues(BoundResourceType).Inc()
		return otherLabel
	}
	m.types[typ] = struct{}{}
	return typ
}

// ForgetEnvironments removes the aggregate series (run_duration_seconds,
// resource_updates_total) of every environment no tracked node is in any
// more, and gives its place under --metrics.max-environments back; "other"
// goes once no tracked node is in a folded environment. nodesPerEnv is
// fleet.State.Environments, called here after a snapshot of the report
// count, so that an environment counted while it runs is kept. It returns
// how many environments it removed.
func (m *IngestMetrics) ForgetEnvironments(nodesPerEnv func() map[string]int) int {
	m.mu.Lock()
	since := m.seq
	m.mu.Unlock()
	live := nodesPerEnv()

	m.mu.Lock()
	defer m.mu.Unlock()
	otherLive := false
	for env, n := range live {
		if _, ok := m.envs[env]; n > 0 && env != "" && !ok {
			otherLive = true // folded, or "other" itself
		}
	}
	removed := 0
	for env, last := range m.envs {
		if live[env] == 0 && last <= since {
			m.removeEnvironment(env)
			delete(m.envs, env)
			removed++
		}
	}
	if !otherLive && m.otherEnv != 0 && m.otherEnv <= since {
		m.removeEnvironment(otherLabel)
		m.otherEnv = 0
	}
	return removed
}

func (m *IngestMetrics) removeEnvironment(env string) {
	m.runDuration.DeleteLabelValues(env)
	m.resourceUpdates.DeletePartialMatch(prometheus.Labels{"environment": env})
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
