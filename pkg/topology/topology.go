// Package topology turns the fleet's nodes into the data frames of Grafana's
// Node Graph panel: one node per host (or per role), edges from the nodes'
// depends_on entries and from the datasource's topology file, and fixed
// positions (Layout) that keep a live view still.
//
// It does no I/O. The live datasource builds one frame pair per interval
// with Build, from a Selection of a fleet snapshot; Frames does both steps
// for one-off use.
package topology

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/fleet"
)

// GroupBy chooses what one node of the graph stands for.
type GroupBy string

const (
	ByNode GroupBy = "node" // one graph node per host
	ByRole GroupBy = "role" // one graph node per role
)

// NodeGraphLimit is how many nodes Grafana's Node Graph panel shows before
// it hides the rest ("N nodes are hidden for performance reasons"):
// defaultNodeCountLimit in public/app/plugins/panel/nodeGraph/NodeGraph.tsx.
// The datasource switches a by-node view to ByRole above it (its
// groupByRoleAbove setting defaults to this).
const NodeGraphLimit = 200

// NoRole is the role that nodes without roles are grouped under (ByRole),
// and that Filter.Roles selects them by.
const NoRole = "(none)"

// RolePrefix marks a depends_on entry that names a role rather than a node.
const RolePrefix = "role:"

// Colors of the node states, as the Node Graph panel's `color` field and the
// arc fields' fixed colors.
const (
	ColorSuccess    = "green"
	ColorFailed     = "red"
	ColorConverging = "blue"
)

// Filter selects nodes. The zero value selects all.
type Filter struct {
	// Environments: the node's environment is one of these; empty = all.
	Environments []string
	// Roles: the node has one of these roles (NoRole: it has none);
	// empty = all.
	Roles []string
	// Node, if set, is asked about each node's name; nil = all. Select
	// asks once per node.
	Node func(name string) bool
}

// Match reports whether n passes the filter.
func (f Filter) Match(n *fleet.Node) bool { return f.MatchFields(n.Environment, n.Roles, n.Name) }

// MatchFields is Match for anything with an environment, roles and a node
// name (a run, say).
func (f Filter) MatchFields(environment string, roles []string, name string) bool {
	if len(f.Environments) > 0 && !slices.Contains(f.Environments, environment) {
		return false
	}
	if len(f.Roles) > 0 && !hasAnyRole(f.Roles, roles) {
		return false
	}
	return f.Node == nil || f.Node(name)
}

// hasAnyRole reports whether roles (none at all counts as NoRole) meets
// list.
func hasAnyRole(list, roles []string) bool {
	if len(roles) == 0 {
		return slices.Contains(list, NoRole)
	}
	for _, r := range roles {
		if slices.Contains(list, r) {
			return true
		}
	}
	return false
}

// ctxCheckEvery is how many loop iterations over nodes pass between two
// looks at the context.
const ctxCheckEvery = 1024

// Selection is the nodes of a fleet snapshot that a Filter selected,
// sorted by name. It keeps the whole snapshot: a depends_on entry names a
// node when any node has that name, selected or not.
type Selection struct {
	all []fleet.Node
	idx []int32 // into all, sorted by name
}

// Select evaluates f once per node (node names are unique, as fleet.State
// hands them out). nodes need not be sorted and is only read, then and
// later. It returns ctx's error if ctx ends first.
func Select(ctx context.Context, nodes []fleet.Node, f Filter) (*Selection, error) {
	s := &Selection{all: nodes, idx: make([]int32, 0, len(nodes))}
	for i := range nodes {
		if i%ctxCheckEvery == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if f.Match(&nodes[i]) {
			s.idx = append(s.idx, int32(i))
		}
	}
	cmp := func(a, b int32) int { return strings.Compare(nodes[a].Name, nodes[b].Name) }
	if !slices.IsSortedFunc(s.idx, cmp) {
		slices.SortFunc(s.idx, cmp)
	}
	return s, nil
}

// Len is how many nodes were selected.
func (s *Selection) Len() int { return len(s.idx) }

// Has reports whether the node of that name is selected.
func (s *Selection) Has(name string) bool {
	_, ok := slices.BinarySearchFunc(s.idx, name, func(i int32, name string) int { return strings.Compare(s.all[i].Name, name) })
	return ok
}

// Node is the i-th selected node, by name.
func (s *Selection) Node(i int) *fleet.Node { return &s.all[s.idx[i]] }

