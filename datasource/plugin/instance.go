// Package plugin is the backend of the runlens-topology-datasource Grafana
// plugin. Each datasource instance follows the runlens.history stream of
// RabbitMQ (replaying the last `replay` on start), keeps the fleet
// (fleet.State) and the runs (fleet.History) in memory, and serves:
//
//   - queries: topology (Node Graph frames), runs (table), changes
//     (annotations) and impact (changes ranked by the APM error-rate change,
//     read from Prometheus);
//   - Grafana Live streams on ds/<uid>/topology/<view>/{nodes,edges}, one
//     broadcaster per filter (live.go);
//   - a health check naming whatever is unreachable, or what is wrong with
//     the settings.
//
// Every Grafana server runs its own plugin process with its own stream
// consumer, so each sees every report.
package plugin

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"

	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

// PluginID is the plugin's id in plugin.json.
const PluginID = "runlens-topology-datasource"

const (
	// keepChanges is how many changed / failed resources each node keeps
	// for the node details.
	keepChanges = 20
	// historyMaxRuns bounds the runs kept for runs / changes / past
	// topology queries, whatever the replay window.
	historyMaxRuns = 200_000
	// startupWait is how long after the instance started a query waits
	// for the history replay to catch up before answering with what it has.
	startupWait = 10 * time.Second
	// rejectLogEvery rate-limits the log line about rejected reports.
	rejectLogEvery = time.Minute
	// maxExpireEvery is how often, at most, nodes not heard from within
	// the replay window are dropped from the live fleet: every quarter of
	// the window, up to a minute.
	maxExpireEvery = time.Minute
	minExpireEvery = 100 * time.Millisecond
)

var (
	_ backend.QueryDataHandler      = (*Instance)(nil)
	_ backend.CheckHealthHandler    = (*Instance)(nil)
	_ backend.StreamHandler         = (*Instance)(nil)
	_ instancemgmt.InstanceDisposer = (*Instance)(nil)
)

// Instance is one configured datasource.
type Instance struct {
	settings Settings
	// settingsErr, when the settings are invalid, is what every health
	// check and query answers (the instance then runs nothing).
	settingsErr error
	log         *slog.Logger
	decoder     report.Decoder

	fleet   *fleet.State
	history *fleet.History
	prom    promAPI     // nil without prometheusUrl
	alerts  *alertCache // nil without alertmanagerUrl

	started  time.Time
	caughtUp chan struct{}
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	live     liveViews
	channels *channelRegistry
	snapMu   sync.Mutex
	snap     *fleetSnapshot
	suspects suspects // highlight.go

	// received counts the stream's messages handled (applied or rejected;
	// counted once done with); see Replayed.
	received, rejected, duplicates atomic.Uint64
	feedErr                        atomic.Pointer[error]
	backfill                       backfill // the older history, after a snapshot (snapshot.go)

	// rejection log rate limit; touched by the feed goroutine only
	lastRejectLog    time.Time
	rejectedSinceLog uint64
}

// NewInstance is the datasource.InstanceFactoryFunc used by main: it logs
// through the SDK's logger.
func NewInstance(ctx context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
	return Factory(slog.New(newSDKHandler()))(ctx, s)
}

// Factory returns an instance factory logging to log. Invalid settings
// still make an instance: one whose health check and queries say exactly
// what is wrong (a failing factory shows only "Plugin health check failed"
// in Grafana).
func Factory(log *slog.Logger) datasource.InstanceFactoryFunc {
	if log == nil {
		log = slog.Default()
	}
	return func(ctx context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
		settings, err := ParseSettings(ctx, s)
		if err == nil {
			var inst *Instance
			if inst, err = New(settings, log); err == nil {
				return inst, nil
			}
		}
		log.Error("invalid datasource settings", "uid", s.UID, "err", err)
		return &Instance{settings: Settings{UID: s.UID}, settingsErr: err, log: log.With("uid", s.UID),
			fleet: fleet.New(fleet.Options{}), history: fleet.NewHistory(fleet.HistoryOptions{}),
			caughtUp: make(chan struct{}), cancel: func() {}, channels: newChannelRegistry(1)}, nil
	}
}

