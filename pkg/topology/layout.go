package topology

import (
	"slices"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Layout geometry, in the Node Graph panel's units: a node is a circle 80
// across with its title and subtitle under it.
const (
	stepX = 160 // between columns
	stepY = 140 // between rows
	// bandWidth is about how many nodes wide a new band is laid out;
	// maxBandRows caps its height. A band grows to the right.
	bandWidth   = 10
	maxBandRows = 10
	bandGap     = 1 // empty rows between two bands
)

// Layout gives every node of a view a fixed place (the Node Graph panel's
// fixedX/fixedY) that it keeps for as long as it is shown, so a live view
// never jumps and the panel never re-runs its layout.
//
// Places are in horizontal bands stacked top to bottom. ByNode, a band
// holds the nodes of one environment whose (primary) role is in one layer
// of the role graph; ByRole, the roles of one layer. A role's layer is its
// depth in the role graph (an edge goes from the role that depends to the
// one depended on, so dependencies sit below their dependents and edges
// point down); roles on a cycle share a layer. Bands are first laid out
// sorted by environment, then layer. A band's height is fixed when it is
// made; it grows to the right. A node that appears takes the first free
// place in its band (left by one that went), a band that appears the first
// gap tall enough between the bands (or goes below them), and nothing that
// is already placed ever moves. A role keeps the layer it first got, a
// node the band it was first placed in (until its environment changes).
//
// One Layout serves one view (one filter, one GroupBy) across frames; a
// fresh one lays out a single frame deterministically. It is not safe for
// concurrent use.
type Layout struct {
	epoch     uint64
	placed    map[string]*placement
	bands     map[bandKey]*band
	stack     []*band // by top
	roleLayer map[string]int
	linked    map[string]bool // the role had an edge when its layer was set
}

type placement struct {
	b     *band
	slot  int
	epoch uint64
}

// bandKey names a band: an environment ("" ByRole) and a layer.
type bandKey struct {
	env   string
	layer int
}

func (k bandKey) compare(o bandKey) int {
	if c := strings.Compare(k.env, o.env); c != 0 {
		return c
	}
	return k.layer - o.layer
}

type band struct {
	key   bandKey
	top   int // first row
	rows  int
	slots []string // id in each slot, "" when free
	used  int
	free  int // no free slot below this one
}

// NewLayout returns an empty Layout.
func NewLayout() *Layout {
	return &Layout{placed: map[string]*placement{}, bands: map[bandKey]*band{},
		roleLayer: map[string]int{}, linked: map[string]bool{}}
}

// Len is how many nodes hold a place.
func (l *Layout) Len() int { return len(l.placed) }

// item is a graph node to place: its id, its band and, for its first
// placement, the key it is ordered by within the band (then id).
type item struct {
	id    string
	band  bandKey
	order string
}

// place gives each item its position and releases the places of the ids
// it does not list.
func (l *Layout) place(items []item) (x, y *data.Field) {
	l.epoch++
	var fresh []int
	for k, it := range items {
		pl, ok := l.placed[it.id]
		if ok && pl.b.key == it.band {
			pl.epoch = l.epoch
			continue
		}
		if ok { // moved to another band: released below
			pl.epoch = 0
		}
		fresh = append(fresh, k)
	}
	for id, pl := range l.placed {
		if pl.epoch != l.epoch {
			l.release(id, pl)
		}
	}
	// New bands first, sorted by key, each as tall as its first nodes
	// need; then the new nodes in (band, order, id) order.
	slices.SortFunc(fresh, func(a, b int) int {
		ia, ib := &items[a], &items[b]
		if c := ia.band.compare(ib.band); c != 0 {
			return c
		}
		if c := strings.Compare(ia.order, ib.order); c != 0 {
			return c
		}
		return strings.Compare(ia.id, ib.id)
	})
	for i := 0; i < len(fresh); {
		key := items[fresh[i]].band
		j := i
		for j < len(fresh) && items[fresh[j]].band == key {
			j++
		}
		b := l.bands[key]
		if b == nil {
			b = l.newBand(key, j-i)
		}
		for _, k := range fresh[i:j] {
			l.placed[items[k].id] = &placement{b: b, slot: b.take(items[k].id), epoch: l.epoch}
		}
		i = j
	}
	xf, xs := newColumn[float64]("fixedX", len(items))
	yf, ys := newColumn[float64]("fixedY", len(items))
	for k, it := range items {
		pl := l.placed[it.id]
		xs[k] = float64(pl.slot / pl.b.rows * stepX)
		ys[k] = float64((pl.b.top + pl.slot%pl.b.rows) * stepY)
	}
	return xf, yf
}

func (l *Layout) release(id string, pl *placement) {
	b := pl.b
	b.slots[pl.slot] = ""
	b.used--
	b.free = min(b.free, pl.slot)
	delete(l.placed, id)
	if b.used == 0 {
		delete(l.bands, b.key)
		l.stack = slices.DeleteFunc(l.stack, func(o *band) bool { return o == b })
	}
}

// newBand makes a band for about n nodes in the first gap of the stack
// that fits it, or below the last band.
func (l *Layout) newBand(key bandKey, n int) *band {
	rows := min(max(1, (n+bandWidth-1)/bandWidth), maxBandRows)
	top, at := 0, len(l.stack)
	for k, o := range l.stack {
		if top+rows+bandGap <= o.top {
			at = k
			break
		}
		top = o.top + o.rows + bandGap
	}
	b := &band{key: key, top: top, rows: rows}
	l.stack = slices.Insert(l.stack, at, b)
	l.bands[key] = b
	return b
}

// take gives id the first free slot.
func (b *band) take(id string) int {
	for b.free < len(b.slots) && b.slots[b.free] != "" {
		b.free++
	}
	if b.free == len(b.slots) {
		b.slots = append(b.slots, "")
	}
	s := b.free
	b.slots[s] = id
	b.used++
	b.free++
	return s
}

// setLayers gives the roles in need that have no layer yet the layer the
// role graph of links (from the role that depends to the one depended on)
// gives them.
func (l *Layout) setLayers(need []string, links [][2]string) {
	missing := false
	for _, r := range need {
		if _, ok := l.roleLayer[r]; !ok {
			missing = true
			break
		}
	}
	if !missing {
		return
	}
	depth := roleDepths(need, links)
	for _, lk := range links {
		if lk[0] != lk[1] {
			for _, r := range lk {
				if _, ok := l.roleLayer[r]; !ok {
					l.linked[r] = true
				}
			}
		}
	}
	for r, d := range depth {
		if _, ok := l.roleLayer[r]; !ok {
			l.roleLayer[r] = d
		}
	}
}

// primary is the role a node is placed by: of its roles, the one in the
// deepest layer, then one that has edges, then the first.
func (l *Layout) primary(roles []string) string {
	if len(roles) == 0 {
		return NoRole
	}
	best := roles[0]
	for _, r := range roles[1:] {
		lb, lr := l.roleLayer[best], l.roleLayer[r]
		if lr > lb || lr == lb && l.linked[r] && !l.linked[best] {
			best = r
		}
	}
	return best
}

// placeNodes places the rows of a ByNode graph (ids in row order); links
// are its role links (graph.roleLinks), asked for only when a role has no
// layer yet.
func (l *Layout) placeNodes(g *graph, ids []string, links func() [][2]string) (x, y *data.Field) {
	for _, n := range g.rows {
		if !l.hasLayers(nodeRoles(n)) {
			var need []string
			for _, m := range g.rows {
				need = append(need, nodeRoles(m)...)
			}
			slices.Sort(need)
			l.setLayers(slices.Compact(need), links())
			break
		}
	}
	items := make([]item, len(ids))
	for p, n := range g.rows {
		r := l.primary(n.Roles)
		items[p] = item{id: ids[p], band: bandKey{n.Environment, l.roleLayer[r]}, order: r}
	}
	return l.place(items)
}

func (l *Layout) hasLayers(roles []string) bool {
	for _, r := range roles {
		if _, ok := l.roleLayer[r]; !ok {
			return false
		}
	}
	return true
}

// setLayersLazy is setLayers with links computed only when some role of
// need has no layer yet.
func (l *Layout) setLayersLazy(need []string, links func() [][2]string) {
	if !l.hasLayers(need) {
		l.setLayers(need, links())
	}
}

// placeRoles places the rows of a ByRole graph: ids are roles, edges
// (source<<32|target) index them.
func (l *Layout) placeRoles(ids []string, edges []uint64) (x, y *data.Field) {
	l.setLayersLazy(ids, func() [][2]string {
		links := make([][2]string, len(edges))
		for k, e := range edges {
			links[k] = [2]string{ids[e>>32], ids[uint32(e)]}
		}
		return links
	})
	items := make([]item, len(ids))
	for k, r := range ids {
		items[k] = item{id: r, band: bandKey{layer: l.roleLayer[r]}, order: r}
	}
	return l.place(items)
}

// roleDepths is each role's layer: 0 for roles no other role depends on
// (and roles without links), else one more than the deepest role that
// depends on it. The roles of a cycle (a strongly connected component)
// share one layer.
func roleDepths(roles []string, links [][2]string) map[string]int {
	idx := map[string]int{}
	var names []string
	add := func(r string) int {
		k, ok := idx[r]
		if !ok {
			k = len(names)
			idx[r] = k
			names = append(names, r)
		}
		return k
	}
	for _, r := range roles {
		add(r)
	}
	adj := make([][]int, len(names))
	for _, lk := range links {
		a, b := add(lk[0]), add(lk[1])
		for len(adj) < len(names) {
			adj = append(adj, nil)
		}
		if a != b {
			adj[a] = append(adj[a], b)
		}
	}
	comp := components(adj)
	// Tarjan numbers components in reverse topological order: a component
	// comes after every component it reaches. So visit from the highest
	// number down, pushing depths along the edges.
	nComp := 0
	for _, c := range comp {
		nComp = max(nComp, c+1)
	}
	members := make([][]int, nComp)
	for v, c := range comp {
		members[c] = append(members[c], v)
	}
	depth := make([]int, nComp)
	for c := nComp - 1; c >= 0; c-- {
		for _, v := range members[c] {
			for _, w := range adj[v] {
				if cw := comp[w]; cw != c {
					depth[cw] = max(depth[cw], depth[c]+1)
				}
			}
		}
	}
	out := make(map[string]int, len(names))
	for v, r := range names {
		out[r] = depth[comp[v]]
	}
	return out
}

// components numbers the strongly connected components of adj (Tarjan),
// in reverse topological order of the condensation.
func components(adj [][]int) []int {
	n := len(adj)
	index, low, comp := make([]int, n), make([]int, n), make([]int, n)
	for i := range index {
		index[i], comp[i] = -1, -1
	}
	onStack := make([]bool, n)
	var stack []int
	next, nComp := 0, 0
	var visit func(v int)
	visit = func(v int) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range adj[v] {
			if index[w] < 0 {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				comp[w] = nComp
				if w == v {
					break
				}
			}
			nComp++
		}
	}
	for v := range n {
		if index[v] < 0 {
			visit(v)
		}
	}
	return comp
}
