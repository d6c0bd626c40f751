package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runlens/runlens/pkg/fleet"
)

// Values of the reason label of runlens_roles_dropped_total.
const (
	RoleReasonCount  = "count"  // past --node.max-roles
	RoleReasonLength = "length" // longer than --node.max-role-bytes
)

// fleetBounds exposes what the fleet state's bounds refused, read from the
// state's own counters at scrape time.
type fleetBounds struct {
	refusals     func() fleet.Refusals
	nodes, roles *prometheus.Desc
}

// RegisterFleetBounds exposes runlens_nodes_refused_total and
// runlens_roles_dropped_total{reason} from refusals (fleet.State.Refusals).
func RegisterFleetBounds(reg prometheus.Registerer, refusals func() fleet.Refusals) {
	reg.MustRegister(&fleetBounds{
		refusals: refusals,
		nodes: prometheus.NewDesc(namespace+"_nodes_refused_total",
			"Reports of nodes not tracked yet, refused (dead-lettered, or skipped in the history replay) because --node.max-nodes nodes are tracked.", nil, nil),
		roles: prometheus.NewDesc(namespace+"_roles_dropped_total",
			"Roles left out of a node's identity: past --node.max-roles (count) or longer than --node.max-role-bytes (length).", []string{"reason"}, nil),
	})
}

func (b *fleetBounds) Describe(ch chan<- *prometheus.Desc) { ch <- b.nodes; ch <- b.roles }

func (b *fleetBounds) Collect(ch chan<- prometheus.Metric) {
	r := b.refusals()
	ch <- prometheus.MustNewConstMetric(b.nodes, prometheus.CounterValue, float64(r.Nodes))
	ch <- prometheus.MustNewConstMetric(b.roles, prometheus.CounterValue, float64(r.RolesOverCount), RoleReasonCount)
	ch <- prometheus.MustNewConstMetric(b.roles, prometheus.CounterValue, float64(r.RolesOverBytes), RoleReasonLength)
}

// RegisterDeadLettersDropped exposes runlens_dead_letters_dropped_total from
// dropped (broker.Consumer.DeadLettersDropped).
func RegisterDeadLettersDropped(reg prometheus.Registerer, dropped func() uint64) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: "dead_letters_dropped_total",
		Help: "Rejected reports the dead-letter queue refused because it was full (--amqp.dead-letter-max-length, --amqp.dead-letter-max-bytes); they were acked and are gone.",
	}, func() float64 { return float64(dropped()) }))
}
