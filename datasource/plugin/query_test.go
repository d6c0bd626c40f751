package plugin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/simulator"
	"github.com/runlens/runlens/pkg/topology"
)

func TestTopologyQuery(t *testing.T) {
	e := newEnv(t)
	now := time.Now().Truncate(time.Second)
	// Published before the start: the replay rebuilds the fleet.
	e.publish(t,
		handlerJSON(run{node: "web-1", env: "prod", role: "web", id: "w1", end: now.Add(-3 * time.Minute), updated: []string{"file[/etc/web.conf]"}}),
		handlerJSON(run{node: "db-1", env: "prod", role: "db", id: "d1", end: now.Add(-2 * time.Minute), failed: true, errMsg: "boom"}),
		handlerJSON(run{node: "web-2", env: "staging", role: "web", id: "w2", end: now.Add(-time.Minute)}),
		[]byte(`not a report`),
	)
	inst := e.start(t, nil, nil)
	e.waitReports(t, 4)
	from, to := now.Add(-time.Hour), now.Add(time.Minute)

	frames := mustFrames(t, inst, map[string]any{"queryType": "topology"}, from, to)
	if len(frames) != 2 {
		t.Fatalf("%d frames, want nodes and edges", len(frames))
	}
	nodes, edges := frames[0], frames[1]
	if got := joined(t, nodes, "id"); got != "db-1,web-1,web-2" {
		t.Errorf("node ids %s", got)
	}
	if got := joined(t, nodes, "color"); got != "red,green,green" {
		t.Errorf("colors %s, want db-1 failed", got)
	}
	if got := joined(t, nodes, "subtitle"); got != "prod / db,prod / web,staging / web" {
		t.Errorf("subtitles %s", got)
	}
	// Live frames are lean: the details the subtitle shows, and the long
	// lists, are in a past range's frames only.
	if _, i := nodes.FieldByName("detail__environment"); i >= 0 {
		t.Error("live frame has detail__environment")
	}
	if got := joined(t, edges, "source") + ">" + joined(t, edges, "target"); got != "web-1>db-1" {
		t.Errorf("edges %s (topology web: [db], within prod)", got)
	}
	for _, f := range frames {
		if f.RefID != "A" || f.Meta == nil || f.Meta.PreferredVisualization != data.VisTypeNodeGraph {
			t.Errorf("frame %q: refId %q meta %+v", f.Name, f.RefID, f.Meta)
		}
	}
	if !strings.HasPrefix(nodes.Meta.Channel, "ds/runlens-test/topology/") || !strings.HasSuffix(nodes.Meta.Channel, "/nodes") ||
		!strings.HasSuffix(edges.Meta.Channel, "/edges") {
		t.Errorf("channels %q %q", nodes.Meta.Channel, edges.Meta.Channel)
	}
	if !strings.Contains(e.logs.String(), "skipping rejected reports") {
		t.Errorf("the rejected message was not logged:\n%s", e.logs)
	}

	// Filters.
	for _, tc := range []struct {
		q    map[string]any
		want string
	}{
		{map[string]any{"environment": "prod"}, "db-1,web-1"},
		{map[string]any{"role": "web"}, "web-1,web-2"},
		// The node regex is anchored: web-1 does not match web-10.
		{map[string]any{"node": "web-.*"}, "web-1,web-2"},
		{map[string]any{"node": "web"}, ""},
		{map[string]any{"node": "web-1"}, "web-1"},
		{map[string]any{"node": "db-1|web-2", "environment": "prod"}, "db-1"},
		// Lists and All values, as dashboard variables send them.
		{map[string]any{"environment": "staging,prod"}, "db-1,web-1,web-2"},
		{map[string]any{"environment": "$__all", "node": ".*", "role": "All"}, "db-1,web-1,web-2"},
		{map[string]any{"environment": "*", "node": "$__all", "role": ".*"}, "db-1,web-1,web-2"},
		{map[string]any{"role": "db, web", "environment": "prod"}, "db-1,web-1"},
		{map[string]any{"groupBy": "role"}, "db,web"},
		{map[string]any{"groupBy": "role", "environment": "staging"}, "web"},
	} {
		tc.q["queryType"] = "topology"
		f := mustFrames(t, inst, tc.q, from, to)
		got := ""
		if f[0].Rows() > 0 {
			got = joined(t, f[0], "id")
		}
		if got != tc.want {
			t.Errorf("%v: ids %s, want %s", tc.q, got, tc.want)
		}
	}
	// Pinned by default (and with the legacy layout: true); "auto" leaves
	// the layout to the panel, on a channel of its own.
	if _, i := nodes.FieldByName("fixedX"); i < 0 {
		t.Errorf("default layout: no fixedX field")
	}
	f := mustFrames(t, inst, map[string]any{"queryType": "topology", "layout": true}, from, to)
	if f[0].Meta.Channel != nodes.Meta.Channel {
		t.Errorf("layout: true is not the default view: %s, %s", f[0].Meta.Channel, nodes.Meta.Channel)
	}
	f = mustFrames(t, inst, map[string]any{"queryType": "topology", "layout": "auto"}, from, to)
	if _, i := f[0].FieldByName("fixedX"); i >= 0 || f[0].Meta.Channel == nodes.Meta.Channel {
		t.Errorf("layout auto: fixedX present or the same channel %s", f[0].Meta.Channel)
	}

	// Errors name the culprit.
	r := query(t, inst, map[string]any{"queryType": "topology", "node": "web-("}, from, to)
	if r.Error == nil || !strings.Contains(r.Error.Error(), `"web-("`) {
		t.Errorf("invalid regex: %v", r.Error)
	}
	r = query(t, inst, map[string]any{"queryType": "topology", "groupBy": "rack"}, from, to)
	if r.Error == nil || !strings.Contains(r.Error.Error(), "rack") {
		t.Errorf("bad groupBy: %v", r.Error)
	}
	r = query(t, inst, map[string]any{"queryType": "topology", "layout": "grid"}, from, to)
	if r.Error == nil || !strings.Contains(r.Error.Error(), `layout "grid"`) {
		t.Errorf("bad layout: %v", r.Error)
	}
	r = query(t, inst, map[string]any{"queryType": "nope"}, from, to)
	if r.Error == nil || !strings.Contains(r.Error.Error(), "nope") {
		t.Errorf("bad queryType: %v", r.Error)
	}
}

