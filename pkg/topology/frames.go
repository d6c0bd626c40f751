package topology

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

// GroupBy chooses what one node of the graph stands for.
type GroupBy string

const (
	ByNode GroupBy = "node" // one graph node per host
	ByRole GroupBy = "role" // one graph node per role
)

// MaxNodeGraphNodes is the Node Graph panel's limit (1,500 nodes); callers
// switch to ByRole past it.
const MaxNodeGraphNodes = 1500

// NoRole is the role that nodes without roles are grouped under (ByRole),
// and that Filter.Role selects them by.
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
	Environment string         // exact; "" = all
	Role        string         // node has this role (NoRole: has none); "" = all
	Node        *regexp.Regexp // matched against the node name with MatchString; nil = all
}

// Match reports whether n passes the filter.
func (f Filter) Match(n *fleet.Node) bool {
	return MatchEnvironment(f.Environment, n.Environment) && MatchRoles(f.Role, n.Roles) &&
		(f.Node == nil || f.Node.MatchString(n.Name))
}

// MatchEnvironment reports whether env is in list, a comma-separated list of
// environments (a dashboard variable with several values, or All, arrives
// as one); an empty list matches every environment.
func MatchEnvironment(list, env string) bool {
	if list == "" {
		return true
	}
	for item := range strings.SplitSeq(list, ",") {
		if strings.TrimSpace(item) == env {
			return true
		}
	}
	return false
}

// MatchRoles reports whether any of roles (none at all counts as NoRole) is
// in list, a comma-separated list of roles; an empty list matches all.
func MatchRoles(list string, roles []string) bool {
	if list == "" {
		return true
	}
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if len(roles) == 0 && item == NoRole || slices.Contains(roles, item) {
			return true
		}
	}
	return false
}

// Options of Frames.
type Options struct {
	Filter  Filter
	GroupBy GroupBy // "" = ByNode
	Config  Config
	Now     time.Time // for "time since last run"
	// Alerts maps a node name to the names of its firing alerts
	// (Alertmanager overlay); may be nil.
	Alerts map[string][]string
	// Layout sets fixedX/fixedY on every node: one column per environment
	// (sorted), one row per role (sorted), nodes stacked within a cell.
	Layout bool
}

// state of a node: exactly one.
type state uint8

const (
	stSuccess state = iota
	stFailed
	stConverging
)

func stateOf(n *fleet.Node) state {
	switch {
	case n.Converging || n.Last == nil:
		// A node with no finished run can only have been started.
		return stConverging
	case n.Last.Status == report.StatusFailure:
		return stFailed
	default:
		return stSuccess
	}
}

var stateColor = [...]string{stSuccess: ColorSuccess, stFailed: ColorFailed, stConverging: ColorConverging}

// Frames builds the Node Graph frames for the nodes that match o.Filter:
// nodes and edges, each sorted by id so a live view does not jump. The
// frames are named "nodes" and "edges" and prefer the nodeGraph
// visualisation. nodes need not be sorted; the slices inside them are only
// read.
func Frames(nodes []fleet.Node, o Options) (*data.Frame, *data.Frame) {
	g := newGraph(nodes, o)
	if o.GroupBy == ByRole {
		return g.roleFrames()
	}
	return g.nodeFrames()
}

// graph is the filtered node set, sorted by name. Node names are unique (as
// fleet.State hands them out).
type graph struct {
	o     Options
	all   []fleet.Node
	nodes []int32 // indices into all, sorted by name
}

func newGraph(all []fleet.Node, o Options) *graph {
	g := &graph{o: o, all: all, nodes: make([]int32, 0, len(all))}
	for i := range all {
		if o.Filter.Match(&all[i]) {
			g.nodes = append(g.nodes, int32(i))
		}
	}
	if !slices.IsSortedFunc(g.nodes, g.cmpName) {
		slices.SortFunc(g.nodes, g.cmpName)
	}
	return g
}

func (g *graph) cmpName(a, b int32) int { return strings.Compare(g.all[a].Name, g.all[b].Name) }

type envRole struct{ env, role string }

