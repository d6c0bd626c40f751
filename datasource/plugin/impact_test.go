package plugin

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/runlens/runlens/pkg/changeset"
	"github.com/runlens/runlens/pkg/impact"
)

func TestExpandImpactQuery(t *testing.T) {
	got := expandImpactQuery(`x{node="$node",r="${role}",e="$environment"} / y{e="${environment}"}`, `we"b\1`, "web", "prod")
	if want := `x{node="we\"b\\1",r="web",e="prod"} / y{e="prod"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// fakeProm answers range queries with a series of f(query, t) at every
// step. The real Prometheus answers the scenario tests
// (impact_scenario_test.go); this one lets a test count the queries and
// make them fail.
type fakeProm struct {
	f   func(q string, t time.Time) float64
	err error

	mu      sync.Mutex
	queries []string
}

func (p *fakeProm) Query(context.Context, string, time.Time) (model.Value, error) {
	return nil, errors.New("the impact query makes range queries only")
}

func (p *fakeProm) QueryRange(_ context.Context, q string, r promv1.Range) (model.Value, error) {
	p.mu.Lock()
	p.queries = append(p.queries, q)
	p.mu.Unlock()
	if p.err != nil {
		return nil, p.err
	}
	ss := &model.SampleStream{Metric: model.Metric{}}
	for t := r.Start; !t.After(r.End); t = t.Add(r.Step) {
		ss.Values = append(ss.Values, model.SamplePair{Timestamp: model.TimeFromUnixNano(t.UnixNano()), Value: model.SampleValue(p.f(q, t))})
	}
	return model.Matrix{ss}, nil
}

func (p *fakeProm) calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.queries...)
}

// noisy is a seeded noise source shared by the fake's series.
func noisy(sd float64) func() float64 {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return sd * rng.NormFloat64()
	}
}

func TestImpactRanking(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, nil, nil)
	now := time.Now().Truncate(time.Second)
	at := func(m float64) time.Time { return now.Add(time.Duration(m * float64(time.Minute))) }
	web := []string{"template[/etc/web/app.conf]"}
	e.publish(t,
		// The culprit: web in two waves.
		handlerJSON(run{node: "web-1", env: "prod", role: "web", id: "i1", start: at(-90), end: at(-89), updated: web}),
		handlerJSON(run{node: "web-2", env: "prod", role: "web", id: "i2", start: at(-90), end: at(-89), updated: web}),
		handlerJSON(run{node: "web-3", env: "prod", role: "web", id: "i3", start: at(-84), end: at(-83), updated: web}),
		handlerJSON(run{node: "web-4", env: "prod", role: "web", id: "i4", start: at(-84), end: at(-83), updated: web}),
		// A db change at the same time, a db failure, an app change later.
		handlerJSON(run{node: "db-1", env: "prod", role: "db", id: "i5", start: at(-86), end: at(-85), updated: []string{"file[/etc/db.conf]"}}),
		handlerJSON(run{node: "db-2", env: "prod", role: "db", id: "i6", start: at(-70), end: at(-69), failed: true}),
		handlerJSON(run{node: "app-1", env: "prod", role: "app", id: "i7", start: at(-60), end: at(-59), updated: []string{"file[/etc/app.conf]"}}),
		handlerJSON(run{node: "web-5", env: "prod", role: "web", id: "i8", start: at(-30), end: at(-29.5)}), // no change
	)
	e.waitReports(t, 8)
	noise := noisy(0.0003)
	fp := &fakeProm{f: func(q string, ts time.Time) float64 {
		v := 0.005 + noise()
		if strings.Contains(q, `service="web"`) {
			// Each web node adds 1 % of errors from the end of its run.
			for _, end := range []time.Time{at(-89), at(-89), at(-83), at(-83)} {
				if !ts.Before(end) {
					v += 0.01
				}
			}
		}
		return v
	}}
	inst.prom = fp
	from := now.Add(-2 * time.Hour)
	f := mustFrames(t, inst, map[string]any{"queryType": "impact"}, from, now)[0]
	if got := joined(t, f, "title"); !strings.HasPrefix(got, "template[/etc/web/app.conf] on 4 nodes,") {
		t.Errorf("ranking %s: want the web roll-out first", got)
	}
	if f.Rows() != 4 {
		t.Errorf("%d rows, want 4 change sets", f.Rows())
	}
	for _, name := range []string{"time", "timeEnd", "environment", "role", "nodes", "runs", "waves", "nodeList", "title", "before", "after", "delta", "score", "detail", "status", "set", "undoes", "nodeRegex", "nodeParams"} {
		if _, i := f.FieldByName(name); i < 0 {
			t.Errorf("no field %q", name)
		}
	}
	if got := col(t, f, "nodes")[0] + "/" + col(t, f, "runs")[0] + "/" + col(t, f, "waves")[0] + "/" + col(t, f, "nodeList")[0]; got != "4/4/2/web-1, web-2, web-3, web-4" {
		t.Errorf("first row nodes/runs/waves/list %s", got)
	}
	t.Logf("ranking:\n%s\n%s", joined(t, f, "title"), strings.Join(col(t, f, "detail"), "\n"))
	detail := col(t, f, "detail")[0]
	for _, want := range []string{"error ratio 0.", "% → 4.", "after 2 waves (", "z = ", "grows with the waves", "; score "} {
		if !strings.Contains(detail, want) {
			t.Errorf("detail %q lacks %q", detail, want)
		}
	}
	var score float64
	fmt.Sscan(col(t, f, "score")[0], &score)
	if score < 20 {
		t.Errorf("score %v", score)
	}
	if _, i := f.FieldByName("before"); i >= 0 && f.Fields[i].Config.Unit != "percentunit" {
		t.Errorf("the default template's values are ratios: unit %q", f.Fields[i].Config.Unit)
	}
	// One range query per environment and role.
	if got := fp.calls(); len(got) != 3 {
		t.Errorf("%d Prometheus queries, want 3 (prod × web, db, app): %q", len(got), got)
	}
	if f.Meta == nil || len(f.Meta.Stats) == 0 || f.Meta.Stats[0].Value != 3 || !strings.Contains(f.Meta.Notices[len(f.Meta.Notices)-1].Text, "4 changes ranked with 3 Prometheus range queries") {
		t.Errorf("meta %+v", f.Meta)
	}

	// One row per run.
	fp.queries = nil
	f = mustFrames(t, inst, map[string]any{"queryType": "impact", "groupBy": "run"}, from, now)[0]
	if f.Rows() != 7 || len(fp.calls()) != 3 {
		t.Errorf("by run: %d rows (want 7 change runs) with %d queries", f.Rows(), len(fp.calls()))
	}
	if top := col(t, f, "node")[0]; !strings.HasPrefix(top, "web-") {
		t.Errorf("by run: top %s (%s)", top, col(t, f, "detail")[0])
	}
	if got := col(t, f, "title")[0]; !strings.HasSuffix(got, ": 1 changed") {
		t.Errorf("by run: title %q", got)
	}

	// Filtered.
	f = mustFrames(t, inst, map[string]any{"queryType": "impact", "role": "db"}, from, now)[0]
	if got := joined(t, f, "role"); got != "db,db" {
		t.Errorf("role db: %s", got)
	}
	// A template naming $node: one query per set, $node its node regex.
	inst.settings.ImpactQuery = `max(err{node=~"$node",service="$role"})`
	fp.queries = nil
	f = mustFrames(t, inst, map[string]any{"queryType": "impact", "environment": "prod"}, from, now)[0]
	if got := fp.calls(); len(got) != 4 || !strings.Contains(strings.Join(got, " "), `node=~"(?:web-1|web-2|web-3|web-4)"`) {
		t.Errorf("per-set queries: %q", got)
	}
	if d := col(t, f, "detail")[0]; !strings.HasPrefix(d, "impact query ") {
		t.Errorf("a custom template's detail: %q", d)
	}
	// Prometheus failing: an error naming Prometheus.
	fp.err = errors.New("connection refused")
	r := query(t, inst, map[string]any{"queryType": "impact"}, from, now)
	if r.Error == nil || !strings.Contains(r.Error.Error(), "Prometheus at") || !strings.Contains(r.Error.Error(), "connection refused") {
		t.Errorf("error %v", r.Error)
	}
	// Not configured.
	inst.prom = nil
	r = query(t, inst, map[string]any{"queryType": "impact"}, from, now)
	if r.Error == nil || !strings.Contains(r.Error.Error(), "prometheusUrl") {
		t.Errorf("error %v", r.Error)
	}
}

// targets makes n one-node sets, each its own role, starting every step.
func targets(n int, start time.Time, step time.Duration) []*impactTarget {
	var out []*impactTarget
	for i := range n {
		s := start.Add(time.Duration(i) * step)
		set := &changeset.Set{ID: fmt.Sprint(i), Environment: "prod", Role: fmt.Sprintf("r%03d", i), Nodes: []string{"n"}}
		out = append(out, &impactTarget{set: set, change: impact.Change{Waves: []changeset.Wave{{Start: s, End: s.Add(time.Minute), Nodes: set.Nodes, Runs: 1}}}})
	}
	return out
}

func TestPlanImpactBounds(t *testing.T) {
	now := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
	w := 15 * time.Minute
	// Every target its own (environment, role): past maxImpactQueries the
	// rest is unmeasured, with a notice.
	ts := targets(maxImpactQueries+6, now.Add(-2*time.Hour), time.Second)
	ranges, notices := planImpact(DefaultImpactQuery, ts, w, now, false)
	if len(ranges) != maxImpactQueries || len(notices) != 1 || !strings.Contains(notices[0].Text, fmt.Sprintf("%d Prometheus queries needed, %d made: 6 changes", maxImpactQueries+6, maxImpactQueries)) {
		t.Errorf("%d ranges, notices %+v", len(ranges), notices)
	}
	unmeasured := 0
	for _, tg := range ts {
		if strings.HasPrefix(tg.result.Reason, "not measured") {
			unmeasured++
		}
	}
	if unmeasured != 6 {
		t.Errorf("%d unmeasured, want 6", unmeasured)
	}
	// One role over 40 days: the oldest changes do not fit 11,000 points
	// at a step of impactWindow/5.
	ts = targets(40, now.Add(-40*24*time.Hour), 24*time.Hour)
	for _, tg := range ts {
		tg.set.Role = "web"
	}
	ranges, notices = planImpact(DefaultImpactQuery, ts, w, now, false)
	if len(ranges) != 1 || len(notices) != 1 || !strings.Contains(notices[0].Text, "too wide") {
		t.Fatalf("%d ranges, notices %+v", len(ranges), notices)
	}
	rg := ranges[0]
	if rg.step > w/minStepsPerWindow || rg.end.Sub(rg.start)/rg.step > maxRangePoints {
		t.Errorf("step %s over %s", rg.step, rg.end.Sub(rg.start))
	}
	if n := len(rg.targets); n < 20 || n >= 40 || ts[0].result.Reason != "not measured: the time range is too wide" {
		t.Errorf("%d measured, first reason %q", n, ts[0].result.Reason)
	}
	// A usual range: the step is impactWindow/60, one query.
	ranges, notices = planImpact(DefaultImpactQuery, targets(3, now.Add(-3*time.Hour), time.Minute)[:1], w, now, false)
	if len(ranges) != 1 || len(notices) != 0 || ranges[0].step != 15*time.Second || !ranges[0].start.Equal(now.Add(-3*time.Hour-time.Hour)) {
		t.Errorf("ranges %+v notices %+v", ranges[0], notices)
	}
}
