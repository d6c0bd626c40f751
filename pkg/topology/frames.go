package topology

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

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
	n := len(g.nodes)
	pos := make(map[string]int32, n) // name → position in g.nodes
	for p, i := range g.nodes {
		pos[g.all[i].Name] = int32(p)
	}
	// A depends_on entry names a node when some node, filtered out or not,
	// has that name: filtering must not turn a node dependency into a role
	// one.
	var names map[string]struct{}
	if n < len(g.all) {
		names = make(map[string]struct{}, len(g.all))
		for i := range g.all {
			names[g.all[i].Name] = struct{}{}
		}
	}
	isNode := func(name string) (int32, bool) {
		t, ok := pos[name]
		if !ok && names != nil {
			_, named := names[name]
			return -1, named
		}
		return t, ok
	}

	// Role groups: each (environment, role) gets a number, and its members
	// (positions, ascending) are one range of a single array, filled by a
	// counting sort, rather than a map of slices grown one append at a time.
	groupOf := make(map[envRole]int32)
	slots := make([]int32, 0, 2*n) // group of every (node, role), in node order
	for _, i := range g.nodes {
		nd := &g.all[i]
		for _, r := range nd.Roles {
			k := envRole{nd.Environment, r}
			gi, ok := groupOf[k]
			if !ok {
				gi = int32(len(groupOf))
				groupOf[k] = gi
			}
			slots = append(slots, gi)
		}
	}
	start := make([]int32, len(groupOf)+1)
	for _, gi := range slots {
		start[gi+1]++
	}
	for k := 1; k < len(start); k++ {
		start[k] += start[k-1]
	}
	members := make([]int32, len(slots))
	next := slices.Clone(start[:len(groupOf)])
	slot := 0
	for p, i := range g.nodes {
		for range g.all[i].Roles {
			gi := slots[slot]
			members[next[gi]] = int32(p)
			next[gi]++
			slot++
		}
	}
	group := func(gi int32) []int32 { return members[start[gi]:start[gi+1]] }

	// First pass: resolve every source's depends_on and topology file
	// entries to what they name, with no string left: a position (>= 0) or
	// a group (^group, < 0), each group once per source. It also bounds the
	// number of edges, so the second pass appends to a slice that never
	// grows. roleFrames needs only byName and byRole.
	var d deps
	var resolved, resolvedEnd, seen []int32
	if !forRoles {
		resolved = make([]int32, 0, 4*n)
		resolvedEnd = make([]int32, n)
		seen = make([]int32, len(groupOf)) // source+1 that last named the group
	}
	bound := 0
	addGroup := func(src int32, k envRole) bool {
		gi, ok := groupOf[k]
		if !ok {
			return false
		}
		m := group(gi) // never empty, ascending
		if m[0] == src && m[len(m)-1] == src {
			return false // names no node but the source itself
		}
		if !forRoles && seen[gi] != src+1 {
			seen[gi] = src + 1
			resolved = append(resolved, ^gi)
			bound += len(m)
		}
		return true
	}
	for p, i := range g.nodes {
		src := int32(p)
		nd := &g.all[i]
		for _, dep := range nd.DependsOn {
			role, prefixed := strings.CutPrefix(dep, RolePrefix)
			if !prefixed {
				if t, ok := isNode(dep); ok {
					if t >= 0 && t != src {
						if forRoles {
							d.byName = append(d.byName, uint64(src)<<32|uint64(t))
						} else {
							resolved = append(resolved, t)
							bound++
						}
					}
					continue
				}
			}
			if addGroup(src, envRole{nd.Environment, role}) && forRoles {
				d.byRole = append(d.byRole, roleDep{src, role})
			}
		}
		for _, r := range nd.Roles {
			for _, dep := range g.o.Config.DependsOn[r] {
				addGroup(src, envRole{nd.Environment, dep})
			}
		}
		if !forRoles {
			resolvedEnd[p] = int32(len(resolved))
		}
	}
	if forRoles {
		return d
	}

	// Second pass: expand to (source<<32|target) pairs. Sources are
	// visited in order and each one's targets sorted and de-duplicated on
	// their own, so the whole list comes out sorted without a global sort.
	d.edges = make([]uint64, 0, bound)
	var targets []int32
	from := int32(0)
	for p := range n {
		src := int32(p)
		targets = targets[:0]
		for _, r := range resolved[from:resolvedEnd[p]] {
			if r >= 0 {
				targets = append(targets, r)
				continue
			}
			for _, t := range group(^r) {
				if t != src {
					targets = append(targets, t)
				}
			}
		}
		from = resolvedEnd[p]
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
	n := len(pairs)
	idField, id := newColumn[string]("id", n)
	srcField, src := newColumn[string]("source", n)
	dstField, dst := newColumn[string]("target", n)
	// Every id in the arena: sized for ids of average length, so usually
	// one allocation.
	idBytes := 0
	for _, s := range ids {
		idBytes += len(s)
	}
	a := newArena(n * (2*idBytes/max(len(ids), 1) + len("->")))
	sorted := true
	for k, e := range pairs {
		src[k], dst[k] = ids[e>>32], ids[uint32(e)]
		a.add(src[k])
		a.add("->")
		a.add(dst[k])
		id[k] = a.take()
		// (source, target) order is usually id order, but not always:
		// source "a" sorts before "a-0", id "a->x" after "a-0->y". Within
		// one source ids sort as their targets do, so only a change of
		// source can break the order: compare there only.
		if k > 0 && e>>32 != pairs[k-1]>>32 && id[k-1] > id[k] {
			sorted = false
		}
	}
	if !sorted {
		perm := make([]int, n)
		for k := range perm {
			perm[k] = k
		}
		slices.SortFunc(perm, func(a, b int) int { return strings.Compare(id[a], id[b]) })
		permute(id, perm)
		permute(src, perm)
		permute(dst, perm)
	}
	f := data.NewFrame("edges", idField, srcField, dstField)
	f.SetMeta(&data.FrameMeta{PreferredVisualization: data.VisTypeNodeGraph})
	return f
}