// deps are the node-level dependencies. Without forRoles, edges holds
// (source<<32 | target) positions in g.nodes, sorted and de-duplicated. With
// forRoles (for roleFrames), edges is empty; byName holds the edges whose
// target was named by its node name and byRole the role names that resolved
// to at least one target node.
type deps struct {
	edges  []uint64
	byName []uint64
	byRole []roleDep
}

type roleDep struct {
	src  int32
	role string
}

func (g *graph) nodeEdges(forRoles bool) deps {
	pos := make(map[string]int32, len(g.nodes)) // name → position in g.nodes
	for p, i := range g.nodes {
		pos[g.all[i].Name] = int32(p)
	}
	// A depends_on entry names a node when some node, filtered out or not,
	// has that name: filtering must not turn a node dependency into a role
	// one.
	isNode := func(name string) bool { _, ok := pos[name]; return ok }
	if len(g.nodes) < len(g.all) {
		names := make(map[string]struct{}, len(g.all))
		for i := range g.all {
			names[g.all[i].Name] = struct{}{}
		}
		isNode = func(name string) bool { _, ok := names[name]; return ok }
	}
	members := map[envRole][]int32{}
	for p, i := range g.nodes {
		n := &g.all[i]
		for _, r := range n.Roles {
			k := envRole{n.Environment, r}
			members[k] = append(members[k], int32(p))
		}
	}
	// Sources are visited in order and each one's targets sorted and
	// de-duplicated on their own, so the whole list comes out sorted
	// without a global sort.
	var d deps
	if !forRoles {
		d.edges = make([]uint64, 0, 4*len(g.nodes))
	}
	var targets []int32
	add := func(src int32, k envRole) bool {
		hit := false
		for _, t := range members[k] {
			if t != src {
				targets = append(targets, t)
				hit = true
			}
		}
		return hit
	}
	for p, i := range g.nodes {
		src := int32(p)
		n := &g.all[i]
		targets = targets[:0]
		for _, dep := range n.DependsOn {
			role, prefixed := strings.CutPrefix(dep, RolePrefix)
			if !prefixed && isNode(dep) {
				if t, ok := pos[dep]; ok && t != src {
					targets = append(targets, t)
					if forRoles {
						d.byName = append(d.byName, uint64(src)<<32|uint64(t))
					}
				}
				continue
			}
			if add(src, envRole{n.Environment, role}) && forRoles {
				d.byRole = append(d.byRole, roleDep{src, role})
			}
		}
		for _, r := range n.Roles {
			for _, dep := range g.o.Config.DependsOn[r] {
				add(src, envRole{n.Environment, dep})
			}
		}
		if forRoles {
			continue
		}
		if len(targets) > 1 {
			slices.Sort(targets)
			targets = slices.Compact(targets)
		}
		for _, t := range targets {
			d.edges = append(d.edges, uint64(src)<<32|uint64(t))
		}
	}
	return d
}

// edgeFrame builds the edges frame from (source<<32|target) pairs indexing
// ids, which must be sorted.
func edgeFrame(pairs []uint64, ids []string) *data.Frame {
	src := make([]string, len(pairs))
	dst := make([]string, len(pairs))
	size := 0
	for k, e := range pairs {
		src[k], dst[k] = ids[e>>32], ids[uint32(e)]
		size += len(src[k]) + 2 + len(dst[k])
	}
	// One allocation for every id.
	a := arena{buf: make([]byte, 0, size)}
	spans := make([]span, len(pairs))
	for k := range pairs {
		m := a.mark()
		a.add(src[k])
		a.add("->")
		a.add(dst[k])
		spans[k] = a.span(m)
	}
	id := a.strings(spans)
	// (source, target) order is id order unless names hold bytes below '-'.
	if !slices.IsSorted(id) {
		perm := make([]int, len(id))
		for k := range perm {
			perm[k] = k
		}
		slices.SortFunc(perm, func(a, b int) int { return strings.Compare(id[a], id[b]) })
		id, src, dst = permute(id, perm), permute(src, perm), permute(dst, perm)
	}
	f := data.NewFrame("edges",
		data.NewField("id", nil, id),
		data.NewField("source", nil, src),
		data.NewField("target", nil, dst),
	)
	f.SetMeta(&data.FrameMeta{PreferredVisualization: data.VisTypeNodeGraph})
	return f
}

