package plugin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/fleet"
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
// "At most one generation apart" holds when each channel's packets are
// delivered before the packets two generations later are sent: Grafana
// publishes both channels to the browser's one WebSocket connection, whose
// writer is a single queue, and generations are at least liveInterval
// (100 ms or more) apart. A generation's frames are never skipped for a
// subscriber (a skip would make two generations of difference): a
// subscriber that falls behind by liveBacklog generations is dropped, and
// Grafana starts its RunStream again. Frames equal to the previous
// generation's are not sent again (the browser already holds them).
//
// A view nobody follows (no RunStream, no recent subscription) starts a
// fresh sequence when queried: no lingering, every edge; no browser holds
// frames of its old one.
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
	// subscribeGrace: a view subscribed to this recently counts as
	// followed (its RunStream may be on its way).
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

// generation is one frame pair of a view, shared read-only by every
// subscriber once built.
type generation struct {
	seq          uint64
	view         topology.GroupBy
	nodes, edges *data.Frame // RefID and channel unset
	ids          map[string]struct{}
	live         []fleet.Node // the selected nodes, for lingering next time
	unsettled    bool         // lingering rows, withheld edges: build again
	notices      string       // digest of its notices ("" for none)
	state        string       // digest of the instance's notices it was built with
	// The data part of each frame's JSON (schema apart: it carries the
	// RefID and the channel), and whether it equals the previous
	// generation's.
	nodesData, edgesData []byte
	sameNodes, sameEdges bool
	builtAt              time.Time

	encMu   sync.Mutex
	encoded map[encKey][]byte
}

type encKey struct{ kind, refID, channel string }

func (g *generation) frame(kind string) *data.Frame {
	if kind == kindEdges {
		return g.edges
	}
	return g.nodes
}

func (g *generation) same(kind string) bool {
	if kind == kindEdges {
		return g.sameEdges
	}
	return g.sameNodes
}

// packet is the StreamPacket JSON of one frame with the RefID and channel
// it goes out with: what data.FrameToJSON(frame, data.IncludeAll) gives,
// with the data part encoded once per generation.
func (g *generation) packet(kind, refID, channel string) ([]byte, error) {
	k := encKey{kind, refID, channel}
	g.encMu.Lock()
	defer g.encMu.Unlock()
	if b, ok := g.encoded[k]; ok {
		return b, nil
	}
	f := labelled(g.frame(kind), refID, channel)
	schema, err := data.FrameToJSON(f, data.IncludeSchemaOnly) // {"schema":{…}}
	if err != nil {
		return nil, err
	}
	body := g.nodesData
	if kind == kindEdges {
		body = g.edgesData
	}
	// {"schema":{…}} + {"data":{…}} → {"schema":{…},"data":{…}}
	b := make([]byte, 0, len(schema)+len(body))
	b = append(b, schema[:len(schema)-1]...)
	b = append(b, ',')
	b = append(b, body[1:]...)
	if g.encoded == nil {
		g.encoded = map[encKey][]byte{}
	}
	g.encoded[k] = b
	liveStats.encodes.Add(1)
	return b, nil
}

// labelled is a shallow copy of f with its RefID and channel set (f is
// shared and never written).
func labelled(f *data.Frame, refID, channel string) *data.Frame {
	c := *f
	c.RefID = refID
	if f.Meta != nil {
		m := *f.Meta
		m.Channel = channel
		c.Meta = &m
	}
	return &c
}

// liveView is the broadcaster of one filter.
type liveView struct {
	inst   *Instance
	filter topoFilter
	match  *nodeMatcher

	mu            sync.Mutex // guards the rest; builds run under it
	subs          map[*subscriber]struct{}
	lastSubscribe time.Time
	lastUsed      time.Time
	stop          chan struct{} // nil when not running
	latest        *generation
	layouts       map[topology.GroupBy]*topology.Layout
	fleetGen      uint64
	alertsVer     uint64
	seq           uint64
	lastErr       string
}

type subscriber struct {
	kind, refID, channel string
	ch                   chan *generation // closed when dropped or detached
	behind               bool             // dropped for falling behind (set before ch is closed)
}

// liveStats counts, for the benchmark and tests, what every view of the
// process did.
var liveStats struct{ builds, encodes, sends atomic.Uint64 }

// LiveCounters are process-wide counts of live generations built, frames
// encoded and packets sent, for benchmarks.
type LiveCounters struct{ Builds, Encodes, Sends uint64 }

