package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runlens/runlens/exporter/ingest"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/snapshot"
)

const (
	// snapshotMinReports: a snapshot is also due once the history has grown
	// by this many reports, or by half the fleet's size if larger, since
	// the newest one, so that a restart replays at most about half a
	// fleet's worth of reports even when they arrive far faster than the
	// interval. Writing costs about as much per node as replaying costs per
	// report divided by 20 to 50 (see pkg/snapshot's benchmarks), so this
	// adds a few percent to the work of a burst at most.
	snapshotMinReports = 10_000
	// snapshotCheckEvery is how often the writer looks whether a snapshot is
	// due (a local check; the broker is asked only when it is).
	snapshotCheckEvery = time.Second
	// snapshotWriteTimeout bounds one snapshot write. A write under way
	// when the exporter is told to stop is finished, not cancelled (a
	// cancelled one is wasted), so this also bounds that wait.
	snapshotWriteTimeout = 15 * time.Second
	// historyEndQuiet is how long the history stream's last messages are
	// read at start to learn its end: the broker sends its last chunk in
	// one go, so a pause this long means the chunk is over.
	historyEndQuiet = 150 * time.Millisecond
)

// restorer restores the fleet state at start and keeps it whole after: it
// loads the newest fleet snapshot, replays the history stream after the
// offset the snapshot covers (all of the replay window without one), then
// keeps following the stream, so that the state describes the whole
// history (not only this replica's share of the queue) and any replica can
// snapshot it. See pkg/snapshot for why every replica follows.
type restorer struct {
	c        *config
	pipeline *ingest.Pipeline
	state    *fleet.State
	log      *slog.Logger
	snap     snapshot.Config
	history  broker.History

	restored atomic.Bool
	last     atomic.Int64 // offset of the last history message restored, -1 before

	mu          sync.Mutex
	newest      *snapshot.Info // newest snapshot known on the stream
	lastFailure time.Time      // rate-limits the write-failure warning
}

func newRestorer(c *config, p *ingest.Pipeline, state *fleet.State, logger *slog.Logger) *restorer {
	r := &restorer{
		c: c, pipeline: p, state: state, log: logger,
		history: broker.History{Stream: c.historyStream, Exchange: c.exchange, MaxAge: c.historyAge},
	}
	r.snap = snapshot.Config{
		URL: c.amqpURL, Stream: snapshot.Stream(c.snapshotStream, c.historyStream), History: c.historyStream,
		ConnectionName: "runlens-exporter-snapshot", Logger: logger,
	}
	r.last.Store(-1)
	return r
}

// Restored says the state is restored: per-node series may be served.
func (r *restorer) Restored() bool { return r.restored.Load() }

func (r *restorer) snapshots() bool { return r.c.snapshotInterval > 0 }

// run restores, then follows the history until ctx is done, writing
// snapshots; at the end it writes a last one.
func (r *restorer) run(ctx context.Context) {
	start := time.Now()
	window := r.c.historyReplay
	if r.c.nodeTTL > 0 {
		// Nodes older than the TTL would only be expired again.
		window = min(window, r.c.nodeTTL)
	}
	from := start.Add(-window)

	var (
		once       sync.Once
		replayed   atomic.Int64
		fromOffset int64
		// end is where the history ended at start (-2 until known, -1
		// if it cannot tell): once the replay has restored it, the state
		// is as whole as it was before the stop. It is learnt while the
		// snapshot loads and the replay starts; whichever of the replay
		// and the probe comes second sees the other's offset.
		end atomic.Int64
	)
	done := func(why string) {
		once.Do(func() {
			r.restored.Store(true)
			r.log.Info("history replayed", "until", why, "nodes", r.state.Len(), "reports", replayed.Load(),
				"from_offset", fromOffset, "took", time.Since(start).Round(time.Millisecond))
		})
	}
	end.Store(-2)
	go func() {
		e := r.historyEnd(ctx)
		end.Store(e)
		if e >= 0 && r.last.Load() >= e {
			done("end of stream")
		}
	}()
	if r.snapshots() {
		fromOffset = r.load(ctx, from)
		// The history up to the snapshot is restored.
		r.last.Store(fromOffset - 1)
		if e := end.Load(); e >= 0 && fromOffset > e {
			done("end of stream (the snapshot covers it)")
		}
	}

	var writer sync.WaitGroup
	if r.snapshots() {
		writer.Add(1)
		go func() {
			defer writer.Done()
			r.writeLoop(ctx)
		}()
	}
	err := broker.Replay(ctx, broker.ReplayConfig{
		URL: r.c.amqpURL, History: r.history, From: from, FromOffset: fromOffset, Follow: true,
		ConnectionName: "runlens-exporter-history", Logger: r.log, Prepare: r.pipeline.Prepare,
	}, func(m broker.Message) {
		r.pipeline.Restore(m)
		r.last.Store(m.Offset)
		if r.restored.Load() {
			return
		}
		replayed.Add(1)
		switch {
		case end.Load() >= 0 && m.Offset >= end.Load():
			done("end of stream")
		case m.Timestamp.After(start): // AMQP timestamps have whole seconds
			// Published since the exporter started: the counted queue
			// has it too.
			done("live messages")
		}
	}, func() { done("end of stream") })
	if err != nil && ctx.Err() == nil {
		// Only a configuration error ends Replay early (the stream is not
		// a stream, ...): nothing to restore from, so serve what the
		// counted queue brings rather than nothing for ever.
		r.log.Warn("cannot follow the history stream; per-node gauges fill in as runs arrive", "err", err)
		done("stopped")
		<-ctx.Done()
	}
	writer.Wait()
	if r.snapshots() && r.Restored() {
		r.writeFinal()
	}
}