// arena builds many strings with one allocation: append to it, keep the
// spans, then cut them all out of one string.
type arena struct{ buf []byte }

type span struct{ from, to uint32 }

func (a *arena) mark() uint32          { return uint32(len(a.buf)) }
func (a *arena) span(from uint32) span { return span{from, uint32(len(a.buf))} }
func (a *arena) add(s string)          { a.buf = append(a.buf, s...) }

// joined appends ss joined by sep and returns their span.
func (a *arena) joined(ss []string, sep byte) span {
	m := a.mark()
	for k, s := range ss {
		if k > 0 {
			a.buf = append(a.buf, sep)
		}
		a.buf = append(a.buf, s...)
	}
	return a.span(m)
}

// done returns the buffer as a string, without a copy: the arena must not
// be used after.
func (a *arena) done() string {
	if len(a.buf) == 0 {
		return ""
	}
	s := unsafe.String(&a.buf[0], len(a.buf))
	a.buf = nil
	return s
}

// strings cuts every span out of the buffer; the arena must not be used
// after.
func (a *arena) strings(spans []span) []string {
	all := a.done()
	out := make([]string, len(spans))
	for k, sp := range spans {
		out[k] = all[sp.from:sp.to]
	}
	return out
}

// text is a string column whose values are either a given string or a
// span of the arena.
type text struct {
	vals  []string
	spans []span
}

func newText(n int) text { return text{vals: make([]string, n), spans: make([]span, n)} }

// final merges the spans into the values, cutting from all.
func (t text) final(all string) []string {
	for k, sp := range t.spans {
		if sp.to > sp.from {
			t.vals[k] = all[sp.from:sp.to]
		}
	}
	return t.vals
}

func permute(s []string, perm []int) []string {
	out := make([]string, len(s))
	for k, p := range perm {
		out[k] = s[p]
	}
	return out
}

func arcFields(success, failed, converging []float64) []*data.Field {
	arc := func(name, display, color string, v []float64) *data.Field {
		return data.NewField(name, nil, v).SetConfig(&data.FieldConfig{
			DisplayName: display,
			Color:       map[string]any{"mode": "fixed", "fixedColor": color},
		})
	}
	return []*data.Field{
		arc("arc__success", "Success", ColorSuccess, success),
		arc("arc__failed", "Failed", ColorFailed, failed),
		arc("arc__converging", "Converging", ColorConverging, converging),
	}
}

