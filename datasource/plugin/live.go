package plugin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/topology"
)

// One live graph per filter.
//
// Every live topology view (one normalized filter, whatever the RefID) has
// one liveView, which builds both frames of each generation from one fleet
// snapshot, once per liveInterval at most, and hands the same generation
// to every RunStream that follows the view: any number of subscribers, one
// frame pair per interval per filter.
//
// The nodes and edges frames go out on two Grafana Live channels, and
// Grafana promises no order between channels: the browser may hold the
// nodes frame of one generation and the edges frame of another. The Node
// Graph panel refuses a graph whose edges name a node its nodes frame
// lacks ("Cannot visualize graph data: N edges reference missing nodes",
// public/app/plugins/panel/nodeGraph/dataErrors.ts; before that, older
// panels threw in processEdges, utils.ts). So generations are made such
// that any nodes frame and any edges frame at most one generation apart
// fit together. With N(g) the ids of generation g's nodes frame, E(g) the
// ids its edges name and A(g) the graph nodes of the fleet selected at g:
//
//	N(g) = A(g) ∪ A(g-1)       a node that leaves stays one generation
//	                           longer (Options.Linger), in no edge;
//	E(g) ⊆ A(g) ∩ N(g-1)       an edge waits until both its ends were in
//	                           the previous nodes frame (Options.Settled);
//	                           a node that arrives has no edge in its first
//	                           generation.
//
// Then E(g) ⊆ N(g-1), E(g) ⊆ A(g) ⊆ N(g), and E(g) ⊆ A(g) ⊆ N(g+1): the
// edges of g fit the nodes of g-1, g and g+1. A change of view (by node ↔
// by role, when the fleet crosses groupByRoleAbove) changes every id, so
// it takes one step more: the previous nodes frame once more with no
// edges (E = ∅ fits anything), then the new view, whose first edges again
// need their ends in that previous frame (mostly none: they come one
// generation later).
//
// "At most one generation apart" holds when both packets of a generation
// reach the browser before either packet of the next one, which is sent a
// liveInterval (100 ms or more) later: Grafana publishes both channels to
// the browser's one WebSocket connection, whose writer is a single queue
// (Centrifuge's client writer), so the two channels drift apart by the
// time Grafana takes between the two RunStream packets, not by an
// interval. (TestLiveGenerationsFitTogether checks every interleaving of
// deliveries within that bound.) A generation's frames are never skipped for a
// subscriber (a skip would make two generations of difference): a
// subscriber that falls behind by liveBacklog generations is dropped, and
// Grafana starts its RunStream again. Frames equal to the previous
// generation's are not sent again (the browser already holds them).
//
// A view nobody follows (no RunStream, no query or subscription in the
// last subscribeGrace) starts a fresh sequence when queried: no lingering,
// every edge; no browser holds frames of its old one.
const (
	// refreshEvery rebuilds a view that did not change, so "time since
	// last run" (mainstat) is never more than a minute stale.
	refreshEvery = 30 * time.Second
	// maxLiveViews caps the distinct live filters an instance serves at
	// once; views nobody follows are dropped first.
	maxLiveViews = 32
	// idleKeep is how long a view nobody follows keeps its state (layout
	// and last generation), so a reloaded dashboard finds its nodes where
	// they were.
	idleKeep = 10 * time.Minute
	// subscribeGrace: a view queried or subscribed to this recently counts
	// as followed (its RunStream may be on its way).
	subscribeGrace = 10 * time.Second
	// liveBacklog is how many generations a subscriber may fall behind.
	liveBacklog = 16
	// maxLiveFrameBytes bounds each streamed frame (MaxLiveFrameBytes).
	maxLiveFrameBytes = MaxLiveFrameBytes
	// maxLiveEdges stops a by-node build before it expands more edges
	// than could fit maxLiveFrameBytes.
	maxLiveEdges = 40_000
	// buildTimeout bounds one generation's build.
	buildTimeout = 10 * time.Second
)

// MaxLiveFrameBytes bounds each streamed frame's JSON, so a frame pair
// stays well under Grafana Live's 4 MB client queue (ClientQueueMaxSize in
// Grafana's pkg/services/live/live.go; a client whose queue overflows is
// disconnected): a by-node view that would be larger is shown by role.
const MaxLiveFrameBytes = 1536 << 10

var errTooManyViews = fmt.Errorf("more than %d live topology views with different filters are followed at once", maxLiveViews)

// liveView is the broadcaster of one filter.
type liveView struct {
	inst   *Instance
	filter topoFilter
	match  *nodeMatcher

	mu          sync.Mutex // guards the rest; builds run under it
	subs        map[*subscriber]struct{}
	lastRequest time.Time // last query or subscription
	lastUsed    time.Time
	stop        chan struct{} // nil when not running
	latest      *generation
	layouts     map[topology.GroupBy]*topology.Layout
	fleetGen    uint64
	alertsVer   uint64
	suspectsVer uint64
	seq         uint64
	lastErr     string
}

type subscriber struct {
	kind, refID, channel string
	ch                   chan *generation // closed when dropped or detached
	behind               bool             // dropped for falling behind (set before ch is closed)
}

