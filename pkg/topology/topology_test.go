package topology

import (
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

var now = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func last(status report.Status, ago time.Duration, updated int) *fleet.LastRun {
	return &fleet.LastRun{
		ID: "r", Status: status, Start: now.Add(-ago - time.Minute), End: now.Add(-ago),
		Duration: time.Minute, Updated: updated,
	}
}

// testFleet: prod has web-1 → app-1 → db-1 and web-1 → cache-1; staging has
// web-2 → app-2 (and no db for app-2's topology-file edge).
func testFleet() []fleet.Node {
	web1 := fleet.Node{Name: "web-1", Environment: "prod", Roles: []string{"base", "web"},
		RunList: []string{"role[base]", "role[web]"}, DependsOn: []string{"cache-1", "role:app"},
		Last: last(report.StatusSuccess, 4*time.Minute+30*time.Second, 3)}
	web1.Last.Changes = []report.Resource{{Type: "file", Name: "/a"}, {Type: "package", Name: "nginx"}}
	web2 := fleet.Node{Name: "web-2", Environment: "staging", Roles: []string{"web"}, DependsOn: []string{"app"},
		Last: last(report.StatusFailure, 2*time.Hour+5*time.Minute, 0)}
	web2.Last.Error = &report.RunError{Class: "Chef::Exceptions::Exec", Message: "boom"}
	web2.Last.Failures = []report.Resource{{Type: "execute", Name: "migrate"}}
	web2.Last.Duration = 1500 * time.Millisecond
	app1 := fleet.Node{Name: "app-1", Environment: "prod", Roles: []string{"app"}, DependsOn: []string{"db-1"},
		Last: last(report.StatusFailure, 3*24*time.Hour, 1), Converging: true, ConvergingSince: now.Add(-time.Minute)}
	app2 := fleet.Node{Name: "app-2", Environment: "staging", Roles: []string{"app"}, Converging: true}
	db1 := fleet.Node{Name: "db-1", Environment: "prod", Roles: []string{"db"}, DependsOn: []string{"db-1", "role:db"},
		Last: last(report.StatusSuccess, 10*time.Second, 0)}
	cache1 := fleet.Node{Name: "cache-1", Environment: "prod", Roles: []string{"cache"},
		Last: last(report.StatusSuccess, time.Minute, 300)}
	// Deliberately unsorted.
	return []fleet.Node{web2, db1, app1, web1, cache1, app2}
}

var testConfig = Config{DependsOn: map[string][]string{"app": {"db"}}}

func column(t *testing.T, f *data.Frame, name string) []any {
	t.Helper()
	fl, idx := f.FieldByName(name)
	if idx < 0 {
		t.Fatalf("frame %q has no field %q", f.Name, name)
	}
	out := make([]any, fl.Len())
	for i := range out {
		out[i] = fl.At(i)
	}
	return out
}

func strs(t *testing.T, f *data.Frame, name string) []string {
	t.Helper()
	var out []string
	for _, v := range column(t, f, name) {
		out = append(out, v.(string))
	}
	return out
}

func edgeIDs(t *testing.T, f *data.Frame) []string {
	t.Helper()
	if f.Rows() == 0 {
		return nil
	}
	ids, src, dst := strs(t, f, "id"), strs(t, f, "source"), strs(t, f, "target")
	for i, id := range ids {
		if want := src[i] + "->" + dst[i]; id != want {
			t.Fatalf("edge id %q, want %q", id, want)
		}
	}
	return ids
}

func checkMeta(t *testing.T, f *data.Frame, name string) {
	t.Helper()
	if f.Name != name || f.Meta == nil || f.Meta.PreferredVisualization != data.VisTypeNodeGraph {
		t.Fatalf("frame %q meta %+v, want name %q nodeGraph", f.Name, f.Meta, name)
	}
}

func TestFramesByNodeFields(t *testing.T) {
	nodes, edges := Frames(testFleet(), Filter{}, Options{Now: now, Config: testConfig,
		Alerts: map[string][]string{"db-1": {"DiskFull", "HighLoad"}}})
	checkMeta(t, nodes, "nodes")
	checkMeta(t, edges, "edges")

	want := map[string][]any{
		"id":                  {"app-1", "app-2", "cache-1", "db-1", "web-1", "web-2"},
		"title":               {"app-1", "app-2", "cache-1", "db-1", "web-1", "web-2"},
		"subtitle":            {"prod / app", "staging / app", "prod / cache", "prod / db", "prod / base,web", "staging / web"},
		"mainstat":            {"3d ago", "never", "1m ago", "10s ago", "4m ago", "2h ago"},
		"secondarystat":       {"1 changed", "", "300 changed", "0 changed", "3 changed", "0 changed"},
		"arc__success":        {0.0, 0.0, 1.0, 1.0, 1.0, 0.0},
		"arc__failed":         {0.0, 0.0, 0.0, 0.0, 0.0, 1.0},
		"arc__converging":     {1.0, 1.0, 0.0, 0.0, 0.0, 0.0},
		"color":               {"blue", "blue", "green", "green", "green", "red"},
		"highlighted":         {false, false, false, true, false, true},
		"detail__environment": {"prod", "staging", "prod", "prod", "prod", "staging"},
		"detail__roles":       {"app", "app", "cache", "db", "base,web", "web"},
		"detail__last_run": {
			now.Add(-3 * 24 * time.Hour).Format(time.RFC3339), "", now.Add(-time.Minute).Format(time.RFC3339),
			now.Add(-10 * time.Second).Format(time.RFC3339), "2026-11-01T11:55:30Z", "2026-11-01T09:55:00Z",
		},
		"detail__duration":          {"1m0s", "", "1m0s", "1m0s", "1m0s", "1.5s"},
		"detail__last_error":        {"", "", "", "", "", "Chef::Exceptions::Exec: boom"},
		"detail__changed_resources": {"", "", "", "", "file[/a],package[nginx]", ""},
		"detail__failed_resources":  {"", "", "", "", "", "execute[migrate]"},
		"detail__run_list":          {"", "", "", "", "role[base],role[web]", ""},
		"detail__alerts":            {"", "", "", "DiskFull,HighLoad", "", ""},
	}
	for name, w := range want {
		if got := column(t, nodes, name); !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %q\n want %q", name, got, w)
		}
	}
	if len(nodes.Fields) != len(want) {
		var names []string
		for _, f := range nodes.Fields {
			names = append(names, f.Name)
		}
		t.Errorf("fields = %v, want exactly %d", names, len(want))
	}
	if _, i := nodes.FieldByName("fixedX"); i >= 0 {
		t.Error("fixedX without a Layout")
	}
	// app-1's failed last run is shown in its details but it is converging.
	// db-1 depends on itself (by name and by role): no self edge.
	wantEdges := []string{"app-1->db-1", "web-1->app-1", "web-1->cache-1", "web-2->app-2"}
	if got := edgeIDs(t, edges); !reflect.DeepEqual(got, wantEdges) {
		t.Errorf("edges = %v\n want %v", got, wantEdges)
	}
	f, _ := nodes.FieldByName("arc__failed")
	if f.Config == nil || f.Config.Color["fixedColor"] != "red" || f.Config.Color["mode"] != "fixed" {
		t.Errorf("arc__failed config = %+v", f.Config)
	}
}