// historyEnd is the offset of the history stream's last message, -1 when it
// cannot tell (empty, not declared yet, broker unreachable).
func (r *restorer) historyEnd(ctx context.Context) int64 {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := broker.Dial(ctx, r.c.amqpURL, "runlens-exporter-history-end")
	if err != nil {
		return -1
	}
	defer conn.Close()
	off, ok, err := broker.LastOffset(ctx, conn, r.c.historyStream, historyEndQuiet)
	if err != nil || !ok {
		return -1
	}
	return off
}

// load imports the newest usable snapshot and returns the offset to replay
// the history from (0: the whole window). It retries while the broker
// cannot be reached, so that an outage at start does not turn into a full
// replay.
func (r *restorer) load(ctx context.Context, from time.Time) int64 {
	backoff := 100 * time.Millisecond
	for {
		t := time.Now()
		nodes := 0
		info, err := snapshot.Load(ctx, r.snap, snapshot.LoadOptions{NotBefore: from}, func(n *fleet.Node) {
			if n.Seen.Before(from) {
				return // older than the replay window, as a full replay would leave it
			}
			r.state.Import(n, t)
			nodes++
		})
		switch {
		case err == nil:
			r.log.Info("fleet snapshot loaded", "stream", r.snap.Stream.Name, "snapshot", info.ID.String(),
				"covers_offset", info.Covers, "written", info.Written.Format(time.RFC3339), "nodes", nodes,
				"chunks", info.Chunks, "bytes", info.Bytes, "took", time.Since(t).Round(time.Millisecond))
			r.setNewest(&info)
			return info.Covers + 1
		case errors.Is(err, snapshot.ErrCorrupt):
			r.log.Warn("no usable fleet snapshot (damaged or incomplete); replaying the whole history window", "stream", r.snap.Stream.Name, "reason", err)
			return 0
		case errors.Is(err, snapshot.ErrNone):
			r.log.Info("no usable fleet snapshot; replaying the whole history window", "stream", r.snap.Stream.Name, "reason", err)
			return 0
		case ctx.Err() != nil:
			return 0
		}
		r.log.Warn("cannot read the fleet snapshots; retrying", "err", err, "retry_in", backoff)
		t2 := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t2.Stop()
			return 0
		case <-t2.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (r *restorer) setNewest(info *snapshot.Info) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.newest == nil || info.Covers > r.newest.Covers || info.Covers == r.newest.Covers && info.Written.After(r.newest.Written) {
		r.newest = info
	}
}

func (r *restorer) getNewest() *snapshot.Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.newest
}

// due says a snapshot should be written, given the newest on the stream: the
// history moved since, and either the snapshot interval passed or the
// history grew by more than half a fleet's worth of reports.
func (r *restorer) due(newest *snapshot.Info) bool {
	covers := r.last.Load()
	switch {
	case covers < 0:
		return false // no history at all
	case newest == nil:
		return true
	case covers <= newest.Covers:
		return false
	case covers-newest.Covers >= int64(max(r.state.Len()/2, snapshotMinReports)):
		return true
	}
	return time.Since(newest.Written) >= r.c.snapshotInterval
}

func (r *restorer) writeLoop(ctx context.Context) {
	t := time.NewTicker(snapshotCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.Restored() && r.due(r.getNewest()) {
			r.write(ctx, r.due)
		}
	}
}

// write writes a snapshot if due still holds under the lock.
func (r *restorer) write(ctx context.Context, due func(*snapshot.Info) bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), snapshotWriteTimeout)
	defer cancel()
	t := time.Now()
	covers := r.last.Load()
	res, err := snapshot.Write(ctx, r.snap, r.state, covers, due)
	switch {
	case err != nil:
		r.mu.Lock()
		warn := time.Since(r.lastFailure) >= time.Minute
		if warn {
			r.lastFailure = time.Now()
		}
		r.mu.Unlock()
		if warn {
			r.log.Warn("cannot write a fleet snapshot; retrying", "stream", r.snap.Stream.Name, "err", err)
		}
	case res.Locked:
		r.log.Debug("another replica is writing a fleet snapshot")
	case res.Written != nil:
		r.setNewest(res.Written)
		r.log.Info("fleet snapshot written", "stream", r.snap.Stream.Name, "snapshot", res.Written.ID.String(),
			"covers_offset", covers, "nodes", res.Written.Nodes, "chunks", res.Written.Chunks, "bytes", res.Written.Bytes,
			"took", time.Since(t).Round(time.Millisecond))
	case res.Newest != nil:
		r.setNewest(res.Newest) // another replica's is fresh
	}
}

// writeFinal writes a snapshot at shutdown if the history moved since the
// newest one, so that the next start replays next to nothing.
func (r *restorer) writeFinal() {
	covers := r.last.Load()
	r.write(context.Background(), func(newest *snapshot.Info) bool { return covers >= 0 && (newest == nil || covers > newest.Covers) })
}
