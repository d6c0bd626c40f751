package plugin

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/config"
)

// TestChangeSetAnnotations: by default one annotation per change set, a
// region from its first start to its last end.
func TestChangeSetAnnotations(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, map[string]any{"changeGap": "20m"}, nil)
	now := time.Now().Truncate(time.Second)
	at := func(m float64) time.Time { return now.Add(time.Duration(m * float64(time.Minute))) }
	conf := []string{"template[/etc/web/app.conf]"}
	e.publish(t,
		// A roll-out to web in two waves, 5 minutes apart.
		handlerJSON(run{node: "web-1", env: "prod", role: "web", id: "s1", start: at(-60), end: at(-59), updated: conf}),
		handlerJSON(run{node: "web-2", env: "prod", role: "web", id: "s2", start: at(-59.9), end: at(-58.9), updated: conf}),
		handlerJSON(run{node: "web-3", env: "prod", role: "web", id: "s3", start: at(-55), end: at(-54), updated: conf}),
		// A failing db node.
		handlerJSON(run{node: "db-1", env: "prod", role: "db", id: "s4", start: at(-50), end: at(-49.5), failed: true, errMsg: "<migrate> failed"}),
		// The web template rolled back on two of the nodes.
		handlerJSON(run{node: "web-1", env: "prod", role: "web", id: "s5", start: at(-40), end: at(-39), updated: conf}),
		handlerJSON(run{node: "web-2", env: "prod", role: "web", id: "s6", start: at(-39.9), end: at(-39), updated: conf}),
		// No change: not an annotation.
		handlerJSON(run{node: "web-3", env: "prod", role: "web", id: "s7", start: at(-30), end: at(-29.5)}),
	)
	e.waitReports(t, 7)
	f := mustFrames(t, inst, map[string]any{"queryType": "changes"}, now.Add(-2*time.Hour), now)[0]
	if got := joined(t, f, "title"); got != "template[/etc/web/app.conf] on 3 nodes,db-1: run failed,template[/etc/web/app.conf] on 2 nodes" {
		t.Fatalf("titles %q", got)
	}
	for _, name := range []string{"time", "timeEnd", "title", "text", "tags", "environment", "role", "nodes", "runs", "waves", "status", "nodeList", "nodeRegex", "set", "undoes"} {
		if _, i := f.FieldByName(name); i < 0 {
			t.Errorf("no field %q", name)
		}
	}
	if f.Meta == nil || f.Meta.DataTopic != "annotations" {
		t.Errorf("meta %+v: want the annotations data topic", f.Meta)
	}
	tm, tmEnd := col(t, f, "time"), col(t, f, "timeEnd")
	if tm[0] != at(-60).String() || tmEnd[0] != at(-54).String() {
		t.Errorf("region %s → %s, want the first start %s → the last end %s", tm[0], tmEnd[0], at(-60), at(-54))
	}
	if got := joined(t, f, "waves") + " " + joined(t, f, "nodes") + " " + joined(t, f, "runs"); got != "2,1,1 3,1,2 3,1,2" {
		t.Errorf("waves nodes runs: %s", got)
	}
	if got := col(t, f, "tags"); got[0] != "runlens,prod,web,success" || got[1] != "runlens,prod,db,failure" {
		t.Errorf("tags %q", got)
	}
	if got := col(t, f, "nodeRegex")[0]; got != "(?:web-1|web-2|web-3)" {
		t.Errorf("nodeRegex %q", got)
	}
	ids, undoes := col(t, f, "set"), col(t, f, "undoes")
	if undoes[2] != ids[0] || undoes[0] != "" {
		t.Errorf("the roll-back should undo the roll-out: sets %q undoes %q", ids, undoes)
	}
	text := col(t, f, "text")
	for _, want := range []string{
		"<b>3 nodes</b> in prod, role web: 3 runs in 2 waves over 6m0s",
		"Waves:<ol><li>+0s: 2 nodes, 1m6s</li><li>+5m0s: 1 node, 1m0s</li></ol>",
		"<li>template[/etc/web/app.conf]</li>", "Nodes: web-1, web-2, web-3",
		`href="/d/runlens-topology?var-node=` + url.QueryEscape("(?:web-1|web-2|web-3)") + `&amp;var-environment=prod&amp;from=`,
		`href="/d/runlens-fleet?var-node=web-1&amp;var-node=web-2&amp;var-node=web-3&amp;var-environment=prod`,
		`href="/d/runlens-deploys?var-environment=prod&amp;var-service=web&amp;from=`,
	} {
		if !strings.Contains(text[0], want) {
			t.Errorf("text lacks %s:\n%s", want, text[0])
		}
	}
	if !strings.Contains(text[1], "&lt;migrate&gt; failed") {
		t.Errorf("error not (escaped) in the text: %s", text[1])
	}
	if !strings.Contains(text[2], "Changes again what template[/etc/web/app.conf] on 3 nodes changed 20m0s earlier") {
		t.Errorf("roll-back text: %s", text[2])
	}

	// The node filter selects the sets with that node, whole.
	f = mustFrames(t, inst, map[string]any{"queryType": "changes", "node": "web-3"}, now.Add(-2*time.Hour), now)[0]
	if got := joined(t, f, "nodes"); got != "3" {
		t.Errorf("node web-3: sets of %s nodes, want the roll-out of 3", got)
	}
	// A range starting after the roll-out's first wave still shows it
	// whole (runs before the range are grouped too).
	f = mustFrames(t, inst, map[string]any{"queryType": "changes", "role": "web"}, at(-56), now)[0]
	if got := joined(t, f, "nodes"); got != "3,2" || col(t, f, "time")[0] != at(-60).String() {
		t.Errorf("range from -56m: nodes %s, first time %s", got, col(t, f, "time")[0])
	}
	// A topology groupBy left over from a switch of query type reads as
	// the default; any other is the query's error.
	f = mustFrames(t, inst, map[string]any{"queryType": "changes", "groupBy": "role", "role": "web"}, now.Add(-2*time.Hour), now)[0]
	if got := joined(t, f, "nodes"); got != "3,2" {
		t.Errorf("groupBy role (from topology): %s, want the sets", got)
	}
	r := query(t, inst, map[string]any{"queryType": "changes", "groupBy": "wave"}, now.Add(-time.Hour), now)
	if r.Error == nil || r.Status != backend.StatusBadRequest || !strings.Contains(r.Error.Error(), `groupBy "wave"`) {
		t.Errorf("groupBy wave: %v %v", r.Status, r.Error)
	}
}