func TestFramesFilter(t *testing.T) {
	cases := []struct {
		name  string
		f     Filter
		nodes []string
		edges []string
	}{
		{"all", Filter{}, []string{"app-1", "app-2", "cache-1", "db-1", "web-1", "web-2"},
			[]string{"app-1->db-1", "web-1->app-1", "web-1->cache-1", "web-2->app-2"}},
		{"env", Filter{Environments: []string{"prod"}}, []string{"app-1", "cache-1", "db-1", "web-1"},
			[]string{"app-1->db-1", "web-1->app-1", "web-1->cache-1"}},
		{"env none", Filter{Environments: []string{"dev"}}, nil, nil},
		{"role", Filter{Roles: []string{"web"}}, []string{"web-1", "web-2"}, nil},
		{"role base", Filter{Roles: []string{"base"}}, []string{"web-1"}, nil},
		{"role none", Filter{Roles: []string{NoRole}}, nil, nil},
		{"regex", Filter{Node: regexp.MustCompile(`^(web-1|app)`).MatchString}, []string{"app-1", "app-2", "web-1"},
			[]string{"web-1->app-1"}},
		{"regex unanchored", Filter{Node: regexp.MustCompile(`-2`).MatchString}, []string{"app-2", "web-2"},
			[]string{"web-2->app-2"}},
		{"all three", Filter{Environments: []string{"prod"}, Roles: []string{"app"}, Node: regexp.MustCompile(`1`).MatchString}, []string{"app-1"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nodes, edges := Frames(testFleet(), c.f, Options{Now: now, Config: testConfig})
			var ids []string
			if nodes.Rows() > 0 {
				ids = strs(t, nodes, "id")
			}
			if !reflect.DeepEqual(ids, c.nodes) {
				t.Errorf("nodes = %v, want %v", ids, c.nodes)
			}
			if got := edgeIDs(t, edges); !reflect.DeepEqual(got, c.edges) {
				t.Errorf("edges = %v, want %v", got, c.edges)
			}
			checkMeta(t, nodes, "nodes")
			checkMeta(t, edges, "edges")
		})
	}
}

