package plugin

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/topology"
)

// frameSets is what the browser's Node Graph panel checks of a frame pair:
// the ids of the nodes frame, the ends of the edges frame.
type frameSets struct {
	view  string
	nodes map[string]bool
	ends  []string // source and target of every edge
	pos   map[string][2]float64
}

func setsOf(t *testing.T, nodes, edges *data.Frame) frameSets {
	t.Helper()
	s := frameSets{nodes: map[string]bool{}, pos: map[string][2]float64{}, view: "node"}
	if _, i := nodes.FieldByName("detail__nodes"); i >= 0 {
		s.view = "role"
	}
	xf, _ := nodes.FieldByName("fixedX")
	yf, _ := nodes.FieldByName("fixedY")
	for i := range nodes.Rows() {
		id := nodes.Fields[0].At(i).(string)
		s.nodes[id] = true
		if xf != nil && yf != nil {
			s.pos[id] = [2]float64{xf.At(i).(float64), yf.At(i).(float64)}
		}
	}
	if edges.Rows() > 0 {
		src, _ := edges.FieldByName("source")
		dst, _ := edges.FieldByName("target")
		for i := range edges.Rows() {
			s.ends = append(s.ends, src.At(i).(string), dst.At(i).(string))
		}
	}
	return s
}

// missing lists the edge ends of e absent from n: what makes the Node
// Graph panel refuse the graph (public/app/plugins/panel/nodeGraph:
// dataErrors.ts, "edges reference missing nodes").
func missing(n, e frameSets) []string {
	var out []string
	for _, id := range e.ends {
		if !n.nodes[id] {
			out = append(out, id)
		}
	}
	return out
}

// browserStates enumerates every state the browser can be in, holding the
// latest nodes frame i and the latest edges frame j it was delivered (-1:
// none yet), when the two channels' packets of gens generations are
// delivered in any interleaving in which each channel is in order and
// both packets of generation k are delivered before either packet of
// generation k+1: the channels are less than a generation apart (they
// share the browser's one WebSocket connection, and generations are an
// interval apart). Each state is reported once.
func browserStates(gens int, visit func(i, j int)) {
	type state struct{ i, j int }
	seen := map[state]bool{}
	var walk func(s state)
	walk = func(s state) {
		if seen[s] {
			return
		}
		seen[s] = true
		visit(s.i, s.j)
		// Deliver the next nodes packet, or the next edges packet, if the
		// bound allows: generation k+1 only after both of k.
		if n := s.i + 1; n < gens && n <= s.j+1 {
			walk(state{n, s.j})
		}
		if n := s.j + 1; n < gens && n <= s.i+1 {
			walk(state{s.i, n})
		}
	}
	walk(state{-1, -1})
}

// churn drives a fleet through rounds of nodes appearing and expiring,
// with depends_on by name and by role, crossing groupByRoleAbove both
// ways (so the view switches between by node and by role), and calls
// round after each.
func churn(t *testing.T, inst *Instance, rounds int, round func(r int, now time.Time)) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 9))
	roles := []string{"web", "app", "db"}
	alive := map[string]report.Run{}
	start := time.Now().Add(-time.Hour)
	next := 0
	for r := range rounds {
		now := start.Add(time.Duration(r) * time.Second)
		// The fleet grows to about twice the threshold, then shrinks, twice.
		target := 4 + int(float64(2*inst.settings.GroupByRoleAbove)*float64(r%60)/60)
		if r%60 >= 30 {
			target = 4 + int(float64(2*inst.settings.GroupByRoleAbove)*float64(60-r%60)/60)
		}
		for name := range alive {
			if len(alive) > target || rng.IntN(6) == 0 {
				delete(alive, name) // stops reporting: expires below
			}
		}
		for len(alive) < target || rng.IntN(4) == 0 {
			name := fmt.Sprintf("n%04d", next)
			next++
			role := roles[rng.IntN(3)]
			var deps []string
			for other := range alive {
				if rng.IntN(4) == 0 {
					deps = append(deps, other)
				}
				break
			}
			if rng.IntN(2) == 0 {
				deps = append(deps, topology.RolePrefix+roles[rng.IntN(3)])
			}
			alive[name] = report.Run{Node: name, Environment: []string{"prod", "staging"}[rng.IntN(2)], Roles: []string{role},
				DependsOn: deps, Status: report.StatusSuccess, Kind: report.KindRun}
		}
		for name, run := range alive {
			run.ID, run.End = fmt.Sprintf("%s-%d", name, r), now
			inst.fleet.Apply(&run, now)
		}
		inst.fleet.Expire(now, 500*time.Millisecond) // gone: not heard from this round
		round(r, now)
	}
}

