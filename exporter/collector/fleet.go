// Package collector holds the exporter's Prometheus collectors, one per
// concern: the per-node series read from the fleet state (FleetCollector) and
// the ingest pipeline's own counters and histograms (IngestMetrics).
package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

const namespace = "runlens"

var nodeLabels = []string{"node", "environment"}

// FleetCollector exposes the per-node series. It reads the fleet state at
// scrape time, so a node's series appear with its first finished run (the
// counters at 0 when nothing failed) and disappear the moment the node expires
// from the state: there is no second copy of the data to keep in step.
type FleetCollector struct {
	state *fleet.State

	runs, failures, updated                      *prometheus.Desc
	lastTimestamp, lastSuccess, lastDur, lastUpd *prometheus.Desc
	info, nodes                                  *prometheus.Desc
}

// NewFleetCollector returns a collector of state's nodes.
func NewFleetCollector(state *fleet.State) *FleetCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &FleetCollector{
		state:         state,
		runs:          d("runs_total", "Finished configuration-management runs reported by the node since the exporter started.", nodeLabels...),
		failures:      d("run_failures_total", "Failed runs reported by the node since the exporter started.", nodeLabels...),
		updated:       d("updated_resources_total", "Resources the node's runs changed since the exporter started.", nodeLabels...),
		lastTimestamp: d("last_run_timestamp_seconds", "End time of the node's latest run, as reported by the node (Unix seconds).", nodeLabels...),
		lastSuccess:   d("last_run_success", "1 if the node's latest run succeeded, 0 if it failed.", nodeLabels...),
		lastDur:       d("last_run_duration_seconds", "Duration of the node's latest run.", nodeLabels...),
		lastUpd:       d("last_run_updated_resources", "Resources the node's latest run changed.", nodeLabels...),
		info:          d("node_info", "Identity of the node; always 1.", "node", "environment", "fqdn", "ip_address", "source", "roles"),
		nodes:         d("nodes", "Nodes tracked (seen within --node.ttl)."),
	}
}

// Describe implements prometheus.Collector.
func (c *FleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.runs, c.failures, c.updated, c.lastTimestamp, c.lastSuccess, c.lastDur, c.lastUpd, c.info, c.nodes} {
		ch <- d
	}
}

// nodeSample is what a scrape needs of one node, copied under the state's
// read lock so that building metrics does not hold it.
type nodeSample struct {
	name, env, fqdn, ip, source, roles string
	runs, failures, updated            uint64
	end, dur                           float64
	success                            bool
	lastUpdated                        int
}

// Collect implements prometheus.Collector.
func (c *FleetCollector) Collect(ch chan<- prometheus.Metric) {
	var samples []nodeSample
	total := 0
	c.state.Each(func(n *fleet.Node) {
		total++
		if n.Last == nil {
			// Only a run start seen: the environment is not known yet, and
			// series with an empty one would be replaced at the first run.
			return
		}
		samples = append(samples, nodeSample{
			name: n.Name, env: n.Environment, fqdn: n.FQDN, ip: n.IPAddress, source: string(n.Source),
			roles: n.RolesLabel(), runs: n.Runs, failures: n.Failures, updated: n.UpdatedResources,
			end: float64(n.Last.End.UnixNano()) / 1e9, dur: n.Last.Duration.Seconds(),
			success: n.Last.Status == report.StatusSuccess, lastUpdated: n.Last.Updated,
		})
	})
	ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(total))
	for i := range samples {
		s := &samples[i]
		send(ch, c.runs, prometheus.CounterValue, float64(s.runs), s.name, s.env)
		send(ch, c.failures, prometheus.CounterValue, float64(s.failures), s.name, s.env)
		send(ch, c.updated, prometheus.CounterValue, float64(s.updated), s.name, s.env)
		send(ch, c.lastTimestamp, prometheus.GaugeValue, s.end, s.name, s.env)
		ok := 0.0
		if s.success {
			ok = 1
		}
		send(ch, c.lastSuccess, prometheus.GaugeValue, ok, s.name, s.env)
		send(ch, c.lastDur, prometheus.GaugeValue, s.dur, s.name, s.env)
		send(ch, c.lastUpd, prometheus.GaugeValue, float64(s.lastUpdated), s.name, s.env)
		send(ch, c.info, prometheus.GaugeValue, 1, s.name, s.env, s.fqdn, s.ip, s.source, s.roles)
	}
}

// send drops a metric whose label values client_golang refuses (the decoder
// already guarantees valid UTF-8, so this is a guard, never a panic).
func send(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	if m, err := prometheus.NewConstMetric(d, t, v, labels...); err == nil {
		ch <- m
	}
}