func TestFilterMatchNoRoles(t *testing.T) {
	n := &fleet.Node{Name: "x", Environment: "prod"}
	if !(Filter{Roles: []string{NoRole}}).Match(n) || (Filter{Roles: []string{"web"}}).Match(n) || !(Filter{}).Match(n) {
		t.Fatal("role filter on a node without roles")
	}
}

func TestEdgesRules(t *testing.T) {
	n := func(name, env string, roles []string, deps ...string) fleet.Node {
		return fleet.Node{Name: name, Environment: env, Roles: roles, DependsOn: deps, Last: last(report.StatusSuccess, 0, 0)}
	}
	cases := []struct {
		name   string
		nodes  []fleet.Node
		cfg    Config
		filter Filter
		want   []string
	}{
		{"node name crosses environments", []fleet.Node{
			n("a", "prod", nil, "b"), n("b", "dev", nil)}, Config{}, Filter{}, []string{"a->b"}},
		{"role prefix stays in environment", []fleet.Node{
			n("a", "prod", nil, "role:db"), n("d1", "prod", []string{"db"}), n("d2", "prod", []string{"db"}), n("d3", "dev", []string{"db"})},
			Config{}, Filter{}, []string{"a->d1", "a->d2"}},
		{"bare role", []fleet.Node{
			n("a", "prod", nil, "db"), n("d1", "prod", []string{"db"}), n("d3", "dev", []string{"db"})},
			Config{}, Filter{}, []string{"a->d1"}},
		{"node name wins over role", []fleet.Node{
			n("a", "prod", nil, "db"), n("db", "dev", nil), n("d1", "prod", []string{"db"})},
			Config{}, Filter{}, []string{"a->db"}},
		{"filtered-out node name stays a node name", []fleet.Node{
			n("a", "prod", nil, "db"), n("db", "dev", nil), n("d1", "prod", []string{"db"})},
			Config{}, Filter{Environments: []string{"prod"}}, nil},
		{"role prefix over a node name", []fleet.Node{
			n("a", "prod", nil, "role:db"), n("db", "prod", nil), n("d1", "prod", []string{"db"})},
			Config{}, Filter{}, []string{"a->d1"}},
		{"config same environment", []fleet.Node{
			n("w1", "prod", []string{"web"}), n("w2", "dev", []string{"web"}),
			n("a1", "prod", []string{"app"}), n("a2", "dev", []string{"app"}), n("c1", "prod", []string{"cache"})},
			Config{DependsOn: map[string][]string{"web": {"app", "cache"}}}, Filter{},
			[]string{"w1->a1", "w1->c1", "w2->a2"}},
		{"no self, no duplicates", []fleet.Node{
			n("a", "prod", []string{"db"}, "a", "role:db", "db", "b", "b", "role:x"), n("b", "prod", []string{"db"})},
			Config{DependsOn: map[string][]string{"db": {"db"}}}, Filter{}, []string{"a->b", "b->a"}},
		{"unknown dependency", []fleet.Node{n("a", "prod", nil, "nothing", "role:nothing")}, Config{}, Filter{}, nil},
		{"ids sorted even with low bytes", []fleet.Node{
			n("a", "p", nil, "z"), n("a!b", "p", nil, "y"), n("y", "p", nil), n("z", "p", nil)},
			Config{}, Filter{}, []string{"a!b->y", "a->z"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, edges := Frames(c.nodes, c.filter, Options{Now: now, Config: c.cfg})
			if got := edgeIDs(t, edges); !reflect.DeepEqual(got, c.want) {
				t.Errorf("edges = %v, want %v", got, c.want)
			}
		})
	}
}