// SettingsErr is what is wrong with the instance's settings, or nil (the
// instance then runs).
func (inst *Instance) SettingsErr() error { return inst.settingsErr }

// New starts an instance: the history feed runs until Dispose.
func New(s Settings, log *slog.Logger) (*Instance, error) {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("uid", s.UID)
	inst := &Instance{
		settings: s,
		log:      log,
		fleet:    fleet.New(fleet.Options{KeepChanges: keepChanges}),
		history:  fleet.NewHistory(fleet.HistoryOptions{MaxRuns: historyMaxRuns, MaxAge: max(s.Replay, time.Hour)}),
		started:  time.Now(),
		caughtUp: make(chan struct{}),
		channels: newChannelRegistry(maxRegistered),
	}
	if s.PrometheusURL != "" {
		p, err := newPromAPI(s)
		if err != nil {
			return nil, err
		}
		inst.prom = p
	}
	if s.AlertmanagerURL != "" {
		a, err := newAlertCache(s, log)
		if err != nil {
			return nil, err
		}
		inst.alerts = a
	}
	ctx, cancel := context.WithCancel(context.Background())
	inst.cancel = cancel
	log.Info("starting runlens datasource", "amqp_url", s.RedactedAMQPURL(), "exchange", s.Exchange,
		"stream", s.Stream, "replay", s.Replay.String(), "prometheus_url", redactHTTP(s.PrometheusURL),
		"alertmanager_url", redactHTTP(s.AlertmanagerURL))
	inst.wg.Add(2)
	go inst.feed(ctx)
	go inst.expire(ctx)
	if inst.highlighting() {
		inst.suspects.kick = make(chan struct{}, 1)
		inst.wg.Add(1)
		go inst.highlight(ctx)
	}
	return inst, nil
}

// Dispose stops the history feed and the live views; Grafana calls it when
// the settings change or the datasource is deleted.
func (inst *Instance) Dispose() {
	inst.cancel()
	inst.stopViews()
	inst.wg.Wait()
	inst.log.Info("runlens datasource stopped")
}

// fleetSnapshot is one copy of the fleet, shared by every live view built
// while the fleet does not change.
type fleetSnapshot struct {
	gen   uint64
	nodes []fleet.Node
}

// snapshot returns the fleet's generation and a copy of its nodes, sorted
// by name, shared and read-only.
func (inst *Instance) snapshot() (uint64, []fleet.Node) {
	gen := inst.fleet.Generation() // before the copy: at worst the next call copies again
	inst.snapMu.Lock()
	defer inst.snapMu.Unlock()
	if inst.snap == nil || inst.snap.gen != gen {
		inst.snap = &fleetSnapshot{gen: gen, nodes: inst.fleet.Snapshot()}
	}
	return inst.snap.gen, inst.snap.nodes
}

func (inst *Instance) feed(ctx context.Context) {
	defer inst.wg.Done()
	from := time.Now().Add(-inst.settings.Replay)
	fromOffset := inst.restoreFleet(ctx, from)
	var once sync.Once
	err := broker.Replay(ctx, broker.ReplayConfig{
		URL:            inst.settings.AMQPURL,
		History:        broker.History{Stream: inst.settings.Stream, Exchange: inst.settings.Exchange},
		From:           from,
		FromOffset:     fromOffset,
		Follow:         true,
		ConnectionName: "runlens-datasource",
		TLS:            inst.settings.AMQPTLSConfig,
		Logger:         inst.log,
		Prepare:        inst.prepare,
	}, inst.handle, func() {
		once.Do(func() { close(inst.caughtUp) })
		inst.log.Info("history replayed; following live", "nodes", inst.fleet.Len(),
			"reports", inst.received.Load(), "rejected", inst.rejected.Load())
	})
	if err != nil {
		inst.feedErr.Store(&err)
		inst.log.Error("history feed stopped", "err", err)
	}
}

