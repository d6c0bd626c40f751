package collector

// histogramFamilies are the exporter's histograms: their series carry the
// _bucket, _sum and _count suffixes.
var histogramFamilies = []string{"runlens_run_duration_seconds", "runlens_report_delay_seconds"}

// ingestFamilies are the families IngestMetrics, RegisterAMQPUp,
// RegisterBuildInfo, RegisterFleetBounds, RegisterDeadLettersDropped and
// Handler register.
var ingestFamilies = []string{
	"runlens_reports_total", "runlens_resource_updates_total", "runlens_amqp_up", "runlens_build_info",
	"runlens_series_folded_total", "runlens_nodes_refused_total", "runlens_roles_dropped_total",
	"runlens_dead_letters_dropped_total", "runlens_scrapes_refused_total", "runlens_scrapes_timed_out_total",
}

// MetricNames lists every runlens_* series name the exporter's collectors
// expose (histograms as their _bucket, _sum and _count series and their
// family name), so that alert rules, dashboards and the compose files can be
// checked against the exporter itself rather than against a copy of the list.
// TestMetricNamesMatchScrape holds it to what /metrics serves.
func MetricNames() []string {
	names := append(FamilyNames(), ingestFamilies...)
	for _, h := range histogramFamilies {
		names = append(names, h, h+"_bucket", h+"_sum", h+"_count")
	}
	return names
}
