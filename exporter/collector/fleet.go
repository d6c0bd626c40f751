// Package collector holds the exporter's metrics, one part per concern: the
// per-node series written straight from the fleet state (FleetWriter), the
// ingest pipeline's counters and histograms (IngestMetrics), and the HTTP
// handler that serves both.
package collector

import (
	"io"
	"strconv"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

const namespace = "runlens"

// FleetWriter writes the per-node series in the Prometheus text format,
// straight from the fleet state at scrape time.
//
// It does not go through client_golang's registry on purpose: with eight
// series per node, a 10,000-node fleet is 80,000 series, and building a
// const metric, a protobuf message and a sorted family for each took about
// 160 ms of a scrape on a 2-core machine, against about 25 ms to write the
// same lines directly (see cmd/runlens-bench). Reading the state at scrape
// time also means a node's series appear with its first finished run
// (counters at 0 when nothing failed) and vanish the moment the node expires:
// there is no second copy of the data to keep in step.
//
// Until the fleet state is restored after a start (see Gate) it writes
// nothing: a half-restored state would show per-node values older than what
// the exporter served before it stopped.
type FleetWriter struct {
	state    *fleet.State
	restored func() bool
}

// NewFleetWriter returns a writer of state's nodes.
func NewFleetWriter(state *fleet.State) *FleetWriter { return &FleetWriter{state: state} }

// Gate makes WriteTo write no per-node series, nor runlens_nodes, while
// restored() is false. It must be called before the writer is used.
func (w *FleetWriter) Gate(restored func() bool) { w.restored = restored }

// family is one per-node metric family.
type family struct {
	name, help, typ string
	value           func(s *nodeSample, b []byte) []byte
}

var families = []family{
	{"runlens_runs_total", "Finished configuration-management runs reported by the node since the exporter started.", "counter",
		func(s *nodeSample, b []byte) []byte { return strconv.AppendUint(b, s.runs, 10) }},
	{"runlens_run_failures_total", "Failed runs reported by the node since the exporter started.", "counter",
		func(s *nodeSample, b []byte) []byte { return strconv.AppendUint(b, s.failures, 10) }},
	{"runlens_updated_resources_total", "Resources the node's runs changed since the exporter started.", "counter",
		func(s *nodeSample, b []byte) []byte { return strconv.AppendUint(b, s.updated, 10) }},
	{"runlens_last_run_timestamp_seconds", "End time of the node's latest run, as reported by the node (Unix seconds).", "gauge",
		func(s *nodeSample, b []byte) []byte { return strconv.AppendFloat(b, s.end, 'g', -1, 64) }},
	{"runlens_last_run_success", "1 if the node's latest run succeeded, 0 if it failed.", "gauge",
		func(s *nodeSample, b []byte) []byte {
			if s.success {
				return append(b, '1')
			}
			return append(b, '0')
		}},
	{"runlens_last_run_duration_seconds", "Duration of the node's latest run.", "gauge",
		func(s *nodeSample, b []byte) []byte { return strconv.AppendFloat(b, s.dur, 'g', -1, 64) }},
	{"runlens_last_run_updated_resources", "Resources the node's latest run changed.", "gauge",
		func(s *nodeSample, b []byte) []byte { return strconv.AppendInt(b, int64(s.lastUpdated), 10) }},
}

// FamilyNames lists every metric name the FleetWriter writes.
func FamilyNames() []string {
	names := []string{"runlens_nodes", "runlens_node_info"}
	for _, f := range families {
		names = append(names, f.name)
	}
	return names
}

// nodeSample is what a scrape needs of one node, copied under the state's
// read lock so that writing does not hold it.
type nodeSample struct {
	labels                  []byte // node="…",environment="…" escaped once
	info                    []byte // the node_info labels after node and environment
	runs, failures, updated uint64
	end, dur                float64
	success                 bool
	lastUpdated             int
}

// WriteTo writes every per-node family and runlens_nodes.
func (w *FleetWriter) WriteTo(out io.Writer) (int64, error) {
	if w.restored != nil && !w.restored() {
		return 0, nil
	}
	var samples []nodeSample
	total := 0
	w.state.Each(func(n *fleet.Node) {
		total++
		if n.Last == nil {
			// Only a run start seen: the environment is not known yet, and
			// series with an empty one would be replaced at the first run.
			return
		}
		s := nodeSample{
			runs: n.Runs, failures: n.Failures, updated: n.UpdatedResources,
			end: float64(n.Last.End.UnixNano()) / 1e9, dur: n.Last.Duration.Seconds(),
			success: n.Last.Status == report.StatusSuccess, lastUpdated: n.Last.Updated,
		}
		s.labels = appendLabel(s.labels, "node", n.Name)
		s.labels = append(s.labels, ',')
		s.labels = appendLabel(s.labels, "environment", n.Environment)
		for _, kv := range [][2]string{{"fqdn", n.FQDN}, {"ip_address", n.IPAddress}, {"source", string(n.Source)}, {"roles", n.RolesLabel()}} {
			s.info = append(s.info, ',')
			s.info = appendLabel(s.info, kv[0], kv[1])
		}
		samples = append(samples, s)
	})

	b := make([]byte, 0, 64<<10)
	var written int64
	flush := func(force bool) error {
		if len(b) < 60<<10 && !force {
			return nil
		}
		n, err := out.Write(b)
		written += int64(n)
		b = b[:0]
		return err
	}
	b = appendHeader(b, "runlens_nodes", "Nodes tracked (seen within --node.ttl).", "gauge")
	b = append(b, "runlens_nodes "...)
	b = strconv.AppendInt(b, int64(total), 10)
	b = append(b, '\n')
	for _, f := range families {
		b = appendHeader(b, f.name, f.help, f.typ)
		for i := range samples {
			s := &samples[i]
			b = append(b, f.name...)
			b = append(b, '{')
			b = append(b, s.labels...)
			b = append(b, '}', ' ')
			b = f.value(s, b)
			b = append(b, '\n')
			if err := flush(false); err != nil {
				return written, err
			}
		}
	}
	b = appendHeader(b, "runlens_node_info", "Identity of the node; always 1.", "gauge")
	for i := range samples {
		s := &samples[i]
		b = append(b, "runlens_node_info{"...)
		b = append(b, s.labels...)
		b = append(b, s.info...)
		b = append(b, "} 1\n"...)
		if err := flush(false); err != nil {
			return written, err
		}
	}
	return written, flush(true)
}

func appendHeader(b []byte, name, help, typ string) []byte {
	b = append(b, "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, help...)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	return append(b, '\n')
}

// appendLabel appends name="value" with the text format's escaping. The
// decoder guarantees valid UTF-8 in every identity string.
func appendLabel(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, '=', '"')
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '"':
			b = append(b, '\\', '"')
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