func TestTopologyInThePast(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, nil, nil)
	now := time.Now().Truncate(time.Second)
	t1, t2 := now.Add(-30*time.Minute), now.Add(-10*time.Minute)
	e.publish(t,
		handlerJSON(run{node: "app-1", env: "prod", role: "app", id: "a1", end: t1, failed: true, errMsg: "exit 1"}),
		handlerJSON(run{node: "app-1", env: "prod", role: "app", id: "a2", end: t2}),
		handlerJSON(run{node: "app-2", env: "prod", role: "app", id: "b1", end: t2.Add(time.Minute)}),
	)
	e.waitReports(t, 3)

	past := mustFrames(t, inst, map[string]any{"queryType": "topology"}, now.Add(-time.Hour), now.Add(-20*time.Minute))
	if got := joined(t, past[0], "id") + " " + joined(t, past[0], "color"); got != "app-1 red" {
		t.Errorf("at T1 < to < T2: %s, want app-1 red (app-2 not there yet)", got)
	}
	if past[0].Meta.Channel != "" {
		t.Errorf("a past view has a live channel %q", past[0].Meta.Channel)
	}
	if got := joined(t, past[0], "detail__last_error"); !strings.Contains(got, "exit 1") {
		t.Errorf("past last error %q", got)
	}
	nowFrames := mustFrames(t, inst, map[string]any{"queryType": "topology"}, now.Add(-time.Hour), now)
	if got := joined(t, nowFrames[0], "id") + " " + joined(t, nowFrames[0], "color"); got != "app-1,app-2 green,green" {
		t.Errorf("now: %s", got)
	}
	if nowFrames[0].Meta.Channel == "" {
		t.Errorf("a view ending now has no channel")
	}
}

func TestTopologyTooManyNodesGroupsByRole(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, nil, nil)
	// Straight into the fleet: publishing 201 reports adds nothing to
	// what the other tests check of the feed.
	now := time.Now()
	for i := range topology.NodeGraphLimit + 1 {
		inst.fleet.Apply(&report.Run{Node: "n" + string(rune('a'+i%26)) + time.Duration(i).String(), Environment: "prod",
			Roles: []string{"web"}, Status: report.StatusSuccess, End: now, Kind: report.KindRun}, now)
	}
	f := mustFrames(t, inst, map[string]any{"queryType": "topology"}, now.Add(-time.Hour), now)
	if got := joined(t, f[0], "id"); got != "web" {
		t.Errorf("ids %s, want the role view", got)
	}
	if len(f[0].Meta.Notices) == 0 || !strings.Contains(f[0].Meta.Notices[0].Text, "grouped by role") {
		t.Errorf("notices %+v", f[0].Meta.Notices)
	}
	f = mustFrames(t, inst, map[string]any{"queryType": "topology", "node": "na.*"}, now.Add(-time.Hour), now)
	if f[0].Rows() < 2 || len(f[0].Meta.Notices) != 0 {
		t.Errorf("filtered below the limit: %d rows, notices %+v", f[0].Rows(), f[0].Meta.Notices)
	}
}