func TestChangeGapSetting(t *testing.T) {
	for raw, want := range map[string]time.Duration{"": 30 * time.Minute, "10m": 10 * time.Minute} {
		s, err := ParseSettings(context.Background(), backend.DataSourceInstanceSettings{JSONData: []byte(`{"amqpUrl":"amqp://h/","changeGap":"` + raw + `"}`)})
		if err != nil || s.ChangeGap != want {
			t.Errorf("changeGap %q: %v %v, want %v", raw, s.ChangeGap, err, want)
		}
	}
	for _, raw := range []string{"10s", "x", "-5m"} {
		if _, err := ParseSettings(context.Background(), backend.DataSourceInstanceSettings{JSONData: []byte(`{"amqpUrl":"amqp://h/","changeGap":"` + raw + `"}`)}); err == nil || !strings.Contains(err.Error(), "changeGap") {
			t.Errorf("changeGap %q: error %v", raw, err)
		}
	}
}

func TestNodeRegexAndParams(t *testing.T) {
	if got := nodeRegex([]string{"web-1.example.com", "a+b"}); got != `(?:web-1\.example\.com|a\+b)` {
		t.Errorf("nodeRegex %q", got)
	}
	if got := nodeParams([]string{"a b", "c&d"}); got != "var-node=a+b&var-node=c%26d" {
		t.Errorf("nodeParams %q", got)
	}
	many := make([]string, maxLinkedNodes+1)
	for i := range many {
		many[i] = "n"
	}
	if nodeRegex(many) != "" || nodeParams(many) != "" {
		t.Errorf("past %d nodes the links filter by role", maxLinkedNodes)
	}
}