func (g *graph) nodeFrames() (*data.Frame, *data.Frame) {
	n := len(g.nodes)
	var (
		id        = make([]string, n)
		env       = make([]string, n)
		mainstat  = make([]string, n)
		secondary = make([]string, n)
		arcs      = make([]float64, 3*n)
		color     = make([]string, n)
		highlight = make([]bool, n)
		duration  = make([]string, n)

		// Built in one arena.
		a        = arena{buf: make([]byte, 0, 64*n)}
		subtitle = newText(n)
		roles    = newText(n)
		lastRun  = newText(n)
		lastErr  = newText(n)
		changed  = newText(n)
		failed   = newText(n)
		runList  = newText(n)
		alerts   = newText(n)
	)
	for p, i := range g.nodes {
		nd := &g.all[i]
		id[p] = nd.Name
		env[p] = nd.Environment
		if len(nd.Roles) == 1 {
			roles.vals[p] = nd.Roles[0]
		} else {
			roles.spans[p] = a.joined(nd.Roles, ',')
		}
		m := a.mark()
		a.add(nd.Environment)
		a.add(" / ")
		a.joined(nd.Roles, ',')
		subtitle.spans[p] = a.span(m)
		st := stateOf(nd)
		arcs[int(st)*n+p] = 1
		color[p] = stateColor[st]
		na := g.o.Alerts[nd.Name]
		highlight[p] = st == stFailed || len(na) > 0
		alerts.spans[p] = a.joined(na, ',')
		runList.spans[p] = a.joined(nd.RunList, ',')
		if lr := nd.Last; lr != nil {
			mainstat[p] = ago(g.o.Now.Sub(lr.End))
			secondary[p] = changedText(lr.Updated)
			m := a.mark()
			a.buf = lr.End.UTC().AppendFormat(a.buf, time.RFC3339)
			lastRun.spans[p] = a.span(m)
			duration[p] = lr.Duration.Round(time.Millisecond).String()
			if e := lr.Error; e != nil {
				m := a.mark()
				a.add(e.Class)
				if e.Class != "" && e.Message != "" {
					a.add(": ")
				}
				a.add(e.Message)
				lastErr.spans[p] = a.span(m)
			}
			changed.spans[p] = a.resources(lr.Changes)
			failed.spans[p] = a.resources(lr.Failures)
		} else {
			mainstat[p] = "never"
		}
	}
	all := a.done()
	fields := []*data.Field{
		data.NewField("id", nil, id),
		data.NewField("title", nil, id),
		data.NewField("subtitle", nil, subtitle.final(all)),
		data.NewField("mainstat", nil, mainstat).SetConfig(&data.FieldConfig{DisplayName: "Last run"}),
		data.NewField("secondarystat", nil, secondary).SetConfig(&data.FieldConfig{DisplayName: "Changed"}),
	}
	fields = append(fields, arcFields(arcs[:n], arcs[n:2*n], arcs[2*n:])...)
	fields = append(fields,
		data.NewField("color", nil, color),
		data.NewField("highlighted", nil, highlight),
		data.NewField("detail__environment", nil, env).SetConfig(&data.FieldConfig{DisplayName: "Environment"}),
		data.NewField("detail__roles", nil, roles.final(all)).SetConfig(&data.FieldConfig{DisplayName: "Roles"}),
		data.NewField("detail__last_run", nil, lastRun.final(all)).SetConfig(&data.FieldConfig{DisplayName: "Last run"}),
		data.NewField("detail__duration", nil, duration).SetConfig(&data.FieldConfig{DisplayName: "Duration"}),
		data.NewField("detail__last_error", nil, lastErr.final(all)).SetConfig(&data.FieldConfig{DisplayName: "Last error"}),
		data.NewField("detail__changed_resources", nil, changed.final(all)).SetConfig(&data.FieldConfig{DisplayName: "Changed resources"}),
		data.NewField("detail__failed_resources", nil, failed.final(all)).SetConfig(&data.FieldConfig{DisplayName: "Failed resources"}),
		data.NewField("detail__run_list", nil, runList.final(all)).SetConfig(&data.FieldConfig{DisplayName: "Run list"}),
		data.NewField("detail__alerts", nil, alerts.final(all)).SetConfig(&data.FieldConfig{DisplayName: "Firing alerts"}),
	)
	if g.o.Layout {
		x, y := g.layout()
		fields = append(fields, data.NewField("fixedX", nil, x), data.NewField("fixedY", nil, y))
	}
	nf := data.NewFrame("nodes", fields...)
	nf.SetMeta(&data.FrameMeta{PreferredVisualization: data.VisTypeNodeGraph})
	return nf, edgeFrame(g.nodeEdges(false).edges, id)
}

// Layout geometry, in the Node Graph panel's units (a node is 40 across).
const (
	cellStack = 10  // nodes stacked in one cell before it wraps to a new sub-column
	stepX     = 150 // between sub-columns
	stepY     = 100 // between stacked nodes
	gap       = 1   // empty steps between cells
)

