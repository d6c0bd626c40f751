package topology

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

func TestSelectAsksTheNodeFilterOncePerNode(t *testing.T) {
	fl := benchFleet(100)
	calls := map[string]int{}
	sel, err := Select(context.Background(), fl, Filter{Node: func(name string) bool {
		calls[name]++
		return strings.HasSuffix(name, "1")
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 100 {
		t.Fatalf("asked about %d nodes, want 100", len(calls))
	}
	for name, n := range calls {
		if n != 1 {
			t.Fatalf("asked %d times about %s", n, name)
		}
	}
	if sel.Len() != 10 {
		t.Errorf("selected %d, want 10", sel.Len())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Select(ctx, fl, Filter{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Select: %v", err)
	}
	if _, err := Build(ctx, sel, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Build: %v", err)
	}
}

func TestFilterLists(t *testing.T) {
	web := &fleet.Node{Name: "w", Environment: "prod", Roles: []string{"base", "web"}}
	bare := &fleet.Node{Name: "b", Environment: "dev"}
	for _, c := range []struct {
		f    Filter
		n    *fleet.Node
		want bool
	}{
		{Filter{}, web, true},
		{Filter{Environments: []string{"dev", "prod"}}, web, true},
		{Filter{Environments: []string{"dev", "staging"}}, web, false},
		{Filter{Roles: []string{"db", "web"}}, web, true},
		{Filter{Roles: []string{"db"}}, web, false},
		{Filter{Roles: []string{"db", NoRole}}, bare, true},
		{Filter{Roles: []string{"web"}}, bare, false},
	} {
		if got := c.f.Match(c.n); got != c.want {
			t.Errorf("%+v.Match(%s) = %v", c.f, c.n.Name, got)
		}
	}
}

// Lingering nodes are shown but in no edge, neither as source nor as
// target; a lingering node also selected is shown once, as selected.
func TestLingerShownWithoutEdges(t *testing.T) {
	cfg := Config{DependsOn: map[string][]string{"web": {"db"}}}
	live := []fleet.Node{layeredNode("web-1", "prod", "web"), layeredNode("db-1", "prod", "db")}
	gone := []fleet.Node{layeredNode("db-0", "prod", "db"), layeredNode("web-0", "prod", "web"), layeredNode("web-1", "prod", "web")}
	gone[0].Last = last(report.StatusFailure, 0, 0)
	r := build(t, live, Options{Now: now, Config: cfg, Linger: gone})
	if got := strs(t, r.Nodes, "id"); !reflect.DeepEqual(got, []string{"db-0", "db-1", "web-0", "web-1"}) {
		t.Errorf("ids %v", got)
	}
	if got := edgeIDs(t, r.Edges); !reflect.DeepEqual(got, []string{"web-1->db-1"}) {
		t.Errorf("edges %v, want only between live nodes", got)
	}
	if r.Lingering != 2 || !reflect.DeepEqual(r.IDs, strs(t, r.Nodes, "id")) {
		t.Errorf("lingering %d, ids %v", r.Lingering, r.IDs)
	}

	// ByRole: a role shown only for lingering nodes has their figures and
	// no edge; a live role counts only its live nodes.
	live = []fleet.Node{layeredNode("web-1", "prod", "web")}
	r = build(t, live, Options{Now: now, Config: cfg, GroupBy: ByRole, Linger: gone})
	if got := strs(t, r.Nodes, "id"); !reflect.DeepEqual(got, []string{"db", "web"}) {
		t.Errorf("role ids %v", got)
	}
	if got := column(t, r.Nodes, "detail__nodes"); !reflect.DeepEqual(got, []any{int64(1), int64(1)}) {
		t.Errorf("role counts %v, want db 1 (lingering db-0) and web 1 (live web-1 only)", got)
	}
	if got := strs(t, r.Nodes, "color"); got[0] != ColorFailed {
		t.Errorf("lingering db role color %v", got)
	}
	if r.Edges.Rows() != 0 || r.Lingering != 1 {
		t.Errorf("edges %v, lingering %d", edgeIDs(t, r.Edges), r.Lingering)
	}
}

func TestSettledAndNoEdges(t *testing.T) {
	cfg := Config{DependsOn: map[string][]string{"web": {"db"}}}
	fl := []fleet.Node{layeredNode("web-1", "prod", "web"), layeredNode("web-2", "prod", "web"), layeredNode("db-1", "prod", "db")}
	settled := func(id string) bool { return id != "web-2" }
	r := build(t, fl, Options{Now: now, Config: cfg, Settled: settled})
	if got := edgeIDs(t, r.Edges); !reflect.DeepEqual(got, []string{"web-1->db-1"}) || r.Withheld != 1 {
		t.Errorf("edges %v withheld %d, want web-2's edge withheld", got, r.Withheld)
	}
	r = build(t, fl, Options{Now: now, Config: cfg, NoEdges: true})
	if r.Edges.Rows() != 0 || r.Withheld != 2 || r.Nodes.Rows() != 3 {
		t.Errorf("NoEdges: %d edges, %d withheld, %d nodes", r.Edges.Rows(), r.Withheld, r.Nodes.Rows())
	}
	r = build(t, fl, Options{Now: now, Config: cfg, GroupBy: ByRole, Settled: func(id string) bool { return id != "db" }})
	if r.Edges.Rows() != 0 || r.Withheld != 1 {
		t.Errorf("ByRole settled: %v withheld %d", edgeIDs(t, r.Edges), r.Withheld)
	}
}

func TestLeanFrames(t *testing.T) {
	fl := testFleet()
	fl[0].Last.Error.Message = strings.Repeat("é", 300)
	r := build(t, fl, Options{Now: now, Config: testConfig, Lean: true})
	for _, f := range r.Nodes.Fields {
		switch f.Name {
		case "detail__changed_resources", "detail__failed_resources", "detail__run_list",
			"detail__environment", "detail__roles", "detail__last_run":
			t.Errorf("lean frame has %s", f.Name)
		}
	}
	errs := strs(t, r.Nodes, "detail__last_error")
	e := errs[len(errs)-1] // web-2
	if len(e) > leanErrorBytes || !strings.HasSuffix(e, "…") || !strings.HasPrefix(e, "Chef::Exceptions::Exec: é") || !utf8.ValidString(e) {
		t.Errorf("lean error %q (%d bytes)", e, len(e))
	}
	full := build(t, fl, Options{Now: now, Config: testConfig})
	if len(full.Nodes.Fields) != len(r.Nodes.Fields)+6 {
		t.Errorf("full frame %d fields, lean %d", len(full.Nodes.Fields), len(r.Nodes.Fields))
	}
}

func TestMaxEdges(t *testing.T) {
	fl := benchFleet(400)
	sel, _ := Select(context.Background(), fl, Filter{})
	full, err := Build(context.Background(), sel, Options{Now: now, Config: benchConfig})
	if err != nil || full.Edges.Rows() == 0 {
		t.Fatalf("%v, %d edges", err, full.Edges.Rows())
	}
	if _, err := Build(context.Background(), sel, Options{Now: now, Config: benchConfig, MaxEdges: full.Edges.Rows() / 2}); !errors.Is(err, ErrTooManyEdges) {
		t.Errorf("MaxEdges: %v", err)
	}
	if _, err := Build(context.Background(), sel, Options{Now: now, Config: benchConfig, GroupBy: ByRole, MaxEdges: 1}); err != nil {
		t.Errorf("ByRole has few edges whatever MaxEdges: %v", err)
	}
}