func TestRunsQuery(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, nil, nil)
	sim := simulator.New(simulator.Config{Nodes: 6, Seed: 7, NodeAttributeBytes: 256})
	now := time.Now().Truncate(time.Second)
	runs := sim.Round(now.Add(-10*time.Minute), 5*time.Minute, simulator.Random)
	var bodies [][]byte
	for _, r := range runs {
		bodies = append(bodies, r.Messages...)
	}
	e.publish(t, bodies...)
	e.waitReports(t, uint64(len(bodies)))

	from, to := now.Add(-time.Hour), now
	f := mustFrames(t, inst, map[string]any{"queryType": "runs"}, from, to)[0]
	if f.Rows() != len(runs) {
		t.Fatalf("%d rows, want %d", f.Rows(), len(runs))
	}
	for _, name := range []string{"node", "environment", "status", "start", "end", "duration", "changed", "failed", "error"} {
		if _, i := f.FieldByName(name); i < 0 {
			t.Errorf("runs frame lacks %q", name)
		}
	}
	want := map[string]simulator.Run{}
	for _, r := range runs {
		want[r.Node.Name] = r
	}
	nodes, changed, status := col(t, f, "node"), col(t, f, "changed"), col(t, f, "status")
	for i, n := range nodes {
		w := want[n]
		if changed[i] != strconv.Itoa(w.Updated) {
			t.Errorf("%s: changed %s, want %d", n, changed[i], w.Updated)
		}
		if (status[i] == "failure") != w.Failed {
			t.Errorf("%s: status %s, failed %v", n, status[i], w.Failed)
		}
	}
	env := sim.Nodes[0].Environment
	f = mustFrames(t, inst, map[string]any{"queryType": "runs", "environment": env}, from, to)[0]
	for _, e := range col(t, f, "environment") {
		if e != env {
			t.Errorf("environment filter %s let %s through", env, e)
		}
	}
	if f.Rows() == 0 || f.Rows() == len(runs) {
		t.Errorf("environment filter: %d rows", f.Rows())
	}
	// A range that ends before the runs: nothing.
	f = mustFrames(t, inst, map[string]any{"queryType": "runs"}, from, now.Add(-11*time.Minute))[0]
	if f.Rows() != 0 {
		t.Errorf("%d runs before they happened", f.Rows())
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	e := newEnv(t)
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer prom.Close()
	secrets := map[string]string{"amqpPassword": "amqp-S3cret-pw", "prometheusPassword": "prom-S3cret-pw", "alertmanagerPassword": "am-S3cret-pw"}
	i, err := Factory(slogTo(e.logs))(context.Background(), e.settings(map[string]any{
		"amqpUrl": "amqp://runlens-nobody@127.0.0.1:5672/", "prometheusUrl": prom.URL, "prometheusUser": "grafana",
		"alertmanagerUrl": prom.URL, "alertmanagerUser": "grafana",
	}, secrets))
	if err != nil {
		t.Fatal(err)
	}
	inst := i.(*Instance)
	defer inst.Dispose()
	res, _ := inst.CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	rabbittest.WaitFor(t, 10*time.Second, "a failed login logged", func() bool { return strings.Contains(e.logs.String(), "reconnecting") })
	r := query(t, inst, map[string]any{"queryType": "impact"}, time.Now().Add(-time.Hour), time.Now())
	all := e.logs.String() + res.Message
	if r.Error != nil {
		all += r.Error.Error()
	}
	for k, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("%s appears in the logs or messages:\n%s", k, all)
		}
	}
	if !strings.Contains(res.Message, "amqp://runlens-nobody:xxxxx@127.0.0.1:5672/") {
		t.Errorf("health message does not show the redacted URL: %s", res.Message)
	}
	if !strings.Contains(res.Message, "Prometheus at "+prom.URL+": 401 Unauthorized") {
		t.Errorf("health message: %s", res.Message)
	}
}
