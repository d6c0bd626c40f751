package topology

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

type pos struct{ x, y float64 }

// positions reads fixedX/fixedY by id. Grafana's Node Graph panel takes
// fixed positions only when both fields are there and every value is a
// number (processNodes in public/app/plugins/panel/nodeGraph/utils.ts, from
// grafana/grafana#86643): so both must be, for every row.
func positions(t *testing.T, f *data.Frame) map[string]pos {
	t.Helper()
	ids := strs(t, f, "id")
	x, y := column(t, f, "fixedX"), column(t, f, "fixedY")
	out := map[string]pos{}
	seen := map[pos]string{}
	for i, id := range ids {
		xv, okx := x[i].(float64)
		yv, oky := y[i].(float64)
		if !okx || !oky {
			t.Fatalf("node %s: fixedX %v fixedY %v, want two numbers", id, x[i], y[i])
		}
		p := pos{xv, yv}
		if other, dup := seen[p]; dup {
			t.Fatalf("nodes %s and %s both at %v", other, id, p)
		}
		seen[p] = id
		out[id] = p
	}
	return out
}

func build(t *testing.T, nodes []fleet.Node, o Options) *Result {
	t.Helper()
	sel, err := Select(context.Background(), nodes, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Build(context.Background(), sel, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func layeredNode(name, env string, roles ...string) fleet.Node {
	return fleet.Node{Name: name, Environment: env, Roles: roles, Last: last(report.StatusSuccess, 0, 0)}
}

// Roles are layered by depth in the role graph (topology file and
// depends_on alike): web → app → db puts web's nodes above app's above
// db's, in each environment, and the environments' bands do not overlap.
func TestLayoutLayersByRoleDepth(t *testing.T) {
	cfg := Config{DependsOn: map[string][]string{"web": {"app"}}}
	var fl []fleet.Node
	for _, env := range []string{"prod", "staging"} {
		for i := range 3 {
			fl = append(fl, layeredNode(fmt.Sprintf("%s-web-%d", env, i), env, "base", "web"))
			app := layeredNode(fmt.Sprintf("%s-app-%d", env, i), env, "app")
			app.DependsOn = []string{"role:db"} // by depends_on, not the file
			fl = append(fl, app)
			fl = append(fl, layeredNode(fmt.Sprintf("%s-db-%d", env, i), env, "db"))
		}
		fl = append(fl, layeredNode(env+"-lonely", env)) // no role, no edge: top layer
	}
	r := build(t, fl, Options{Now: now, Config: cfg, Layout: NewLayout()})
	p := positions(t, r.Nodes)
	for _, env := range []string{"prod", "staging"} {
		for i := range 3 {
			w, a, d := p[fmt.Sprintf("%s-web-%d", env, i)], p[fmt.Sprintf("%s-app-%d", env, i)], p[fmt.Sprintf("%s-db-%d", env, i)]
			if !(w.y < a.y && a.y < d.y) {
				t.Errorf("%s: web %v app %v db %v: want web above app above db", env, w, a, d)
			}
		}
		if l, w := p[env+"-lonely"], p[env+"-web-0"]; l.y != w.y {
			t.Errorf("%s: node without roles at %v, want the top layer (web at %v)", env, l, w)
		}
	}
	// Environments apart: every prod node above every staging node (bands
	// are laid out sorted by environment first).
	var prodMax, stagingMin float64 = -1, 1e18
	for id, q := range p {
		if id[:4] == "prod" {
			prodMax = max(prodMax, q.y)
		} else {
			stagingMin = min(stagingMin, q.y)
		}
	}
	if prodMax >= stagingMin {
		t.Errorf("prod reaches y %v, staging starts at %v: environments overlap", prodMax, stagingMin)
	}
	// The primary role of web nodes is web (base has no edge).
	if p["prod-web-0"].y == p["prod-db-0"].y {
		t.Error("web and db in one layer")
	}
}

func TestRoleDepthsCycle(t *testing.T) {
	got := roleDepths([]string{"lone"}, [][2]string{{"lb", "a"}, {"a", "b"}, {"b", "a"}, {"b", "db"}, {"db", "db"}})
	want := map[string]int{"lone": 0, "lb": 0, "a": 1, "b": 1, "db": 2}
	for r, d := range want {
		if got[r] != d {
			t.Errorf("depth(%s) = %d, want %d (all: %v)", r, got[r], d, got)
		}
	}
}

// A node keeps its place while others appear and leave (lingering or
// not), new nodes take free places, and nothing ever shares a place, over
// many random rounds on one Layout.
func TestLayoutStableUnderChurn(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cfg := Config{DependsOn: map[string][]string{"web": {"app"}, "app": {"db"}}}
	roles := []string{"web", "app", "db"}
	l := NewLayout()
	present := map[string]fleet.Node{}
	var prev map[string]pos
	next := 0
	reused := 0
	for round := range 200 {
		// Some leave, some arrive.
		for name := range present {
			if rng.IntN(10) == 0 {
				delete(present, name)
			}
		}
		for range rng.IntN(8) {
			name := fmt.Sprintf("n%04d", next)
			next++
			present[name] = layeredNode(name, fmt.Sprintf("env-%d", rng.IntN(3)), roles[rng.IntN(3)])
		}
		var fl []fleet.Node
		for _, n := range present {
			fl = append(fl, n)
		}
		r := build(t, fl, Options{Now: now, Config: cfg, Layout: l})
		p := positions(t, r.Nodes)
		if l.Len() != len(p) {
			t.Fatalf("round %d: layout holds %d places for %d nodes", round, l.Len(), len(p))
		}
		free := map[pos]bool{}
		for id, q := range prev {
			if _, still := p[id]; !still {
				free[q] = true
			}
		}
		for id, q := range p {
			if old, ok := prev[id]; ok && old != q {
				t.Fatalf("round %d: %s moved from %v to %v", round, id, old, q)
			}
			if _, ok := prev[id]; !ok && free[q] {
				reused++
			}
		}
		prev = p
	}
	if reused == 0 {
		t.Error("no new node ever took a place a node left")
	}
}

// A node that appears takes the first free place of its band: the one a
// node left, not a new column.
func TestLayoutFreePlaceTaken(t *testing.T) {
	var fl []fleet.Node
	for i := range 25 {
		fl = append(fl, layeredNode(fmt.Sprintf("w%02d", i), "prod", "web"))
	}
	l := NewLayout()
	p1 := positions(t, build(t, fl, Options{Now: now, Layout: l}).Nodes)
	// 25 nodes: a band of 3 rows (about 10 wide), filled column by column.
	if p1["w00"] != (pos{0, 0}) || p1["w01"] != (pos{0, stepY}) || p1["w03"] != (pos{stepX, 0}) {
		t.Errorf("band fill: w00 %v w01 %v w03 %v", p1["w00"], p1["w01"], p1["w03"])
	}
	gone := p1["w07"]
	fl = slices.DeleteFunc(fl, func(n fleet.Node) bool { return n.Name == "w07" })
	fl = append(fl, layeredNode("x-new", "prod", "web"))
	p2 := positions(t, build(t, fl, Options{Now: now, Layout: l}).Nodes)
	if p2["x-new"] != gone {
		t.Errorf("new node at %v, want the place w07 left (%v)", p2["x-new"], gone)
	}
	// A new band goes below the others and does not overlap them.
	fl = append(fl, layeredNode("other", "test", "web"))
	p3 := positions(t, build(t, fl, Options{Now: now, Layout: l}).Nodes)
	if p3["other"].y <= 2*stepY {
		t.Errorf("new environment's band at %v overlaps the 3-row band above", p3["other"])
	}
}

// A fresh Layout lays out one frame the same way whatever the input order.
func TestLayoutDeterministic(t *testing.T) {
	fl := benchFleet(300)
	rev := slices.Clone(fl)
	slices.Reverse(rev)
	a := positions(t, build(t, fl, Options{Now: now, Config: benchConfig, Layout: NewLayout()}).Nodes)
	b := positions(t, build(t, rev, Options{Now: now, Config: benchConfig, Layout: NewLayout()}).Nodes)
	for id, q := range a {
		if b[id] != q {
			t.Fatalf("%s at %v and %v", id, q, b[id])
		}
	}
}

// The by-role view is pinned the same way: layers by depth, stable.
func TestLayoutByRole(t *testing.T) {
	cfg := Config{DependsOn: map[string][]string{"web": {"app"}, "app": {"db"}}}
	fl := []fleet.Node{layeredNode("w", "prod", "web"), layeredNode("a", "prod", "app"), layeredNode("d", "prod", "db")}
	l := NewLayout()
	p := positions(t, build(t, fl, Options{Now: now, Config: cfg, GroupBy: ByRole, Layout: l}).Nodes)
	if !(p["web"].y < p["app"].y && p["app"].y < p["db"].y) {
		t.Errorf("role positions %v: want web above app above db", p)
	}
	fl = append(fl, layeredNode("c", "prod", "cache"))
	p2 := positions(t, build(t, fl, Options{Now: now, Config: cfg, GroupBy: ByRole, Layout: l}).Nodes)
	for _, r := range []string{"web", "app", "db"} {
		if p2[r] != p[r] {
			t.Errorf("%s moved from %v to %v when cache appeared", r, p[r], p2[r])
		}
	}
	if p2["cache"].y != p["web"].y {
		t.Errorf("cache (no edges) at %v, want the top layer", p2["cache"])
	}
}