// layout places every node: one column per environment (sorted), one row
// per role (sorted; a node sits in the row of its first role, NoRole for
// none), nodes stacked within a cell (by name), wrapping every cellStack
// nodes into another sub-column.
func (g *graph) layout() (x, y []float64) {
	type cell struct{ col, row int }
	envIdx, roleIdx := map[string]int{}, map[string]int{}
	var envs, rls []string
	rowOf := func(n *fleet.Node) string {
		if len(n.Roles) == 0 {
			return NoRole
		}
		return n.Roles[0]
	}
	for _, i := range g.nodes {
		n := &g.all[i]
		if !hasKey(envIdx, n.Environment) {
			envIdx[n.Environment] = 0
			envs = append(envs, n.Environment)
		}
		if r := rowOf(n); !hasKey(roleIdx, r) {
			roleIdx[r] = 0
			rls = append(rls, r)
		}
	}
	slices.Sort(envs)
	slices.Sort(rls)
	for k, e := range envs {
		envIdx[e] = k
	}
	for k, r := range rls {
		roleIdx[r] = k
	}
	count := make(map[cell]int)
	slot := make([]int, len(g.nodes))
	cols := make([]int, len(envs)) // sub-columns per environment
	rows := make([]int, len(rls))  // stacked nodes per role row
	for p, i := range g.nodes {
		n := &g.all[i]
		c := cell{envIdx[n.Environment], roleIdx[rowOf(n)]}
		slot[p] = count[c]
		count[c]++
		cols[c.col] = max(cols[c.col], (count[c]+cellStack-1)/cellStack)
		rows[c.row] = max(rows[c.row], min(count[c], cellStack))
	}
	colX := make([]float64, len(envs))
	for k, acc := 1, 0; k < len(envs); k++ {
		acc += cols[k-1] + gap
		colX[k] = float64(acc * stepX)
	}
	rowY := make([]float64, len(rls))
	for k, acc := 1, 0; k < len(rls); k++ {
		acc += rows[k-1] + gap
		rowY[k] = float64(acc * stepY)
	}
	x, y = make([]float64, len(g.nodes)), make([]float64, len(g.nodes))
	for p, i := range g.nodes {
		n := &g.all[i]
		c, s := envIdx[n.Environment], slot[p]
		x[p] = colX[c] + float64(s/cellStack*stepX)
		y[p] = rowY[roleIdx[rowOf(n)]] + float64(s%cellStack*stepY)
	}
	return x, y
}