// The heart of issue #9: whatever order the two channels' packets reach
// the browser in, its latest edges frame never names a node its latest
// nodes frame lacks; and no pinned node moves while it is shown.
func TestLiveGenerationsFitTogether(t *testing.T) {
	inst, _ := bareInstance(t, Settings{GroupByRoleAbove: 12,
		Topology: topology.Config{DependsOn: map[string][]string{"web": {"app"}, "app": {"db"}}}})
	v, err := inst.view(topoFilter{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := v.attach(context.Background(), kindNodes, "A", "c")
	if err != nil {
		t.Fatal(err)
	}
	defer v.detach(s)
	var gens []frameSets
	take := func() {
		for {
			select {
			case g := <-s.ch:
				gens = append(gens, setsOf(t, g.nodes, g.edges))
			default:
				return
			}
		}
	}
	take()
	// The old design for comparison: both frames of each round built on
	// their own from the same snapshot.
	var naive []frameSets
	churn(t, inst, 240, func(r int, now time.Time) {
		v.tick(now)
		take()
		_, nodes := inst.snapshot()
		by := topology.ByNode
		if len(nodes) > 12 {
			by = topology.ByRole
		}
		n, e := topology.Frames(nodes, topology.Filter{}, topology.Options{GroupBy: by, Config: inst.settings.Topology, Now: now})
		naive = append(naive, setsOf(t, n, e))
	})
	views := map[string]int{}
	for _, g := range gens {
		views[g.view]++
	}
	if views["node"] == 0 || views["role"] == 0 || len(gens) < 240 {
		t.Fatalf("%d generations, views %v: the scenario does not switch views", len(gens), views)
	}

	bad := 0
	browserStates(len(gens), func(i, j int) {
		if i < 0 || j < 0 {
			return
		}
		if m := missing(gens[i], gens[j]); len(m) > 0 {
			if bad++; bad <= 5 {
				t.Errorf("nodes of generation %d (%s) with edges of generation %d (%s): edges name missing nodes %v",
					i, gens[i].view, j, gens[j].view, m)
			}
		}
	})
	if bad > 0 {
		t.Fatalf("%d browser states would be refused by the Node Graph panel", bad)
	}
	// The same check fails the old design: it would catch a regression.
	naiveBad := 0
	browserStates(len(naive), func(i, j int) {
		if i >= 0 && j >= 0 && len(missing(naive[i], naive[j])) > 0 {
			naiveBad++
		}
	})
	if naiveBad == 0 {
		t.Error("the scenario does not break frames built independently: it proves nothing")
	}
	t.Logf("%d generations (%v); the old design fails in %d browser states", len(gens), views, naiveBad)

	// Pinned and still: every node has a place, which it keeps from one
	// frame of its view to the next.
	moved := 0
	for k := 1; k < len(gens); k++ {
		a, b := gens[k-1], gens[k]
		if len(b.pos) != len(b.nodes) {
			t.Fatalf("generation %d: %d of %d nodes pinned", k, len(b.pos), len(b.nodes))
		}
		if a.view != b.view {
			continue
		}
		for id, p := range b.pos {
			if q, ok := a.pos[id]; ok && q != p {
				moved++
				if moved <= 3 {
					t.Errorf("generation %d: %s moved from %v to %v", k, id, q, p)
				}
			}
		}
	}
}

// Nodes that arrive get their edges one generation later, nodes that
// leave linger one generation without edges, and a change of view first
// repeats the nodes frame with no edges.
func TestLiveGenerationSteps(t *testing.T) {
	inst, _ := bareInstance(t, Settings{GroupByRoleAbove: 3, Topology: topology.Config{DependsOn: map[string][]string{"web": {"db"}}}})
	v, _ := inst.view(topoFilter{})
	s, err := v.attach(context.Background(), kindEdges, "A", "c")
	if err != nil {
		t.Fatal(err)
	}
	defer v.detach(s)
	next := func() frameSets {
		t.Helper()
		v.tick(time.Now())
		select {
		case g := <-s.ch:
			return setsOf(t, g.nodes, g.edges)
		default:
			t.Fatal("no generation")
			return frameSets{}
		}
	}
	<-s.ch // the first, empty
	applyRun(inst, "db-1", "prod", "db")
	applyRun(inst, "web-1", "prod", "web")
	g := next()
	if len(g.nodes) != 2 || len(g.ends) != 0 {
		t.Errorf("new nodes: %v, edge ends %v; want no edge yet", g.nodes, g.ends)
	}
	g = next()
	if !slices.Equal(g.ends, []string{"web-1", "db-1"}) {
		t.Errorf("second generation: edge ends %v", g.ends)
	}
	// db-1 leaves: it stays a generation, without its edge.
	inst.fleet.Expire(time.Now().Add(time.Hour), time.Minute)
	applyRun(inst, "web-1", "prod", "web")
	g = next()
	if !g.nodes["db-1"] || len(g.ends) != 0 {
		t.Errorf("after db-1 left: nodes %v, ends %v; want db-1 lingering, no edge", g.nodes, g.ends)
	}
	g = next()
	if g.nodes["db-1"] {
		t.Errorf("db-1 still shown two generations after it left")
	}
	// Over groupByRoleAbove: the node view once more without edges, then
	// roles.
	applyRun(inst, "db-1", "prod", "db")
	applyRun(inst, "db-2", "prod", "db")
	g = next()
	g = next() // web-1 → db-1, db-2 settled
	if g.view != "node" || len(g.ends) != 4 {
		t.Fatalf("before the switch: %s view, ends %v", g.view, g.ends)
	}
	applyRun(inst, "web-2", "prod", "web")
	g = next()
	if g.view != "node" || len(g.ends) != 0 || !g.nodes["db-1"] {
		t.Errorf("switch, step 1: %s view, ends %v; want the node frame again with no edges", g.view, g.ends)
	}
	g = next()
	if g.view != "role" || len(g.ends) != 0 {
		t.Errorf("switch, step 2: %s view, ends %v; want roles, no edge yet", g.view, g.ends)
	}
	g = next()
	if g.view != "role" || !slices.Equal(g.ends, []string{"web", "db"}) {
		t.Errorf("switch, step 3: %s view, ends %v", g.view, g.ends)
	}
}

// A node filter is matched once per node name for the view's life, not
// once per frame.
func TestLiveViewMatchesEachNameOnce(t *testing.T) {
	inst, _ := bareInstance(t, Settings{})
	for i := range 50 {
		applyRun(inst, fmt.Sprintf("web-%02d", i), "prod", "web")
	}
	v, _ := inst.view(topoFilter{Node: "web-[0-4].*"})
	s, _ := v.attach(context.Background(), kindNodes, "A", "c")
	defer v.detach(s)
	g := <-s.ch
	if g.nodes.Rows() != 50 {
		// web-00 … web-49 all start with web-0..4
		t.Fatalf("%d rows", g.nodes.Rows())
	}
	applyRun(inst, "web-50", "prod", "web")
	v.tick(time.Now())
	<-s.ch
	if n := len(v.match.memo); n != 51 {
		t.Errorf("memo holds %d names, want 51", n)
	}
}
