package main

// The built plugin over Grafana's plugin protocol (the helpers of
// grpc_test.go) answering impact and changes for a range with thousands of
// runs: designed incidents (internal/incident) whose reports go through the
// real RabbitMQ, their APM metrics in a real Prometheus serving promtool
// blocks.

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"google.golang.org/protobuf/proto"

	"github.com/runlens/runlens/internal/incident"
	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/pkg/broker"
)

// withSettings is a copy of ds's plugin context with more jsonData (a new
// uid: another datasource instance in the plugin).
func withSettings(t *testing.T, ds *testDataSource, uid string, more map[string]any) *testDataSource {
	t.Helper()
	var jd map[string]any
	if err := json.Unmarshal(ds.ctx.DataSourceInstanceSettings.JsonData, &jd); err != nil {
		t.Fatal(err)
	}
	for k, v := range more {
		jd[k] = v
	}
	raw, _ := json.Marshal(jd)
	pc := proto.Clone(ds.ctx).(*pluginv2.PluginContext)
	pc.DataSourceInstanceSettings.JsonData, pc.DataSourceInstanceSettings.Uid = raw, uid
	return &testDataSource{exchange: ds.exchange, stream: ds.stream, ctx: pc}
}

func TestPluginImpactOverGRPC(t *testing.T) {
	end := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	var incs []*incident.Incident
	var reports [][]byte
	changes := 0
	for seed := uint64(101); seed <= 103; seed++ {
		inc := incident.New(incident.Config{Seed: seed, End: end})
		incs = append(incs, inc)
		reports = append(reports, inc.Reports()...)
		changes += inc.Changes()
	}
	promURL := incident.ServeBlocks(t, incs...)

	p := startPlugin(t, buildPlugin(t))
	ds := withSettings(t, newTestDataSource(t), "runlens-grpc-impact", map[string]any{"prometheusUrl": promURL, "replay": "24h"})
	// The stream is declared up front, so the reports published before the
	// plugin's instance starts are kept for its replay.
	ch, err := broker.DeclareHistory(rabbittest.Dial(t), broker.History{Stream: ds.stream, Exchange: ds.exchange}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = ch.Close()
	ds.publish(t, reports...)
	from, to := incs[0].Start, end

	// Wait for the replay: the runs table shows every run.
	waitUntil(t, "every run replayed", 60*time.Second, func() bool {
		f := ds.query(t, p, map[string]any{"queryType": "runs"}, from, to)
		return len(f) == 1 && f[0].Rows() == len(reports)
	})

	// Every environment at once: thousands of runs in the range.
	f := ds.query(t, p, map[string]any{"queryType": "impact"}, from, to)
	if len(f) != 1 {
		t.Fatalf("impact: %d frames", len(f))
	}
	impact := f[0]
	for _, name := range []string{"time", "timeEnd", "environment", "role", "nodes", "runs", "nodeList", "title", "before", "after", "delta", "score", "detail"} {
		if _, i := impact.FieldByName(name); i < 0 {
			t.Errorf("impact has no field %q (BRIEF.md)", name)
		}
	}
	if impact.Meta == nil || len(impact.Meta.Stats) == 0 || impact.Meta.Stats[0].Value > 24 {
		t.Errorf("impact meta %+v: want the Prometheus query count, a handful (one per environment and role)", impact.Meta)
	}
	t.Logf("%d runs, %d changes: %d change sets ranked with %v Prometheus range queries", len(reports), changes, impact.Rows(), impact.Meta.Stats[0].Value)
	// The best suspect overall is one of the culprits.
	top := column(t, impact, "title")[0] + " (" + column(t, impact, "environment")[0] + ")"
	if !slices.ContainsFunc(incs, func(inc *incident.Incident) bool {
		return strings.HasPrefix(column(t, impact, "title")[0], inc.Culprit.Resources[1]) && column(t, impact, "environment")[0] == inc.Environment
	}) {
		t.Errorf("top of the ranking: %s, want a culprit", top)
	}
	// The score's fields: numbers, explained.
	if _, err := strconv.ParseFloat(column(t, impact, "score")[0], 64); err != nil || !strings.Contains(column(t, impact, "detail")[0], "z = ") {
		t.Errorf("score %q detail %q", column(t, impact, "score")[0], column(t, impact, "detail")[0])
	}

	// Per environment: the culprit first; changes gives one annotation per
	// ranked set, regions with their links.
	for _, inc := range incs {
		q := map[string]any{"queryType": "impact", "environment": inc.Environment}
		f := ds.query(t, p, q, inc.Start, inc.End)[0]
		if role, title := column(t, f, "role")[0], column(t, f, "title")[0]; role != inc.Culprit.Role || !strings.Contains(title, inc.Culprit.Resources[0]) {
			t.Errorf("%s: top %s (%s), want the culprit %s on %s\n%s", inc.Environment, title, role, inc.Culprit.Resources[0], inc.Culprit.Role, strings.Join(inc.Story, "\n"))
		}
		q["groupBy"] = "run"
		if rf := ds.query(t, p, q, inc.Start, inc.End)[0]; rf.Rows() != inc.Changes() {
			t.Errorf("%s by run: %d rows, want %d", inc.Environment, rf.Rows(), inc.Changes())
		}
		cf := ds.query(t, p, map[string]any{"queryType": "changes", "environment": inc.Environment}, inc.Start, inc.End)[0]
		for _, name := range []string{"time", "timeEnd", "title", "text", "tags"} {
			if _, i := cf.FieldByName(name); i < 0 {
				t.Errorf("changes has no field %q (BRIEF.md)", name)
			}
		}
		if cf.Rows() != f.Rows() || cf.Meta == nil || cf.Meta.DataTopic != data.DataTopicAnnotations {
			t.Errorf("%s: %d annotations for %d ranked sets, meta %+v", inc.Environment, cf.Rows(), f.Rows(), cf.Meta)
		}
		culprit := slices.IndexFunc(column(t, cf, "title"), func(s string) bool {
			return strings.HasPrefix(s, inc.Culprit.Resources[1]) && strings.Contains(s, " on ")
		})
		if culprit < 0 {
			t.Errorf("%s: no annotation for the culprit", inc.Environment)
			continue
		}
		text := column(t, cf, "text")[culprit]
		if !strings.Contains(text, "/d/runlens-topology?var-node=%28%3F%3A") || !strings.Contains(text, "Nodes: ") ||
			column(t, cf, "tags")[culprit] != "runlens,"+inc.Environment+","+inc.Culprit.Role+","+statusOf(t, cf, culprit) {
			t.Errorf("%s: culprit annotation text %q tags %q", inc.Environment, text, column(t, cf, "tags")[culprit])
		}
	}
	// The frames' meta arrives over the protocol.
	if f := ds.query(t, p, map[string]any{"queryType": "impact", "environment": incs[0].Environment}, from, to)[0]; f.Meta == nil ||
		!strings.Contains(f.Meta.ExecutedQueryString, `environment="`+incs[0].Environment+`"`) {
		t.Errorf("executed queries %q", f.Meta.ExecutedQueryString)
	}
}

func statusOf(t *testing.T, f *data.Frame, i int) string { return column(t, f, "status")[i] }