func TestFramesByRole(t *testing.T) {
	fl := append(testFleet(), fleet.Node{Name: "lonely", Environment: "prod", Last: last(report.StatusSuccess, 0, 0)})
	nodes, edges := Frames(fl, Filter{}, Options{Now: now, GroupBy: ByRole, Config: testConfig,
		Alerts: map[string][]string{"db-1": {"DiskFull"}}})
	checkMeta(t, nodes, "nodes")
	checkMeta(t, edges, "edges")
	want := map[string][]any{
		"id":    {"(none)", "app", "base", "cache", "db", "web"},
		"title": {"(none)", "app", "base", "cache", "db", "web"},
		// The environment when all the role's nodes are in one.
		"subtitle":        {"prod / 1 node", "2 nodes", "prod / 1 node", "prod / 1 node", "prod / 1 node", "2 nodes"},
		"mainstat":        {"0 failed", "0 failed", "0 failed", "0 failed", "0 failed", "1 failed"},
		"secondarystat":   {"0 converging", "2 converging", "0 converging", "0 converging", "0 converging", "0 converging"},
		"arc__success":    {1.0, 0.0, 1.0, 1.0, 1.0, 0.5},
		"arc__failed":     {0.0, 0.0, 0.0, 0.0, 0.0, 0.5},
		"arc__converging": {0.0, 1.0, 0.0, 0.0, 0.0, 0.0},
		"color":           {"green", "blue", "green", "green", "green", "red"},
		"highlighted":     {false, false, false, false, true, true},
		"detail__nodes":   {int64(1), int64(2), int64(1), int64(1), int64(1), int64(2)},
	}
	for name, w := range want {
		if got := column(t, nodes, name); !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %v\n want %v", name, got, w)
		}
	}
	if len(nodes.Fields) != len(want) {
		t.Errorf("%d fields, want %d", len(nodes.Fields), len(want))
	}
	// web-1 (base, web) → cache-1 by name, → role app; web-2 → bare role
	// app; app-1 → db-1 by name; topology file app → db.
	wantEdges := []string{"app->db", "base->app", "base->cache", "web->app", "web->cache"}
	if got := edgeIDs(t, edges); !reflect.DeepEqual(got, wantEdges) {
		t.Errorf("edges = %v\n want %v", got, wantEdges)
	}

	// Environment filter: subtitle names it; staging's app has no db, but
	// the topology file edge needs db shown.
	nodes, edges = Frames(testFleet(), Filter{Environments: []string{"staging"}}, Options{Now: now, GroupBy: ByRole, Config: testConfig})
	if got := strs(t, nodes, "subtitle"); !reflect.DeepEqual(got, []string{"staging / 1 node", "staging / 1 node"}) {
		t.Errorf("subtitle = %v", got)
	}
	if got := edgeIDs(t, edges); !reflect.DeepEqual(got, []string{"web->app"}) {
		t.Errorf("staging edges = %v", got)
	}
}