// liveViews are an instance's views, by filter key.
type liveViews struct {
	mu    sync.Mutex
	views map[string]*liveView
}

// view returns the filter's view, making it if needed; it fails when
// maxLiveViews are followed.
func (inst *Instance) view(f topoFilter) (*liveView, error) {
	lv := &inst.live
	key := f.key()
	lv.mu.Lock()
	defer lv.mu.Unlock()
	if v, ok := lv.views[key]; ok {
		return v, nil
	}
	if len(lv.views) >= maxLiveViews {
		// Drop the least recently used view nobody follows.
		var idle *liveView
		var idleKey string
		for k, v := range lv.views {
			if v.followed(time.Now()) {
				continue
			}
			if idle == nil || v.used().Before(idle.used()) {
				idle, idleKey = v, k
			}
		}
		if idle == nil {
			return nil, errTooManyViews
		}
		delete(lv.views, idleKey)
	}
	m, err := newNodeMatcher(f.Node)
	if err != nil {
		return nil, err
	}
	v := &liveView{inst: inst, filter: f, match: m, subs: map[*subscriber]struct{}{},
		layouts: map[topology.GroupBy]*topology.Layout{}, lastUsed: time.Now()}
	if lv.views == nil {
		lv.views = map[string]*liveView{}
	}
	lv.views[key] = v
	inst.kickSuspects() // marks due for a view that was not followed
	return v, nil
}

// sweepViews drops views nobody followed for idleKeep.
func (inst *Instance) sweepViews(now time.Time) {
	lv := &inst.live
	lv.mu.Lock()
	defer lv.mu.Unlock()
	for k, v := range lv.views {
		if !v.followed(now) && now.Sub(v.used()) > idleKeep {
			delete(lv.views, k)
		}
	}
}

// stopViews ends every view's broadcast (Dispose).
func (inst *Instance) stopViews() {
	lv := &inst.live
	lv.mu.Lock()
	views := make([]*liveView, 0, len(lv.views))
	for _, v := range lv.views {
		views = append(views, v)
	}
	lv.mu.Unlock()
	for _, v := range views {
		v.mu.Lock()
		for s := range v.subs {
			v.drop(s)
		}
		v.stopLocked()
		v.mu.Unlock()
	}
}

func (v *liveView) used() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.lastUsed
}

// followed: some RunStream follows the view, or it was queried or
// subscribed to lately (a browser may hold its frames, and its RunStream
// may be on the way).
func (v *liveView) followed(now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.followedLocked(now)
}

func (v *liveView) followedLocked(now time.Time) bool {
	return len(v.subs) > 0 || now.Sub(v.lastRequest) < subscribeGrace
}

// current is the generation a query or a new subscription gets. With
// subscribers, the latest (the one they hold; the broadcast keeps it
// fresh). Queried or subscribed to lately, the next generation of the same
// sequence once the latest is an interval old (a browser may hold the
// latest and is about to follow). Otherwise a fresh one.
func (v *liveView) current(ctx context.Context) (*generation, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := time.Now()
	v.lastUsed = now
	followed := v.followedLocked(now)
	v.lastRequest = now
	if v.latest != nil && followed &&
		(len(v.subs) > 0 || now.Sub(v.latest.builtAt) < v.inst.settings.LiveInterval || !v.changed(now)) {
		return v.latest, nil
	}
	g, err := v.build(ctx, !followed || v.latest == nil)
	if err != nil {
		return nil, err
	}
	v.latest = g
	return g, nil
}

// attach adds a RunStream's subscriber, starting the broadcast if needed;
// the subscriber first gets the latest generation.
func (v *liveView) attach(ctx context.Context, kind, refID, channel string) (*subscriber, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.lastUsed = time.Now()
	if v.latest == nil {
		g, err := v.build(ctx, true)
		if err != nil {
			return nil, err
		}
		v.latest = g
	}
	s := &subscriber{kind: kind, refID: refID, channel: channel, ch: make(chan *generation, liveBacklog)}
	s.ch <- v.latest
	v.subs[s] = struct{}{}
	if v.stop == nil {
		v.stop = make(chan struct{})
		v.inst.wg.Add(1)
		go v.run(v.stop)
	}
	return s, nil
}

func (v *liveView) detach(s *subscriber) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.lastUsed = time.Now()
	if _, ok := v.subs[s]; ok {
		delete(v.subs, s)
		close(s.ch)
	}
	if len(v.subs) == 0 {
		v.stopLocked()
	}
}

func (v *liveView) drop(s *subscriber) {
	delete(v.subs, s)
	close(s.ch)
}

func (v *liveView) stopLocked() {
	if v.stop != nil {
		close(v.stop)
		v.stop = nil
	}
}

// run is the broadcast: a tick per liveInterval, a generation when
// something changed.
func (v *liveView) run(stop chan struct{}) {
	defer v.inst.wg.Done()
	t := time.NewTicker(v.inst.settings.LiveInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		v.tick(time.Now())
	}
}

