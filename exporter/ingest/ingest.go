// Package ingest is the exporter's pipeline for one message: decode it, apply
// it to the fleet, count it. The broker package calls Handle for the counted
// queue and Restore for the history stream replayed at start-up.
package ingest

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/time/rate"

	"github.com/runlens/runlens/exporter/collector"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

// ReasonNodeLimit is the dead-letter reason of a report refused because the
// fleet tracks --node.max-nodes nodes and the report's node is not one of them.
const ReasonNodeLimit = "node limit reached (--node.max-nodes): the node is not tracked"

// Pipeline holds what one message goes through.
type Pipeline struct {
	decoder report.Decoder
	fleet   *fleet.State
	metrics *collector.IngestMetrics
	log     *slog.Logger
	now     func() time.Time

	// A flood of garbage must not become a flood of log lines: each
	// rejected message is logged once, at most a few per second, and the
	// counter says how many there were.
	rejectLog *rate.Limiter
}

// New returns a pipeline. now may be nil (time.Now).
func New(dec report.Decoder, state *fleet.State, m *collector.IngestMetrics, log *slog.Logger, now func() time.Time) *Pipeline {
	if now == nil {
		now = time.Now
	}
	return &Pipeline{decoder: dec, fleet: state, metrics: m, log: log, now: now, rejectLog: rate.NewLimiter(5, 20)}
}

// decoded is a message's decode result, made ahead of Handle by Prepare.
type decoded struct {
	run *report.Run
	err error
}

// Prepare decodes a message; the broker runs it on several messages at once
// (decoding is most of the work per message, and needs no shared state), so
// that Handle, which must go in order, only applies and counts.
func (p *Pipeline) Prepare(body []byte) any {
	r, err := p.decoder.Decode(body)
	return &decoded{run: r, err: err}
}

// Handle is the broker.Handler of the counted queue. A report that cannot be
// accepted is dead-lettered with its reason; everything else is acked.
func (p *Pipeline) Handle(_ context.Context, m broker.Message) error {
	d, ok := m.Prepared.(*decoded)
	if !ok {
		d = p.Prepare(m.Body).(*decoded)
	}
	r, err := d.run, d.err
	if err != nil {
		format, reason := report.FormatUnknown, err.Error()
		if rej, ok := err.(*report.Rejected); ok {
			format, reason = rej.Format, rej.Reason
		}
		p.metrics.Rejected(format)
		if p.rejectLog.Allow() {
			p.log.Warn("report rejected", "format", format, "reason", reason, "bytes", len(m.Body), "redelivered", m.Redelivered)
		}
		return broker.DeadLetter(reason)
	}
	now := p.now()
	switch p.fleet.Apply(r, now) {
	case fleet.Duplicate:
		p.metrics.Duplicate(r.Format)
		return nil
	case fleet.Refused:
		// A valid report of one node too many: kept in the dead-letter
		// queue (for a shovel back once --node.max-nodes is raised),
		// counted as rejected and in runlens_nodes_refused_total.
		p.metrics.Rejected(r.Format)
		if p.rejectLog.Allow() {
			p.log.Warn("report refused: node limit reached (--node.max-nodes)", "format", r.Format, "node", r.Node)
		}
		return broker.DeadLetter(ReasonNodeLimit)
	}
	p.metrics.Processed(r, now)
	return nil
}

// Restore takes a report from the history stream into the fleet state without
// counting it (decoded by Prepare, when the replay ran it). Messages the
// stream holds that runlens does not accept are skipped: the counted queue
// has dead-lettered and counted them already.
func (p *Pipeline) Restore(m broker.Message) {
	d, ok := m.Prepared.(*decoded)
	if !ok {
		d = p.Prepare(m.Body).(*decoded)
	}
	if d.err != nil {
		return
	}
	p.fleet.Restore(d.run, p.now())
}
