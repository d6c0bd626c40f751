package changeset

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

// run is a test run: node, roles, start offset from t0, duration 1m,
// resources changed, resources failed on.
type run struct {
	node, env string
	roles     []string
	at        time.Duration
	upd, fail []string
}

func (r run) report() *report.Run {
	start := t0.Add(r.at)
	out := &report.Run{Kind: report.KindRun, Node: r.node, Environment: orDefault(r.env, "prod"), Roles: r.roles,
		Status: report.StatusSuccess, Start: start, End: start.Add(time.Minute), UpdatedCount: len(r.upd)}
	for _, u := range r.upd {
		out.Updated = append(out.Updated, resource(u))
	}
	for _, f := range r.fail {
		out.Failed = append(out.Failed, resource(f))
		out.FailedCount++
		out.Status = report.StatusFailure
	}
	return out
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func resource(s string) report.Resource {
	typ, name, _ := strings.Cut(strings.TrimSuffix(s, "]"), "[")
	return report.Resource{Type: typ, Name: name}
}

func group(runs []run, o Options) []*Set {
	rs := make([]*report.Run, len(runs))
	for i, r := range runs {
		rs[i] = r.report()
	}
	return Group(rs, o)
}

// describe renders sets as "role:nodes[waves]" lines, for comparisons.
func describe(sets []*Set) string {
	var lines []string
	for _, s := range sets {
		var ws []string
		for _, w := range s.Waves {
			ws = append(ws, strings.Join(w.Nodes, "+"))
		}
		lines = append(lines, fmt.Sprintf("%s/%s %s [%s]", s.Environment, s.Role, strings.Join(s.Resources, ","), strings.Join(ws, " | ")))
	}
	return strings.Join(lines, "\n")
}

var (
	web = []string{"base", "web"}
	app = []string{"base", "app"}
	cfg = "template[/etc/app.conf]"
)

func TestWavesOfOneRollout(t *testing.T) {
	// Three waves: 2 nodes, 4 nodes, 6 nodes, 5 minutes apart; the nodes of
	// a wave start within 20 s.
	var runs []run
	n := 0
	for w, size := range []int{2, 4, 6} {
		for i := range size {
			runs = append(runs, run{node: fmt.Sprintf("web-%02d", n), roles: web, at: time.Duration(w)*5*time.Minute + time.Duration(i)*4*time.Second, upd: []string{cfg}})
			n++
		}
	}
	sets := group(runs, Options{})
	if len(sets) != 1 {
		t.Fatalf("%d sets, want 1:\n%s", len(sets), describe(sets))
	}
	s := sets[0]
	if len(s.Nodes) != 12 || len(s.Runs) != 12 || s.Role != "web" || s.Status() != StatusSuccess {
		t.Errorf("set %+v", s)
	}
	if got := len(s.Waves); got != 3 {
		t.Fatalf("%d waves, want 3: %s", got, describe(sets))
	}
	for i, want := range []int{2, 4, 6} {
		w := s.Waves[i]
		if len(w.Nodes) != want || w.Runs != want {
			t.Errorf("wave %d: %d nodes %d runs, want %d", i, len(w.Nodes), w.Runs, want)
		}
		if w.Start != t0.Add(time.Duration(i)*5*time.Minute) || w.End != w.Start.Add(time.Duration(want-1)*4*time.Second+time.Minute) {
			t.Errorf("wave %d: %s → %s", i, w.Start, w.End)
		}
	}
	if s.Start != t0 || s.End != s.Waves[2].End {
		t.Errorf("set %s → %s", s.Start, s.End)
	}
	if got := s.Title(); got != "template[/etc/app.conf] on 12 nodes" {
		t.Errorf("title %q", got)
	}
}

func TestWaveRuleAdaptsToThePace(t *testing.T) {
	// A continuous roll-out (a node every 40 s, as a splayed schedule makes
	// it) is one wave; a pause of 6 minutes (over Gap/6) always splits.
	var runs []run
	for i := range 10 {
		runs = append(runs, run{node: fmt.Sprintf("w%d", i), roles: web, at: time.Duration(i) * 40 * time.Second, upd: []string{cfg}})
	}
	runs = append(runs, run{node: "late", roles: web, at: 9*40*time.Second + 6*time.Minute, upd: []string{cfg}})
	sets := group(runs, Options{})
	if len(sets) != 1 || len(sets[0].Waves) != 2 || len(sets[0].Waves[0].Nodes) != 10 {
		t.Errorf("want one set, waves of 10 and 1:\n%s", describe(sets))
	}
}

func TestGapSplitsSets(t *testing.T) {
	runs := []run{
		{node: "a", roles: web, at: 0, upd: []string{cfg}},
		{node: "b", roles: web, at: 20 * time.Minute, upd: []string{cfg}},
		// b ended at 21m: 21m + 30m = 51m is the last start that joins.
		{node: "c", roles: web, at: 51 * time.Minute, upd: []string{cfg}},
		{node: "d", roles: web, at: 83 * time.Minute, upd: []string{cfg}}, // 31m after c's end
	}
	sets := group(runs, Options{})
	if got := describe(sets); got != "prod/web template[/etc/app.conf] [a | b | c]\nprod/web template[/etc/app.conf] [d]" {
		t.Errorf("got\n%s", got)
	}
	// A shorter gap splits more.
	sets = group(runs, Options{Gap: 10 * time.Minute})
	if len(sets) != 4 {
		t.Errorf("gap 10m: %d sets, want 4:\n%s", len(sets), describe(sets))
	}
	if sets[0].Undoes != "" {
		t.Errorf("different nodes: no set undoes another: %+v", sets)
	}
}

func TestDifferentResourcesOrEnvironmentsAreDifferentSets(t *testing.T) {
	sets := group([]run{
		{node: "a", roles: web, at: 0, upd: []string{cfg}},
		{node: "b", roles: web, at: time.Minute, upd: []string{cfg, "file[/etc/extra]"}},
		{node: "c", env: "staging", roles: web, at: 2 * time.Minute, upd: []string{cfg}},
		{node: "d", roles: web, at: 3 * time.Minute, upd: []string{cfg}},
	}, Options{})
	if got := describe(sets); got != "prod/web template[/etc/app.conf] [a+d]\nprod/web file[/etc/extra],template[/etc/app.conf] [b]\nstaging/web template[/etc/app.conf] [c]" {
		t.Errorf("got\n%s", got)
	}
}

func TestInterleavedRolloutsOnDifferentRoles(t *testing.T) {
	// web and app roll out their own configuration at the same time, their
	// runs interleaved: two sets, one per role, each with its waves.
	var runs []run
	for i := range 6 {
		wave := time.Duration(i/3) * 5 * time.Minute
		runs = append(runs,
			run{node: fmt.Sprintf("web-%d", i), roles: web, at: wave + time.Duration(i%3)*10*time.Second, upd: []string{"template[/etc/web.conf]"}},
			run{node: fmt.Sprintf("app-%d", i), roles: app, at: wave + time.Duration(i%3)*10*time.Second + 5*time.Second, upd: []string{"template[/etc/app.conf]"}},
		)
	}
	sets := group(runs, Options{})
	want := "prod/web template[/etc/web.conf] [web-0+web-1+web-2 | web-3+web-4+web-5]\nprod/app template[/etc/app.conf] [app-0+app-1+app-2 | app-3+app-4+app-5]"
	if got := describe(sets); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// The same package upgrade on both roles at once is one change of the
	// role their nodes share.
	for i := range runs {
		runs[i].upd = []string{"package[openssl]"}
	}
	sets = group(runs, Options{})
	want = "prod/base package[openssl] [app-0+app-1+app-2+web-0+web-1+web-2 | app-3+app-4+app-5+web-3+web-4+web-5]"
	if got := describe(sets); got != want {
		t.Errorf("same resources:\ngot\n%s\nwant\n%s", got, want)
	}
}

func TestRollback(t *testing.T) {
	// A roll-out to 4 nodes in 2 waves, then 10 minutes later the same
	// template rewritten on the same nodes: a roll-back, its own set.
	var runs []run
	for i := range 4 {
		runs = append(runs, run{node: fmt.Sprintf("app-%d", i), roles: app, at: time.Duration(i/2)*5*time.Minute + time.Duration(i%2)*5*time.Second, upd: []string{cfg}})
	}
	for i := range 4 {
		runs = append(runs, run{node: fmt.Sprintf("app-%d", i), roles: app, at: 16*time.Minute + time.Duration(i)*5*time.Second, upd: []string{cfg}})
	}
	sets := group(runs, Options{})
	if len(sets) != 2 {
		t.Fatalf("%d sets, want 2:\n%s", len(sets), describe(sets))
	}
	out, back := sets[0], sets[1]
	if len(out.Waves) != 2 || len(back.Waves) != 1 || len(back.Nodes) != 4 {
		t.Errorf("got\n%s", describe(sets))
	}
	if back.Undoes != out.ID || out.UndoneBy != back.ID || !out.UndoneAt.Equal(back.Start) || out.Undoes != "" || back.UndoneBy != "" {
		t.Errorf("undoes: out %+v back %+v", out, back)
	}
	// After the gap, the same resources on the same nodes are a roll-back
	// too.
	for i := range runs[4:] {
		runs[4+i].at += 2 * time.Hour
	}
	sets = group(runs, Options{})
	if len(sets) != 2 || sets[1].Undoes != sets[0].ID {
		t.Errorf("roll-back after the gap: %+v", sets)
	}
	// On other nodes it is not.
	for i := range runs[4:] {
		runs[4+i].node = fmt.Sprintf("other-%d", i)
	}
	sets = group(runs, Options{})
	if len(sets) != 2 || sets[1].Undoes != "" || sets[0].UndoneBy != "" {
		t.Errorf("same resources on other nodes: %+v", sets)
	}
}

func TestOneNodeChangingTwice(t *testing.T) {
	// a changes the template in wave 1 and again 8 minutes later (a
	// flapping resource or a manual fix); b and c are in wave 2 around.
	sets := group([]run{
		{node: "a", roles: web, at: 0, upd: []string{cfg}},
		{node: "b", roles: web, at: 6 * time.Minute, upd: []string{cfg}},
		{node: "a", roles: web, at: 8 * time.Minute, upd: []string{cfg}},
		{node: "c", roles: web, at: 9 * time.Minute, upd: []string{cfg}},
	}, Options{})
	// c joins the oldest open set it is not in: the roll-out.
	if got := describe(sets); got != "prod/web template[/etc/app.conf] [a | b+c]\nprod/web template[/etc/app.conf] [a]" {
		t.Errorf("got\n%s", got)
	}
	if sets[1].Undoes != sets[0].ID {
		t.Errorf("a's second change should undo the first set: %+v", sets[1])
	}
	if sets[1].Title() != "a: template[/etc/app.conf]" {
		t.Errorf("title %q", sets[1].Title())
	}
}

func TestMultiRoleNodes(t *testing.T) {
	// Every node has base; web nodes add web, two of them monitoring too.
	runs := []run{
		{node: "web-1", roles: []string{"base", "web", "monitoring"}, at: 0, upd: []string{cfg}},
		{node: "web-2", roles: []string{"base", "web", "monitoring"}, at: 10 * time.Second, upd: []string{cfg}},
		{node: "web-3", roles: web, at: 20 * time.Second, upd: []string{cfg}},
		{node: "db-1", roles: []string{"base", "db"}, at: 30 * time.Second, upd: []string{"file[/etc/ntp.conf]"}},
		{node: "web-4", roles: web, at: 40 * time.Second, upd: []string{"file[/etc/ntp.conf]"}},
	}
	// The fleet: base on 10 nodes, web on 5, monitoring on 2, db on 5.
	sizes := map[string]int{"base": 10, "web": 5, "monitoring": 2, "db": 5}
	sets := group(runs, Options{RoleNodes: sizes})
	// monitoring, on two of the roll-out's nodes only, does not split it;
	// the ntp change on a db and a web node is one change of base.
	want := "prod/web template[/etc/app.conf] [web-1+web-2+web-3]\nprod/base file[/etc/ntp.conf] [db-1+web-4]"
	if got := describe(sets); got != want {
		t.Errorf("most specific shared role:\ngot\n%s\nwant\n%s", got, want)
	}
	// A roll-out to the monitoring nodes alone is monitoring's.
	sets = group(runs[:2], Options{RoleNodes: sizes})
	if sets[0].Role != "monitoring" {
		t.Errorf("roll-out to the monitoring nodes: role %q", sets[0].Role)
	}
	// With a role filter the set takes the matching role (the plugin gives
	// Group only the runs that pass the filter).
	webRuns := slices.DeleteFunc(slices.Clone(runs), func(r run) bool { return r.node == "db-1" })
	sets = group(webRuns, Options{RoleNodes: sizes, RoleFilter: func(r string) bool { return r == "web" }})
	want = "prod/web template[/etc/app.conf] [web-1+web-2+web-3]\nprod/web file[/etc/ntp.conf] [web-4]"
	if got := describe(sets); got != want {
		t.Errorf("role filter web:\ngot\n%s\nwant\n%s", got, want)
	}
	// Ties go to the role listed last; without sizes, the runs are counted.
	sets = group([]run{{node: "x", roles: []string{"base", "web"}, at: 0, upd: []string{cfg}}}, Options{})
	if sets[0].Role != "web" {
		t.Errorf("tie: role %q, want web (listed last)", sets[0].Role)
	}
	// No role in common: the role of most runs.
	sets = group([]run{
		{node: "w1", roles: []string{"web"}, at: 0, upd: []string{cfg}},
		{node: "d1", roles: []string{"db"}, at: time.Second, upd: []string{cfg}},
		{node: "w2", roles: []string{"web"}, at: 2 * time.Second, upd: []string{cfg}},
	}, Options{})
	if len(sets) != 1 || sets[0].Role != "web" {
		t.Errorf("no common role: %s", describe(sets))
	}
	// No roles: role "".
	sets = group([]run{{node: "x", at: 0, upd: []string{cfg}}}, Options{})
	if sets[0].Role != "" {
		t.Errorf("no roles: role %q", sets[0].Role)
	}
}

func TestFailedRunsInsideARollout(t *testing.T) {
	const marker = "file[/etc/app/release]"
	res := []string{cfg, marker}
	sets := group([]run{
		// The roll-out's first run fails on the template: it starts
		// the set, which the next successful run names.
		{node: "a", roles: app, at: 0, fail: []string{cfg}},
		{node: "b", roles: app, at: 5 * time.Second, upd: res},
		// A failure on the marker after changing the template.
		{node: "c", roles: app, at: 10 * time.Second, upd: []string{cfg}, fail: []string{marker}},
		// A failure on something else after changing the whole change.
		{node: "d", roles: app, at: 15 * time.Second, upd: res, fail: []string{"execute[migrate]"}},
		// a's retry changes what its failed run did not.
		{node: "a", roles: app, at: 5 * time.Minute, upd: res},
		// c's retry: only the marker is left to change.
		{node: "c", roles: app, at: 5*time.Minute + 10*time.Second, upd: []string{marker}},
		// An unrelated failure: changed nothing, failed elsewhere.
		{node: "e", roles: app, at: 20 * time.Second, fail: []string{"service[sshd]"}},
	}, Options{})
	if len(sets) != 2 {
		t.Fatalf("%d sets, want 2:\n%s", len(sets), describe(sets))
	}
	s := sets[0]
	if got := strings.Join(s.Resources, ","); got != marker+","+cfg {
		t.Errorf("resources %s", got)
	}
	if got := strings.Join(s.Nodes, ","); got != "a,b,c,d" || len(s.Runs) != 6 || s.Failed != 3 || s.Status() != StatusPartial {
		t.Errorf("set nodes %s runs %d failed %d status %s", got, len(s.Runs), s.Failed, s.Status())
	}
	if got := s.Title(); got != "file[/etc/app/release], template[/etc/app.conf] on 4 nodes (3 of 6 runs failed)" {
		t.Errorf("title %q", got)
	}
	if e := sets[1]; strings.Join(e.Nodes, ",") != "e" || e.Status() != StatusFailure || e.Title() != "e: service[sshd] (failed)" {
		t.Errorf("unrelated failure: %s %q", describe(sets[1:]), e.Title())
	}
	// A roll-out whose runs all fail on the same resource is a set too.
	sets = group([]run{
		{node: "a", roles: app, at: 0, fail: []string{cfg}},
		{node: "b", roles: app, at: time.Minute, fail: []string{cfg}},
	}, Options{})
	if len(sets) != 1 || sets[0].Status() != StatusFailure || sets[0].Title() != "template[/etc/app.conf] on 2 nodes (every run failed)" {
		t.Errorf("failing roll-out: %s", describe(sets))
	}
}

func TestChronicResourceDoesNotSplitARollout(t *testing.T) {
	// c runs an unguarded execute on every one of its runs, the roll-out's
	// too.
	const apt = "execute[apt-get update]"
	runs := []run{
		{node: "a", roles: web, at: 0, upd: []string{cfg}},
		{node: "b", roles: web, at: 5 * time.Second, upd: []string{cfg}},
		{node: "c", roles: web, at: 10 * time.Second, upd: []string{apt, cfg}},
	}
	for i := range 5 {
		runs = append(runs, run{node: "c", roles: web, at: time.Duration(i+1) * 30 * time.Minute, upd: []string{apt}})
	}
	sets := group(runs, Options{})
	if got := describe(sets[:1]); got != "prod/web template[/etc/app.conf] [a+b+c]" {
		t.Errorf("roll-out:\n%s", describe(sets))
	}
	// The execute-only runs keep their resource: each its own change.
	if len(sets) != 6 || strings.Join(sets[1].Resources, ",") != apt {
		t.Errorf("want the roll-out and 5 runs of %s:\n%s", apt, describe(sets))
	}
	// Those are routine: none undoes another.
	for _, s := range sets[1:] {
		if !s.Routine || s.Undoes != "" || s.UndoneBy != "" {
			t.Errorf("routine set %+v", s)
		}
	}
	if sets[0].Routine {
		t.Errorf("the roll-out is not routine")
	}
	// In 3 runs of 12 it is not chronic: the roll-out splits.
	sets = group(runs[:6], Options{NodeRuns: map[string]int{"c": 12}})
	if len(sets) < 2 || len(sets[0].Nodes) != 2 {
		t.Errorf("3 changes of 12 runs are not chronic:\n%s", describe(sets))
	}
}

func TestIDsAreStableAndDistinct(t *testing.T) {
	runs := []run{
		{node: "a", roles: web, at: 0, upd: []string{cfg}},
		{node: "b", roles: web, at: time.Minute, upd: []string{"file[x]"}},
	}
	reversed := slices.Clone(runs)
	slices.Reverse(reversed)
	a, b := group(runs, Options{}), group(reversed, Options{})
	if a[0].ID != b[0].ID || a[1].ID != b[1].ID || a[0].ID == a[1].ID || len(a[0].ID) != 12 {
		t.Errorf("ids %s %s / %s %s", a[0].ID, a[1].ID, b[0].ID, b[1].ID)
	}
}

func TestShortList(t *testing.T) {
	if got := ShortList([]string{"a", "b", "c"}, 2); got != "a, b and 1 more" {
		t.Errorf("%q", got)
	}
	if got := ShortList([]string{"a", "b"}, 2); got != "a, b" {
		t.Errorf("%q", got)
	}
}

func BenchmarkGroup10k(b *testing.B) {
	var rs []*report.Run
	for i := range 10_000 {
		role := []string{"base", fmt.Sprintf("role-%d", i%5)}
		res := []string{fmt.Sprintf("template[/etc/%d.conf]", i/500)}
		r := run{node: fmt.Sprintf("n-%04d", i%2000), roles: role, at: time.Duration(i) * 5 * time.Second, upd: res}.report()
		rs = append(rs, r)
	}
	b.ResetTimer()
	for range b.N {
		Group(rs, Options{})
	}
}