func (v *liveView) tick(now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	if a := v.inst.alerts; a != nil {
		a.refresh(ctx)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.subs) == 0 || !v.changed(now) {
		return
	}
	g, err := v.build(ctx, false)
	if err != nil {
		if msg := err.Error(); msg != v.lastErr {
			v.inst.log.Warn("live topology view not updated", "filter", v.filter.key(), "err", err)
			v.lastErr = msg
		}
		return
	}
	v.lastErr = ""
	v.latest = g
	v.publishLocked(g)
}

// publishLocked hands g to every subscriber; one whose backlog is full is
// dropped (its RunStream ends with an error and Grafana starts it again).
func (v *liveView) publishLocked(g *generation) {
	for s := range v.subs {
		select {
		case s.ch <- g:
		default:
			v.inst.log.Warn("live topology subscriber fell behind; dropping it", "backlog", liveBacklog, "kind", s.kind)
			s.behind = true
			v.drop(s)
		}
	}
}

// changed reports whether a new generation is due.
func (v *liveView) changed(now time.Time) bool {
	g := v.latest
	switch {
	case g == nil, g.unsettled, now.Sub(g.builtAt) >= refreshEvery,
		v.inst.fleet.Generation() != v.fleetGen, v.inst.alertsVersion() != v.alertsVer,
		v.inst.suspectsVersion() != v.suspectsVer:
		return true
	}
	return digest(v.inst.stateNotices()) != g.state
}

// build makes the next generation (fresh: a new sequence, with nothing
// before it).
func (v *liveView) build(ctx context.Context, fresh bool) (*generation, error) {
	inst := v.inst
	prev := v.latest
	if fresh {
		prev = nil
	}
	fleetGen, nodes := inst.snapshot()
	alertsVer, suspectsVer := inst.alertsVersion(), inst.suspectsVersion()
	now := time.Now()
	v.match.begin(len(nodes))
	var nodeFilter func(string) bool
	if v.match.re != nil {
		nodeFilter = v.match.match
	}
	sel, err := topology.Select(ctx, nodes, topology.Filter{Environments: v.filter.Environments, Roles: v.filter.Roles, Node: nodeFilter})
	if err == nil {
		err = v.match.Err()
	}
	if err != nil {
		return nil, err
	}
	notices := inst.stateNotices()
	state := digest(notices)
	want := v.filter.groupBy()
	if want == topology.ByNode && sel.Len() > inst.settings.GroupByRoleAbove {
		want = topology.ByRole
		notices = append(notices, data.Notice{Severity: data.NoticeSeverityWarning,
			Text: groupedNotice(inst.settings.GroupByRoleAbove)})
	}
	var alerts map[string][]string
	if inst.alerts != nil {
		alerts = inst.alerts.forNodes(ctx, nodes)
	}
	suspects, suspectNotices := inst.suspectsFor(sel)
	notices = append(notices, suspectNotices...)
	for {
		if prev != nil && prev.view != want && prev.edges.Rows() > 0 {
			// A change of view: the previous nodes frame once more, with
			// no edges.
			g := v.edgeless(prev)
			g.state = state
			v.fleetGen, v.alertsVer, v.suspectsVer = fleetGen, alertsVer, suspectsVer
			return v.numbered(g), nil
		}
		opts := topology.Options{GroupBy: want, Config: inst.settings.Topology, Now: now, Alerts: alerts, Suspects: suspects, Lean: true}
		if want == topology.ByNode {
			opts.MaxEdges = maxLiveEdges
		}
		if v.filter.pinned() {
			opts.Layout = v.layouts[want]
			if opts.Layout == nil {
				opts.Layout = topology.NewLayout()
				v.layouts[want] = opts.Layout
			}
		}
		if prev != nil {
			opts.Linger = lingering(prev.live, sel)
			ids := prev.ids
			opts.Settled = func(id string) bool { _, ok := ids[id]; return ok }
		}
		res, err := topology.Build(ctx, sel, opts)
		tooLarge := errors.Is(err, topology.ErrTooManyEdges)
		if err != nil && !tooLarge {
			return nil, err
		}
		var g *generation
		if !tooLarge {
			g, err = v.newGeneration(res, want, sel, notices, prev)
			if err != nil {
				return nil, err
			}
			g.state = state
			tooLarge = len(g.nodesData) > maxLiveFrameBytes || len(g.edgesData) > maxLiveFrameBytes
		}
		if tooLarge {
			if want == topology.ByRole {
				return nil, fmt.Errorf("the topology is too large for Grafana Live even grouped by role (frames over %d bytes)", maxLiveFrameBytes)
			}
			want = topology.ByRole
			notices = append(notices, data.Notice{Severity: data.NoticeSeverityWarning,
				Text: fmt.Sprintf("The nodes that match make a graph too large to stream (over %d KiB): grouped by role instead; "+
					"filter by environment, role or node to see nodes", maxLiveFrameBytes>>10)})
			continue
		}
		v.fleetGen, v.alertsVer, v.suspectsVer = fleetGen, alertsVer, suspectsVer
		return v.numbered(g), nil
	}
}

// numbered gives g the view's next sequence number.
func (v *liveView) numbered(g *generation) *generation {
	v.seq++
	g.seq = v.seq
	liveStats.builds.Add(1)
	return g
}