// TestChangesQueryByRun: groupBy "run" keeps one annotation per run.
func TestChangesQueryByRun(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, nil, nil)
	now := time.Now().Truncate(time.Second)
	var many []string
	for i := range 25 {
		many = append(many, "file[/etc/app/"+string(rune('a'+i))+".conf]")
	}
	e.publish(t,
		handlerJSON(run{node: "web-1", env: "prod", role: "web", id: "c1", end: now.Add(-5 * time.Minute), updated: many}),
		handlerJSON(run{node: "db-1", env: "prod", role: "db", id: "c2", end: now.Add(-4 * time.Minute), failed: true, errMsg: "<migrate> failed"}),
		handlerJSON(run{node: "web-2", env: "prod", role: "web", id: "c3", end: now.Add(-3 * time.Minute)}), // no change
	)
	e.waitReports(t, 3)
	f := mustFrames(t, inst, map[string]any{"queryType": "changes", "groupBy": "run"}, now.Add(-time.Hour), now)[0]
	if got := joined(t, f, "title"); got != "web-1: 25 changed,db-1: run failed" {
		t.Fatalf("titles %q", got)
	}
	for _, name := range []string{"time", "timeEnd", "title", "text", "tags"} {
		if _, i := f.FieldByName(name); i < 0 {
			t.Errorf("no field %q", name)
		}
	}
	tm, tmEnd := col(t, f, "time"), col(t, f, "timeEnd")
	if tm[0] == tmEnd[0] {
		t.Errorf("time %s = timeEnd: want the run's start and end", tm[0])
	}
	text := col(t, f, "text")
	if !strings.Contains(text[0], `href="/d/runlens-topology?var-node=web-1"`) ||
		!strings.Contains(text[0], `/d/runlens-deploys?var-environment=prod&amp;var-service=web`) {
		t.Errorf("links missing: %s", text[0])
	}
	if !strings.Contains(text[0], "file[/etc/app/a.conf]") || strings.Contains(text[0], "/etc/app/u.conf") ||
		!strings.Contains(text[0], "and 5 more") {
		t.Errorf("want 20 resources listed and 5 more: %s", text[0])
	}
	if !strings.Contains(text[1], "&lt;migrate&gt; failed") {
		t.Errorf("error not (escaped) in the text: %s", text[1])
	}
	if got := col(t, f, "tags"); got[0] != "runlens,web-1,prod,web,changed" || got[1] != "runlens,db-1,prod,db,failed" {
		t.Errorf("tags %q", got)
	}
	f = mustFrames(t, inst, map[string]any{"queryType": "changes", "groupBy": "run", "role": "db"}, now.Add(-time.Hour), now)[0]
	if got := joined(t, f, "title"); got != "db-1: run failed" {
		t.Errorf("role filter: %q", got)
	}
	f = mustFrames(t, inst, map[string]any{"queryType": "changes", "groupBy": "run", "node": "web-.*"}, now.Add(-time.Hour), now)[0]
	if got := joined(t, f, "title"); got != "web-1: 25 changed" {
		t.Errorf("node filter: %q", got)
	}
	// Sub-path Grafana: links follow root_url.
	raw := []byte(`{"queryType":"changes","groupBy":"run","node":"web-1"}`)
	resp, _ := inst.QueryData(context.Background(), &backend.QueryDataRequest{
		PluginContext: backend.PluginContext{GrafanaConfig: backendConfig("https://grafana.example.com/grafana/")},
		Queries:       []backend.DataQuery{{RefID: "A", JSON: raw, TimeRange: backend.TimeRange{From: now.Add(-time.Hour), To: now}}},
	})
	if txt := col(t, resp.Responses["A"].Frames[0], "text")[0]; !strings.Contains(txt, `href="/grafana/d/runlens-topology?var-node=web-1"`) {
		t.Errorf("sub path: %s", txt)
	}
}

func backendConfig(appURL string) *config.GrafanaCfg {
	return config.NewGrafanaCfg(map[string]string{config.AppURL: appURL})
}