func TestArcsSumToOne(t *testing.T) {
	for _, by := range []GroupBy{ByNode, ByRole} {
		nodes, _ := Frames(benchFleet(500), Filter{}, Options{Now: now, GroupBy: by})
		s, f, c := column(t, nodes, "arc__success"), column(t, nodes, "arc__failed"), column(t, nodes, "arc__converging")
		for i := range s {
			sum := s[i].(float64) + f[i].(float64) + c[i].(float64)
			if math.Abs(sum-1) > 1e-9 {
				t.Fatalf("%s row %d: arcs sum to %v", by, i, sum)
			}
		}
	}
}

func TestStableOrder(t *testing.T) {
	fl := benchFleet(300)
	n1, e1 := Frames(fl, Filter{}, Options{Now: now, Config: benchConfig})
	// Reverse the input: same frames.
	rev := make([]fleet.Node, len(fl))
	for i := range fl {
		rev[len(fl)-1-i] = fl[i]
	}
	n2, e2 := Frames(rev, Filter{}, Options{Now: now, Config: benchConfig})
	if !reflect.DeepEqual(strs(t, n1, "id"), strs(t, n2, "id")) || !reflect.DeepEqual(edgeIDs(t, e1), edgeIDs(t, e2)) {
		t.Fatal("order depends on input order")
	}
	ids, eids := strs(t, n1, "id"), edgeIDs(t, e1)
	for i := 1; i < len(ids); i++ {
		if ids[i-1] >= ids[i] {
			t.Fatalf("node ids not strictly sorted at %d: %q %q", i, ids[i-1], ids[i])
		}
	}
	for i := 1; i < len(eids); i++ {
		if eids[i-1] >= eids[i] {
			t.Fatalf("edge ids not strictly sorted at %d", i)
		}
	}
	if len(eids) == 0 {
		t.Fatal("bench fleet has no edges")
	}
	// No dangling edges.
	set := map[string]bool{}
	for _, id := range ids {
		set[id] = true
	}
	targets := strs(t, e1, "target")
	for i, s := range strs(t, e1, "source") {
		if !set[s] || !set[targets[i]] {
			t.Fatalf("dangling edge %s", eids[i])
		}
	}
}

func TestAgo(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Hour: "0s ago", 0: "0s ago", 59 * time.Second: "59s ago", time.Minute: "1m ago",
		59*time.Minute + 59*time.Second: "59m ago", time.Hour: "1h ago", 23 * time.Hour: "23h ago",
		24 * time.Hour: "1d ago", 400 * 24 * time.Hour: "400d ago",
	} {
		if got := ago(d); got != want {
			t.Errorf("ago(%v) = %q, want %q", d, got, want)
		}
	}
	if changedText(1000) != "1000 changed" || changedText(7) != "7 changed" {
		t.Error("changedText")
	}
}