// permute reorders s in place so that s[k] becomes the old s[perm[k]].
func permute(s []string, perm []int) {
	old := slices.Clone(s)
	for k, p := range perm {
		s[k] = old[p]
	}
}

// arcColumns makes the three arc fields (success, failed, converging) of n
// values each, indexed by state, to be filled in place.
func arcColumns(n int) ([]*data.Field, [3][]float64) {
	var vals [3][]float64
	fields := make([]*data.Field, 3)
	for st, a := range []struct{ name, display, color string }{
		stSuccess:    {"arc__success", "Success", ColorSuccess},
		stFailed:     {"arc__failed", "Failed", ColorFailed},
		stConverging: {"arc__converging", "Converging", ColorConverging},
	} {
		fields[st], vals[st] = newColumn[float64](a.name, n)
		fields[st].SetConfig(&data.FieldConfig{
			DisplayName: a.display,
			Color:       map[string]any{"mode": "fixed", "fixedColor": a.color},
		})
	}
	return fields, vals
}

func display(name string) *data.FieldConfig { return &data.FieldConfig{DisplayName: name} }

func (g *graph) nodeFrames() (*data.Frame, *data.Frame) {
	n := len(g.nodes)
	// Every column is the field's own storage (see newColumn), and every
	// built string is cut from the arena: no per-row allocation.
	var (
		idF, id               = newColumn[string]("id", n)
		titleF, title         = newColumn[string]("title", n)
		subtitleF, subtitle   = newColumn[string]("subtitle", n)
		mainstatF, mainstat   = newColumn[string]("mainstat", n)
		secondaryF, secondary = newColumn[string]("secondarystat", n)
		arcF, arcs            = arcColumns(n)
		colorF, color         = newColumn[string]("color", n)
		highlightF, highlight = newColumn[bool]("highlighted", n)
		envF, env             = newColumn[string]("detail__environment", n)
		rolesF, roles         = newColumn[string]("detail__roles", n)
		lastRunF, lastRun     = newColumn[string]("detail__last_run", n)
		durationF, duration   = newColumn[string]("detail__duration", n)
		lastErrF, lastErr     = newColumn[string]("detail__last_error", n)
		changedF, changed     = newColumn[string]("detail__changed_resources", n)
		failedF, failed       = newColumn[string]("detail__failed_resources", n)
		runListF, runList     = newColumn[string]("detail__run_list", n)
		alertsF, alerts       = newColumn[string]("detail__alerts", n)

		// About what a node with a run and two roles takes; more chunks
		// follow if needed.
		a = newArena(128 * n)
	)
	for p, i := range g.nodes {
		nd := &g.all[i]
		id[p] = nd.Name
		env[p] = nd.Environment
		if len(nd.Roles) == 1 {
			roles[p] = nd.Roles[0]
		} else {
			a.joined(nd.Roles, ',')
			roles[p] = a.take()
		}
		a.add(nd.Environment)
		a.add(" / ")
		a.joined(nd.Roles, ',')
		subtitle[p] = a.take()
		st := stateOf(nd)
		arcs[st][p] = 1
		color[p] = stateColor[st]
		na := g.o.Alerts[nd.Name]
		highlight[p] = st == stFailed || len(na) > 0
		a.joined(na, ',')
		alerts[p] = a.take()
		a.joined(nd.RunList, ',')
		runList[p] = a.take()
		if lr := nd.Last; lr != nil {
			mainstat[p] = ago(g.o.Now.Sub(lr.End))
			secondary[p] = changedText(lr.Updated)
			a.grow(len(time.RFC3339) + 16) // room for years past 9999 too
			a.buf = lr.End.UTC().AppendFormat(a.buf, time.RFC3339)
			lastRun[p] = a.take()
			// Copied into the arena, the String result does not escape:
			// the compiler keeps it on the stack (String is inlined for
			// that), which saves an allocation per node.
			a.add(lr.Duration.Round(time.Millisecond).String())
			duration[p] = a.take()
			if e := lr.Error; e != nil {
				a.add(e.Class)
				if e.Class != "" && e.Message != "" {
					a.add(": ")
				}
				a.add(e.Message)
				lastErr[p] = a.take()
			}
			a.resources(lr.Changes)
			changed[p] = a.take()
			a.resources(lr.Failures)
			failed[p] = a.take()
		} else {
			mainstat[p] = "never"
		}
	}
	copy(title, id)
	fields := []*data.Field{
		idF,
		titleF,
		subtitleF,
		mainstatF.SetConfig(display("Last run")),
		secondaryF.SetConfig(display("Changed")),
	}
	fields = append(fields, arcF...)
	fields = append(fields,
		colorF,
		highlightF,
		envF.SetConfig(display("Environment")),
		rolesF.SetConfig(display("Roles")),
		lastRunF.SetConfig(display("Last run")),
		durationF.SetConfig(display("Duration")),
		lastErrF.SetConfig(display("Last error")),
		changedF.SetConfig(display("Changed resources")),
		failedF.SetConfig(display("Failed resources")),
		runListF.SetConfig(display("Run list")),
		alertsF.SetConfig(display("Firing alerts")),
	)
	if g.o.Layout {
		fields = append(fields, g.layout()...)
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
// nodes into another sub-column. It returns the fixedX and fixedY fields.
func (g *graph) layout() []*data.Field {
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
	xF, x := newColumn[float64]("fixedX", len(g.nodes))
	yF, y := newColumn[float64]("fixedY", len(g.nodes))
	for p, i := range g.nodes {
		n := &g.all[i]
		c, s := envIdx[n.Environment], slot[p]
		x[p] = colX[c] + float64(s/cellStack*stepX)
		y[p] = rowY[roleIdx[rowOf(n)]] + float64(s%cellStack*stepY)
	}
	return []*data.Field{xF, yF}
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
		id         = make([]string, n)
		subtitle   = make([]string, n)
		mainstat   = make([]string, n)
		secondary  = make([]string, n)
		arcF, arcs = arcColumns(n)
		color      = make([]string, n)
		highlight  = make([]bool, n)
		count      = make([]int64, n)
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
		arcs[stSuccess][k] = float64(succ) / total
		arcs[stFailed][k] = float64(a.failed) / total
		arcs[stConverging][k] = float64(a.converging) / total
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
	fields = append(fields, arcF...)
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
