package plugin

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/topology"
)

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

// newGeneration finishes a build: meta, notices and the encoded data.
func (v *liveView) newGeneration(res *topology.Result, view topology.GroupBy, sel *topology.Selection, notices []data.Notice,
	prev *generation) (*generation, error) {
	g := &generation{view: view, nodes: res.Nodes, edges: res.Edges, builtAt: time.Now(),
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
	empty := prev.edges.EmptyCopy()
	edgesData, _ := data.FrameToJSON(empty, data.IncludeDataOnly)
	return &generation{view: prev.view, nodes: prev.nodes, edges: empty, ids: prev.ids, live: prev.live,
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