func TestParseConfig(t *testing.T) {
	cases := []struct {
		text string
		want map[string][]string
		err  string
	}{
		{"", map[string][]string{}, ""},
		{"  \n# only a comment\n", map[string][]string{}, ""},
		{"web: [app, cache]\napp: db\n", map[string][]string{"web": {"app", "cache"}, "app": {"db"}}, ""},
		{"web:\n  - cache\n  - app\n  - cache\nlb: ~\n", map[string][]string{"web": {"app", "cache"}, "lb": nil}, ""},
		{"web: [app\n", nil, "topology: yaml: line 1"},
		{"- web\n- app\n", nil, "topology: yaml: unmarshal errors:\n  line 1"},
		{"web: app\napp: [db, 3]\n", nil, `topology: line 2: role "app": entry 2 (3) is not a string`},
		{"web: app\napp: [db, [x]]\n", nil, `topology: line 2: role "app": entry 2 ([x]) is not a string`},
		{"web: app\napp: {db: 1}\n", nil, `topology: line 2: role "app": want a role name or a list of role names`},
		{"web: 5\n", nil, `topology: line 1: role "web": want a role name`},
		{"a: b\n7: db\n", nil, `topology: line 2: role 7 is not a non-empty string`},
		{"web: app\nweb: db\n", nil, `topology: line 1: role "web" is listed twice`},
		{"web: ['']\n", nil, `topology: line 1: role "web": empty role name`},
	}
	for _, c := range cases {
		got, err := ParseConfig(c.text)
		if c.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), c.err) {
				t.Errorf("ParseConfig(%q) error = %v, want prefix %q", c.text, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseConfig(%q): %v", c.text, err)
			continue
		}
		if !reflect.DeepEqual(got.DependsOn, c.want) {
			t.Errorf("ParseConfig(%q) = %v, want %v", c.text, got.DependsOn, c.want)
		}
	}
}

var benchConfig = Config{DependsOn: map[string][]string{"web": {"app", "cache"}, "app": {"db"}}}

// benchFleet: n nodes in environments of 50 (web, app, db, cache, with a
// base role on all), depending on each other by name and by role, with a
// mix of states.
func benchFleet(n int) []fleet.Node {
	roles := [][]string{{"base", "web"}, {"app", "base"}, {"base", "db"}, {"base", "cache"}}
	out := make([]fleet.Node, n)
	for i := range out {
		env := fmt.Sprintf("env-%04d", i/50)
		k := i % 4
		nd := fleet.Node{
			Name: fmt.Sprintf("node-%06d", i), Environment: env, Roles: roles[k],
			RunList: []string{"role[base]", "recipe[app::default]"},
		}
		switch k {
		case 0:
			nd.DependsOn = []string{"role:app"}
		case 1:
			nd.DependsOn = []string{fmt.Sprintf("node-%06d", i+1)}
		}
		switch {
		case i%17 == 0:
			nd.Converging = true
		case i%13 == 0:
			nd.Last = last(report.StatusFailure, time.Duration(i)*time.Second, i%7)
			nd.Last.Error = &report.RunError{Class: "Chef::Exceptions::Exec", Message: "exit 1"}
			nd.Last.Failures = []report.Resource{{Type: "execute", Name: "migrate"}}
		default:
			nd.Last = last(report.StatusSuccess, time.Duration(i)*time.Second, i%7)
			nd.Last.Changes = []report.Resource{{Type: "file", Name: "/etc/app.conf"}}
		}
		out[i] = nd
	}
	return out
}

func BenchmarkFrames(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		fl := benchFleet(n)
		for _, by := range []GroupBy{ByNode, ByRole} {
			b.Run(fmt.Sprintf("%s/%d", by, n), func(b *testing.B) {
				o := Options{Now: now, Config: benchConfig, GroupBy: by, Alerts: map[string][]string{"node-000003": {"X"}}}
				b.ReportAllocs()
				for b.Loop() {
					Frames(fl, Filter{}, o)
				}
			})
		}
	}
}

// BenchmarkLiveFrames builds frames as a live view does: lean, with a
// Layout kept from one build to the next.
func BenchmarkLiveFrames(b *testing.B) {
	for _, n := range []int{10_000} {
		fl := benchFleet(n)
		for _, by := range []GroupBy{ByNode, ByRole} {
			b.Run(fmt.Sprintf("%s/%d", by, n), func(b *testing.B) {
				o := Options{Now: now, Config: benchConfig, GroupBy: by, Lean: true, Layout: NewLayout()}
				b.ReportAllocs()
				for b.Loop() {
					Frames(fl, Filter{}, o)
				}
			})
		}
	}
}
