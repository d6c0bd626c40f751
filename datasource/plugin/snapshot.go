package plugin

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/snapshot"
)

// A new instance restores its current fleet from the newest fleet snapshot
// the exporters write (pkg/snapshot; the stream is the history stream's name
// plus ".snapshots") and follows the history only after the offset the
// snapshot covers, so the live topology is whole after reading about the
// fleet's size rather than the whole replay window. The runs of the window
// (runs, changes, impact, topology as of a past time, and the changed
// resources a node's details list) are loaded after, from the history up to
// that offset, while the panels say so. Without a snapshot (no exporter
// writes them, or none is usable) the instance replays the window as before.

// backfill is the state of the older history's load.
type backfill struct {
	running atomic.Bool
	loaded  atomic.Uint64 // reports of the older history applied so far
}

// restoreFleet imports the newest usable snapshot into the fleet, starts
// loading the older history in the background, and returns the offset to
// follow the history from: 0 without a snapshot (follow from the window's
// start).
func (inst *Instance) restoreFleet(ctx context.Context, from time.Time) int64 {
	cfg := snapshot.Config{
		URL: inst.settings.AMQPURL, Stream: snapshot.Stream("", inst.settings.Stream), History: inst.settings.Stream,
		ConnectionName: "runlens-datasource-snapshot", Logger: inst.log,
	}
	start := time.Now()
	nodes := 0
	info, err := snapshot.Load(ctx, cfg, snapshot.LoadOptions{NotBefore: from}, func(n *fleet.Node) {
		if n.Seen.Before(from) {
			return // outside the replay window, as a full replay would leave it
		}
		inst.fleet.Import(n, start)
		nodes++
	})
	switch {
	case err == nil:
	case errors.Is(err, snapshot.ErrCorrupt):
		inst.log.Warn("no usable fleet snapshot (damaged or incomplete); replaying the whole window", "stream", cfg.Stream.Name, "reason", err)
		return 0
	case errors.Is(err, snapshot.ErrNone):
		inst.log.Debug("no fleet snapshot; replaying the whole window", "stream", cfg.Stream.Name, "reason", err)
		return 0
	default:
		// The broker is unreachable: the replay's own retries report it.
		inst.log.Warn("cannot read the fleet snapshots; replaying the whole window", "stream", cfg.Stream.Name, "err", err)
		return 0
	}
	inst.log.Info("fleet snapshot loaded; loading the older history in the background", "stream", cfg.Stream.Name,
		"snapshot", info.ID.String(), "covers_offset", info.Covers, "nodes", nodes, "took", time.Since(start).Round(time.Millisecond))
	if info.Covers >= 0 {
		inst.backfill.running.Store(true)
		inst.wg.Add(1)
		go inst.loadOlderHistory(ctx, from, info.Covers)
	}
	return info.Covers + 1
}

// loadOlderHistory replays the history from the window's start up to and
// including offset covers, into the runs and (uncounted) into the fleet,
// which gets back the details a snapshot does not carry. The runs go to a
// History of their own, merged into the instance's at the end: they are
// all older than what the live feed added meanwhile, and adding them one
// by one would shift every newer run held, for each.
func (inst *Instance) loadOlderHistory(ctx context.Context, from time.Time, covers int64) {
	defer inst.wg.Done()
	defer inst.backfill.running.Store(false)
	start := time.Now()
	older := inst.history.Like()
	bctx, stop := context.WithCancel(ctx)
	defer stop()
	err := broker.Replay(bctx, broker.ReplayConfig{
		URL:            inst.settings.AMQPURL,
		History:        broker.History{Stream: inst.settings.Stream, Exchange: inst.settings.Exchange},
		From:           from,
		ConnectionName: "runlens-datasource-older-history",
		Logger:         inst.log,
		Prepare:        inst.prepare,
	}, func(m broker.Message) {
		if m.Offset > covers {
			stop() // the live feed has the rest
			return
		}
		d, ok := m.Prepared.(*decoded)
		if !ok {
			d = inst.prepare(m.Body).(*decoded)
		}
		if d.err == nil {
			inst.fleet.Restore(d.run, time.Now())
			older.Add(d.run)
			inst.backfill.loaded.Add(1)
		}
		if m.Offset == covers {
			stop()
		}
	}, nil)
	if ctx.Err() != nil {
		return
	}
	if err != nil && bctx.Err() == nil {
		inst.log.Warn("cannot load the older history", "err", err)
		return
	}
	inst.history.Merge(older)
	inst.log.Info("older history loaded", "reports", inst.backfill.loaded.Load(), "runs", inst.history.Len(),
		"took", time.Since(start).Round(time.Millisecond))
}

// OlderHistoryLoading says the history before the snapshot the instance
// started from is still loading (the current fleet is whole; runs, changes
// and past topologies may not be yet). Safe for concurrent use.
func (inst *Instance) OlderHistoryLoading() bool { return inst.backfill.running.Load() }

// noteOlderHistory adds a notice to a successful response while the older
// history is still loading.
func (inst *Instance) noteOlderHistory(r *backend.DataResponse) {
	if r.Error != nil || !inst.OlderHistoryLoading() {
		return
	}
	addNotice(r.Frames, data.Notice{Severity: data.NoticeSeverityInfo,
		Text: "runlens is still loading the older history from RabbitMQ: the current topology is complete, " +
			"but runs, changes and topologies of the past may be incomplete for a little while"})
}