// roleFrames groups the filtered nodes by role.
func (g *graph) roleFrames() (*data.Frame, *data.Frame) {
	type agg struct {
		nodes, failed, converging int
		alerts                    bool
	}
	roleOf := map[string]int{}
	var names []string
	var aggs []agg
	idOf := func(r string) int {
		k, ok := roleOf[r]
		if !ok {
			k = len(names)
			roleOf[r] = k
			names = append(names, r)
			aggs = append(aggs, agg{})
		}
		return k
	}
	nodeRoles := func(n *fleet.Node) []string {
		if len(n.Roles) == 0 {
			return []string{NoRole}
		}
		return n.Roles
	}
	for _, i := range g.nodes {
		n := &g.all[i]
		st := stateOf(n)
		al := len(g.o.Alerts[n.Name]) > 0
		for _, r := range nodeRoles(n) {
			a := &aggs[idOf(r)]
			a.nodes++
			a.failed += b2i(st == stFailed)
			a.converging += b2i(st == stConverging)
			a.alerts = a.alerts || al
		}
	}
	// Sort roles and renumber.
	order := make([]int, len(names))
	for k := range order {
		order[k] = k
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(names[a], names[b]) })
	rank := make([]int, len(names))
	for k, o := range order {
		rank[o] = k
	}

	// Role edges: a dependency named by node name joins every role of its
	// source to every role of its target; one named by role (depends_on
	// "role:X" or a bare role) joins every role of its source to that role,
	// when some node of it is shown in the source's environment. Plus every
	// topology file edge whose two roles are shown.
	var edges []uint64
	link := func(a, b string) {
		ka, oka := roleOf[a]
		kb, okb := roleOf[b]
		if oka && okb && ka != kb {
			edges = append(edges, uint64(rank[ka])<<32|uint64(rank[kb]))
		}
	}
	d := g.nodeEdges(true)
	for _, e := range d.byName {
		s, t := &g.all[g.nodes[e>>32]], &g.all[g.nodes[uint32(e)]]
		for _, r := range nodeRoles(s) {
			for _, tr := range nodeRoles(t) {
				link(r, tr)
			}
		}
	}
	for _, rd := range d.byRole {
		for _, r := range nodeRoles(&g.all[g.nodes[rd.src]]) {
			link(r, rd.role)
		}
	}
	for a, deps := range g.o.Config.DependsOn {
		for _, b := range deps {
			link(a, b)
		}
	}
	slices.Sort(edges)
	edges = slices.Compact(edges)

	n := len(names)
	var (
		id        = make([]string, n)
		subtitle  = make([]string, n)
		mainstat  = make([]string, n)
		secondary = make([]string, n)
		arcs      = make([]float64, 3*n)
		color     = make([]string, n)
		highlight = make([]bool, n)
		count     = make([]int64, n)
	)
	for k, o := range order {
		a := aggs[o]
		id[k] = names[o]
		subtitle[k] = plural(a.nodes, "node", "nodes")
		if e := g.o.Filter.Environment; e != "" {
			subtitle[k] = e + " / " + subtitle[k]
		}
		mainstat[k] = strconv.Itoa(a.failed) + " failed"
		secondary[k] = strconv.Itoa(a.converging) + " converging"
		total := float64(a.nodes)
		succ := a.nodes - a.failed - a.converging
		arcs[k] = float64(succ) / total
		arcs[n+k] = float64(a.failed) / total
		arcs[2*n+k] = float64(a.converging) / total
		switch {
		case a.failed > 0:
			color[k] = ColorFailed
		case a.converging > 0:
			color[k] = ColorConverging
		default:
			color[k] = ColorSuccess
		}
		highlight[k] = a.failed > 0 || a.alerts
		count[k] = int64(a.nodes)
	}
	fields := []*data.Field{
		data.NewField("id", nil, id),
		data.NewField("title", nil, id),
		data.NewField("subtitle", nil, subtitle),
		data.NewField("mainstat", nil, mainstat).SetConfig(&data.FieldConfig{DisplayName: "Failed"}),
		data.NewField("secondarystat", nil, secondary).SetConfig(&data.FieldConfig{DisplayName: "Converging"}),
	}
	fields = append(fields, arcFields(arcs[:n], arcs[n:2*n], arcs[2*n:])...)
	fields = append(fields,
		data.NewField("color", nil, color),
		data.NewField("highlighted", nil, highlight),
		data.NewField("detail__nodes", nil, count).SetConfig(&data.FieldConfig{DisplayName: "Nodes"}),
	)
	if g.o.Layout {
		// One column (the roles are not split by environment), one row per
		// role.
		x, y := make([]float64, n), make([]float64, n)
		for k := range y {
			y[k] = float64(k * (1 + gap) * stepY)
		}
		fields = append(fields, data.NewField("fixedX", nil, x), data.NewField("fixedY", nil, y))
	}
	nf := data.NewFrame("nodes", fields...)
	nf.SetMeta(&data.FrameMeta{PreferredVisualization: data.VisTypeNodeGraph})
	return nf, edgeFrame(edges, id)
}

func hasKey(m map[string]int, k string) bool { _, ok := m[k]; return ok }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// resources appends rs as Chef writes them, type[name], comma-joined.
func (a *arena) resources(rs []report.Resource) span {
	m := a.mark()
	for k, r := range rs {
		if k > 0 {
			a.buf = append(a.buf, ',')
		}
		a.buf = append(a.buf, r.Type...)
		a.buf = append(a.buf, '[')
		a.buf = append(a.buf, r.Name...)
		a.buf = append(a.buf, ']')
	}
	return a.span(m)
}

// Precomputed texts, so most nodes cost no allocation for their stats.
var (
	agoSec, agoMin, agoHour [60]string
	changedN                [256]string
)

func init() {
	for k := range 60 {
		s := strconv.Itoa(k)
		agoSec[k], agoMin[k], agoHour[k] = s+"s ago", s+"m ago", s+"h ago"
	}
	for k := range changedN {
		changedN[k] = strconv.Itoa(k) + " changed"
	}
}

// ago renders how long ago a run ended: "12s ago", "4m ago", "2h ago",
// "3d ago"; a run ending after now (clock skew) is "0s ago".
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return agoSec[0]
	case d < time.Minute:
		return agoSec[d/time.Second]
	case d < time.Hour:
		return agoMin[d/time.Minute]
	case d < 24*time.Hour:
		return agoHour[d/time.Hour]
	}
	return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d ago"
}

func changedText(n int) string {
	if n >= 0 && n < len(changedN) {
		return changedN[n]
	}
	return strconv.Itoa(n) + " changed"
}