// Options of Build.
type Options struct {
	GroupBy GroupBy // "" = ByNode
	Config  Config
	Now     time.Time // for "time since last run"
	// Alerts maps a node name to the names of its firing alerts
	// (Alertmanager overlay); may be nil.
	Alerts map[string][]string
	// Suspects maps a node name to what makes it suspect: the change set
	// it took part in whose impact score passed the highlight threshold.
	// Those nodes (and their roles, ByRole) are highlighted, and the text
	// is their detail__suspect. nil leaves the detail__suspect column out
	// (highlighting off); an empty map keeps it, empty.
	Suspects map[string]string
	// Layout, if set, pins every node (fixedX/fixedY) where it places it;
	// nil leaves the positions to the Node Graph panel.
	Layout *Layout
	// Linger are nodes shown although they are no longer selected (nodes
	// that just left the fleet or the filter): in the nodes frame (with
	// their roles, ByRole) but in no edge. Those also selected are
	// ignored.
	Linger []fleet.Node
	// Settled, if set, decides which graph nodes (by id: node name, or role
	// for ByRole) may be the end of an edge; edges touching another are
	// withheld (counted in Result.Withheld). nil: every shown node.
	Settled func(id string) bool
	// NoEdges withholds every edge.
	NoEdges bool
	// Lean leaves out the node details that are large and rarely needed
	// (changed and failed resources, run list) and shortens the last
	// error: for live frames, which Grafana Live sends every interval.
	Lean bool
	// MaxEdges, if positive, makes Build fail with ErrTooManyEdges before
	// it expands more edges than this.
	MaxEdges int
}

// ErrTooManyEdges is Build's error when the graph would have more edges
// than Options.MaxEdges.
var ErrTooManyEdges = errors.New("topology: too many edges")

// Result is Build's output.
type Result struct {
	Nodes, Edges *data.Frame
	// IDs are the nodes frame's ids, in its order (sorted).
	IDs []string
	// Withheld counts the edges left out by Options.Settled or NoEdges.
	Withheld int
	// Lingering counts the rows of Options.Linger nodes (ByNode) or of
	// roles shown only for them (ByRole).
	Lingering int
}

// Build makes the Node Graph frames of sel: nodes and edges, each sorted
// by id so a live view does not jump, named "nodes" and "edges" and
// preferring the nodeGraph visualisation. It returns ctx's error if ctx
// ends first, ErrTooManyEdges past Options.MaxEdges.
func Build(ctx context.Context, sel *Selection, o Options) (*Result, error) {
	g, err := newGraph(ctx, sel, o)
	if err != nil {
		return nil, err
	}
	if o.GroupBy == ByRole {
		return g.roleFrames(ctx)
	}
	return g.nodeFrames(ctx)
}

// Frames selects with f and builds the frames in one go (no context, no
// edge limit): for tests, benchmarks and one-off use.
func Frames(nodes []fleet.Node, f Filter, o Options) (*data.Frame, *data.Frame) {
	sel, _ := Select(context.Background(), nodes, f)
	o.MaxEdges = 0
	r, _ := Build(context.Background(), sel, o)
	return r.Nodes, r.Edges
}

// graph is what both views are built from: the shown nodes (selected, and
// lingering) sorted by name. Only the selected ones ("live") take part in
// edges.
type graph struct {
	o     Options
	all   []fleet.Node  // the whole snapshot, for names
	rows  []*fleet.Node // shown nodes, sorted by name
	live  []bool        // per row: selected (not lingering)
	nLive int           // selected rows
}

func newGraph(ctx context.Context, sel *Selection, o Options) (*graph, error) {
	g := &graph{o: o, all: sel.all, nLive: sel.Len()}
	var linger []*fleet.Node
	if len(o.Linger) > 0 {
		selected := make(map[string]struct{}, sel.Len())
		for i := range sel.Len() {
			selected[sel.Node(i).Name] = struct{}{}
		}
		for i := range o.Linger {
			if _, dup := selected[o.Linger[i].Name]; !dup {
				linger = append(linger, &o.Linger[i])
				selected[o.Linger[i].Name] = struct{}{}
			}
		}
		slices.SortFunc(linger, func(a, b *fleet.Node) int { return strings.Compare(a.Name, b.Name) })
	}
	// Merge the two sorted lists.
	n := sel.Len() + len(linger)
	g.rows, g.live = make([]*fleet.Node, 0, n), make([]bool, 0, n)
	i, j := 0, 0
	for i < sel.Len() || j < len(linger) {
		if len(g.rows)%ctxCheckEvery == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if j == len(linger) || i < sel.Len() && sel.Node(i).Name < linger[j].Name {
			g.rows, g.live = append(g.rows, sel.Node(i)), append(g.live, true)
			i++
		} else {
			g.rows, g.live = append(g.rows, linger[j]), append(g.live, false)
			j++
		}
	}
	return g, nil
}

// edgeEnds says, per row of ids (the frame's rows), which may end an edge:
// live ones that Options.Settled accepts.
func (g *graph) edgeEnds(ids []string, live func(int) bool) []bool {
	ok := make([]bool, len(ids))
	for p, id := range ids {
		ok[p] = !g.o.NoEdges && live(p) && (g.o.Settled == nil || g.o.Settled(id))
	}
	return ok
}

// keepSettled drops the (source<<32|target) pairs whose ends may not end
// an edge, in place, and returns the rest and how many it dropped.
func keepSettled(pairs []uint64, ok []bool) ([]uint64, int) {
	kept := pairs[:0]
	for _, e := range pairs {
		if ok[e>>32] && ok[uint32(e)] {
			kept = append(kept, e)
		}
	}
	return kept, len(pairs) - len(kept)
}