// LiveStats returns the counters.
func LiveStats() LiveCounters {
	return LiveCounters{liveStats.builds.Load(), liveStats.encodes.Load(), liveStats.sends.Load()}
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

// followed: some RunStream follows the view, or a subscription was made
// lately.
func (v *liveView) followed(now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.followedLocked(now)
}

func (v *liveView) followedLocked(now time.Time) bool {
	return len(v.subs) > 0 || now.Sub(v.lastSubscribe) < subscribeGrace
}

// current is the generation a query or a new subscription gets: the
// latest when the view is followed (the one its subscribers hold), else a
// fresh one.
func (v *liveView) current(ctx context.Context, subscribing bool) (*generation, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := time.Now()
	v.lastUsed = now
	followed := v.followedLocked(now)
	if subscribing {
		v.lastSubscribe = now
	}
	if v.latest != nil && followed {
		return v.latest, nil
	}
	g, err := v.build(ctx, true)
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
		v.inst.fleet.Generation() != v.fleetGen, v.inst.alertsVersion() != v.alertsVer:
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
	alertsVer := inst.alertsVersion()
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
	for {
		if prev != nil && prev.view != want && prev.edges.Rows() > 0 {
			// A change of view: the previous nodes frame once more, with
			// no edges.
			g := v.edgeless(prev)
			g.state = state
			v.fleetGen, v.alertsVer = fleetGen, alertsVer
			return g, nil
		}
		opts := topology.Options{GroupBy: want, Config: inst.settings.Topology, Now: now, Alerts: alerts, Lean: true}
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
		v.fleetGen, v.alertsVer = fleetGen, alertsVer
		return g, nil
	}
}

// newGeneration finishes a build: meta, notices and the encoded data.
func (v *liveView) newGeneration(res *topology.Result, view topology.GroupBy, sel *topology.Selection, notices []data.Notice,
	prev *generation) (*generation, error) {
	v.seq++
	liveStats.builds.Add(1)
	g := &generation{seq: v.seq, view: view, nodes: res.Nodes, edges: res.Edges, builtAt: time.Now(),
		unsettled: res.Withheld > 0 || res.Lingering > 0, notices: digest(notices)}
	g.ids = make(map[string]struct{}, len(res.IDs))
	for _, id := range res.IDs {
		g.ids[id] = struct{}{}
	}
	g.live = make([]fleet.Node, sel.Len())
	for i := range sel.Len() {
		g.live[i] = *sel.Node(i)
	}
	withNotices(g.nodes, notices)
	var err error
	if g.nodesData, err = data.FrameToJSON(g.nodes, data.IncludeDataOnly); err != nil {
		return nil, err
	}
	if g.edgesData, err = data.FrameToJSON(g.edges, data.IncludeDataOnly); err != nil {
		return nil, err
	}
	if prev != nil {
		g.sameNodes = prev.view == view && prev.notices == g.notices && bytes.Equal(prev.nodesData, g.nodesData) && sameSchema(prev.nodes, g.nodes)
		g.sameEdges = bytes.Equal(prev.edgesData, g.edgesData) // one schema for both views
	}
	return g, nil
}

// edgeless is the generation that changes view: prev's nodes, no edges.
func (v *liveView) edgeless(prev *generation) *generation {
	v.seq++
	liveStats.builds.Add(1)
	empty := prev.edges.EmptyCopy()
	edgesData, _ := data.FrameToJSON(empty, data.IncludeDataOnly)
	return &generation{seq: v.seq, view: prev.view, nodes: prev.nodes, edges: empty, ids: prev.ids, live: prev.live,
		unsettled: true, notices: prev.notices, nodesData: prev.nodesData, edgesData: edgesData,
		sameNodes: true, builtAt: prev.builtAt}
}

// lingering are the nodes selected last time and not now (they left the
// fleet or the filter).
func lingering(prev []fleet.Node, sel *topology.Selection) []fleet.Node {
	now := make(map[string]struct{}, sel.Len())
	for i := range sel.Len() {
		now[sel.Node(i).Name] = struct{}{}
	}
	var out []fleet.Node
	for _, n := range prev {
		if _, ok := now[n.Name]; !ok {
			out = append(out, n)
		}
	}
	return out
}

func sameSchema(a, b *data.Frame) bool {
	if len(a.Fields) != len(b.Fields) {
		return false
	}
	for i := range a.Fields {
		if a.Fields[i].Name != b.Fields[i].Name || a.Fields[i].Type() != b.Fields[i].Type() {
			return false
		}
	}
	return true
}

// withNotices puts the notices on the nodes frame. Grafana's
// StreamingDataFrame (packages/grafana-data/src/dataframe/
// StreamingDataFrame.ts) takes a packet's meta, but LiveDataStream
// (public/app/features/live/centrifuge/LiveDataStream.ts) passes the panel
// a new frame, meta and all, only when the packet's schema changed
// (schemaChanged: field names or types differ); with the same fields only
// the values reach the panel, and its notices stay what they were. So a
// frame with notices carries one more field, named after them
// ("notice:<hash>", a column of zeros the Node Graph panel ignores): the
// schema changes exactly when the notices do, and a notice that goes away
// (the replay caught up) goes away in the panel too.
func withNotices(f *data.Frame, notices []data.Notice) {
	if f.Meta == nil {
		f.Meta = &data.FrameMeta{}
	}
	f.Meta.Notices = notices
	if len(notices) == 0 {
		return
	}
	f.Fields = append(f.Fields, data.NewField("notice:"+digest(notices), nil, make([]uint8, f.Rows())))
}

// noticeField reports whether a field is withNotices' marker.
func noticeField(name string) bool { return len(name) > 7 && name[:7] == "notice:" }

func digest(notices []data.Notice) string {
	if len(notices) == 0 {
		return ""
	}
	h := fnv.New32a()
	for _, n := range notices {
		fmt.Fprintf(h, "%d\x00%s\x00", n.Severity, n.Text)
	}
	return fmt.Sprintf("%08x", h.Sum32())
}

// groupedNotice says why a by-node view shows roles. It names no count:
// the notices change the frame's schema (withNotices), so they should not
// change with every node that comes or goes.
func groupedNotice(above int) string {
	return fmt.Sprintf("More than %d nodes (groupByRoleAbove) match: grouped by role instead; "+
		"filter by environment, role or node to see nodes", above)
}

// stateNotices are the instance's notices for a live view: the history
// still replaying, or not readable.
func (inst *Instance) stateNotices() []data.Notice {
	if err := inst.feedError(); err != nil {
		return []data.Notice{{Severity: data.NoticeSeverityError, Text: "runlens cannot read its history from RabbitMQ: " + err.Error()}}
	}
	if !inst.isCaughtUp() {
		return []data.Notice{{Severity: data.NoticeSeverityWarning,
			Text: "runlens is still replaying its history from RabbitMQ: the picture is incomplete"}}
	}
	return nil
}
