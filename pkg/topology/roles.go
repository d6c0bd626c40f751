package topology

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/fleet"
)

func nodeRoles(n *fleet.Node) []string {
	if len(n.Roles) == 0 {
		return []string{NoRole}
	}
	return n.Roles
}

// roleFrames groups the shown nodes by role. A role's figures count its
// live nodes; a role with none left is shown (one more generation) with
// the figures of its lingering nodes, and takes part in no edge.
func (g *graph) roleFrames(ctx context.Context) (*Result, error) {
	type agg struct {
		nodes, failed, converging int
		alerts                    bool
		live                      bool   // has a live node
		env                       string // of its nodes, "" once they are in several
		envSet                    bool
		suspects                  int    // nodes with a suspect change
		suspect                   string // the first one's
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
	// Live nodes first; then lingering ones, counted only in roles no live
	// node has.
	for pass := range 2 {
		lingerPass := pass == 1
		for p, n := range g.rows {
			if p%ctxCheckEvery == 0 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if g.live[p] == lingerPass {
				continue
			}
			st := stateOf(n)
			al := len(g.o.Alerts[n.Name]) > 0
			sus := g.o.Suspects[n.Name]
			for _, r := range nodeRoles(n) {
				a := &aggs[idOf(r)]
				if lingerPass && a.live {
					continue
				}
				a.live = a.live || !lingerPass
				a.nodes++
				a.failed += b2i(st == stFailed)
				a.converging += b2i(st == stConverging)
				a.alerts = a.alerts || al
				if sus != "" {
					if a.suspects == 0 {
						a.suspect = sus
					}
					a.suspects++
				}
				if !a.envSet {
					a.env, a.envSet = n.Environment, true
				} else if a.env != n.Environment {
					a.env = ""
				}
			}
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

	// Role edges (roleLinks), between roles with live nodes.
	var edges []uint64
	link := func(a, b string) {
		ka, oka := roleOf[a]
		kb, okb := roleOf[b]
		if oka && okb && ka != kb && aggs[ka].live && aggs[kb].live {
			edges = append(edges, uint64(rank[ka])<<32|uint64(rank[kb]))
		}
	}
	links, err := g.roleLinks(ctx)
	if err != nil {
		return nil, err
	}
	for _, lk := range links {
		link(lk[0], lk[1])
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
		live       = make([]bool, n)
		suspect    = make([]string, n)
	)
	lingering := 0
	for k, o := range order {
		a := aggs[o]
		id[k] = names[o]
		live[k] = a.live
		if !a.live {
			lingering++
		}
		// The environment when all its nodes are in one.
		subtitle[k] = plural(a.nodes, "node", "nodes")
		if a.env != "" {
			subtitle[k] = a.env + " / " + subtitle[k]
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
		highlight[k] = a.failed > 0 || a.alerts || a.suspects > 0
		switch {
		case a.suspects == 1:
			suspect[k] = a.suspect
		case a.suspects > 1:
			// The first node's, by name; the others may name other sets.
			suspect[k] = plural(a.suspects, "suspect node", "suspect nodes") + ", first: " + a.suspect
		}
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
	if g.o.Suspects != nil {
		fields = append(fields, data.NewField("detail__suspect", nil, suspect).SetConfig(&data.FieldConfig{DisplayName: "Suspect change"}))
	}
	if g.o.Layout != nil {
		x, y := g.o.Layout.placeRoles(id, edges)
		fields = append(fields, x, y)
	}
	nf := data.NewFrame("nodes", fields...)
	nf.SetMeta(&data.FrameMeta{PreferredVisualization: data.VisTypeNodeGraph})
	edges, withheld := keepSettled(edges, g.edgeEnds(id, func(k int) bool { return live[k] }))
	return &Result{Nodes: nf, Edges: edgeFrame(edges, id), IDs: id, Withheld: withheld, Lingering: lingering}, nil
}

// roleLinks are the role-level dependencies of the live rows (with
// repeats): a dependency named by node name links every role of its
// source to every role of its target; one named by role (depends_on
// "role:X" or a bare role) links every role of its source to that role,
// when some node of it is shown in the source's environment; plus every
// topology file entry.
func (g *graph) roleLinks(ctx context.Context) ([][2]string, error) {
	d, err := g.nodeEdges(ctx, true)
	if err != nil {
		return nil, err
	}
	var links [][2]string
	for _, e := range d.byName {
		s, t := g.rows[e>>32], g.rows[uint32(e)]
		for _, r := range nodeRoles(s) {
			for _, tr := range nodeRoles(t) {
				links = append(links, [2]string{r, tr})
			}
		}
	}
	for _, rd := range d.byRole {
		for _, r := range nodeRoles(g.rows[rd.src]) {
			links = append(links, [2]string{r, rd.role})
		}
	}
	for a, deps := range g.o.Config.DependsOn {
		for _, b := range deps {
			links = append(links, [2]string{a, b})
		}
	}
	return links, nil
}