// Replayed reports the history feed's progress. handled is how many
// messages of the stream the instance is done with since it started, replayed
// and live ones alike: each was either applied to the fleet and the runs
// (before it is counted, so a query made after sees it) or skipped as not a
// valid report. caughtUp says the replay has caught up with the stream: the
// first time broker.ReplayConfig.IdleAfter (its default, 500 ms) passed after
// a message was handled with no further one received. It then stays true,
// following live and across reconnects, and handled already counts every
// message replayed before. Safe for concurrent use.
func (inst *Instance) Replayed() (handled uint64, caughtUp bool) {
	// In this order: the feed counts a message before it may signal
	// caught up, so a caught-up instance never reports a short count.
	caughtUp = inst.isCaughtUp()
	return inst.received.Load(), caughtUp
}

// decoded is a message's decode result, made by prepare ahead of handle.
type decoded struct {
	run *report.Run
	err error
}

// prepare decodes a message. The replay runs it on several waiting messages
// at once (decoding is most of the work per message and needs no shared
// state), so that handle, which must go in stream order, only applies.
func (inst *Instance) prepare(body []byte) any {
	r, err := inst.decoder.Decode(body)
	return &decoded{run: r, err: err}
}

// handle takes one message of the stream, decoded by prepare: apply,
// remember.
func (inst *Instance) handle(m broker.Message) {
	defer inst.received.Add(1)
	d, ok := m.Prepared.(*decoded)
	if !ok {
		d = inst.prepare(m.Body).(*decoded)
	}
	r, err := d.run, d.err
	if err != nil {
		inst.rejected.Add(1)
		inst.rejectedSinceLog++
		if now := time.Now(); now.Sub(inst.lastRejectLog) >= rejectLogEvery {
			var rj *report.Rejected
			reason := err.Error()
			if errors.As(err, &rj) {
				reason = rj.Reason
			}
			inst.log.Warn("skipping rejected reports", "count", inst.rejectedSinceLog, "total", inst.rejected.Load(),
				"offset", m.Offset, "latest_reason", reason)
			inst.lastRejectLog, inst.rejectedSinceLog = now, 0
		}
		return
	}
	// The node was heard from when the report was published (the
	// message's timestamp), not when this replay reads it.
	now := time.Now()
	seen := now
	if !m.Timestamp.IsZero() && m.Timestamp.Before(now) {
		seen = m.Timestamp
	}
	if inst.fleet.Apply(r, seen) == fleet.Duplicate {
		inst.duplicates.Add(1)
	}
	inst.history.Add(r)
}

// expire drops nodes not heard from within the replay window, so the live
// topology shows the fleet as it is, not everyone who ever reported, and
// live views nobody followed for a while.
func (inst *Instance) expire(ctx context.Context) {
	defer inst.wg.Done()
	every := maxExpireEvery
	if r := inst.settings.Replay; r > 0 {
		every = min(max(r/4, minExpireEvery), maxExpireEvery)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if inst.settings.Replay > 0 {
				if gone := inst.fleet.Expire(now, inst.settings.Replay); len(gone) > 0 {
					inst.log.Info("nodes not heard from within the replay window dropped", "count", len(gone))
				}
			}
			inst.sweepViews(now)
		}
	}
}

// waitCaughtUp waits, while the instance is young, for the replay to catch
// up, so the first queries after a start do not show half a fleet. It
// reports whether the replay has caught up.
func (inst *Instance) waitCaughtUp(ctx context.Context) bool {
	select {
	case <-inst.caughtUp:
		return true
	default:
	}
	wait := time.Until(inst.started.Add(startupWait))
	if wait <= 0 || inst.feedErr.Load() != nil {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-inst.caughtUp:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func (inst *Instance) isCaughtUp() bool {
	select {
	case <-inst.caughtUp:
		return true
	default:
		return false
	}
}

func (inst *Instance) feedError() error {
	if p := inst.feedErr.Load(); p != nil {
		return *p
	}
	return nil
}
