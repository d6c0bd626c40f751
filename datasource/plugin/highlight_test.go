package plugin

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// The evaluator's marks reach the live topology, stay while Prometheus is
// unreachable, and go when the signal recovers (highlight.go). The scenario
// test (highlight_scenario_test.go) measures them on real Prometheus data.
func TestHighlightMarksLiveTopology(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, nil, nil)
	now := time.Now().Truncate(time.Second)
	at := func(m float64) time.Time { return now.Add(time.Duration(m * float64(time.Minute))) }
	web := []string{"template[/etc/web/app.conf]"}
	e.publish(t,
		handlerJSON(run{node: "web-1", env: "prod", role: "web", id: "h1", start: at(-90), end: at(-89), updated: web}),
		handlerJSON(run{node: "web-2", env: "prod", role: "web", id: "h2", start: at(-84), end: at(-83), updated: web}),
		handlerJSON(run{node: "db-1", env: "prod", role: "db", id: "h3", start: at(-60), end: at(-59), updated: []string{"file[/etc/db.conf]"}}),
	)
	e.waitReports(t, 3)
	var recovered atomic.Bool
	noise := noisy(0.0003)
	fp := &fakeProm{f: func(q string, ts time.Time) float64 {
		v := 0.005 + noise()
		// The web errors rise with the roll-out; once recovered, they are
		// gone from 20 minutes ago on (the rise itself still scores).
		if strings.Contains(q, `service="web"`) && !ts.Before(at(-89)) && !(recovered.Load() && ts.After(at(-20))) {
			v += 0.04
		}
		return v
	}}
	inst.prom = fp // highlightScore: the default
	ctx := context.Background()

	frame := func() *data.Frame {
		t.Helper()
		return mustFrames(t, inst, map[string]any{"queryType": "topology"}, now.Add(-time.Hour), time.Now())[0]
	}
	waitFor := func(what string, ok func(f *data.Frame) bool) *data.Frame {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			f := frame()
			if ok(f) {
				return f
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 30 s; highlighted %s, suspect %q", what, joined(t, f, "highlighted"), col(t, f, "detail__suspect"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if _, err := inst.evaluateSuspects(ctx, time.Now(), runFilter{}); err != nil {
		t.Fatal(err)
	}
	// ids: db-1, web-1, web-2.
	f := waitFor("the web roll-out lit up", func(f *data.Frame) bool { return joined(t, f, "highlighted") == "false,true,true" })
	why := col(t, f, "detail__suspect")
	if why[0] != "" || !strings.HasPrefix(why[1], "template[/etc/web/app.conf] on 2 nodes (set ") || !strings.Contains(why[1], "): score ") || why[1] != why[2] {
		t.Errorf("detail__suspect %q", why)
	}
	var notices []string
	for _, n := range f.Meta.Notices {
		notices = append(notices, n.Text)
	}
	if len(notices) != 1 || !strings.HasPrefix(notices[0], "Suspect change in prod / web on 2 nodes, score ") {
		t.Errorf("notices %q", notices)
	}

	// Prometheus down: the marks stay, logged once.
	fp.err = errors.New("connection refused")
	for range 2 {
		_, err := inst.evaluateSuspects(ctx, time.Now(), runFilter{})
		inst.suspects.noteError(inst, err)
	}
	if got := joined(t, frame(), "highlighted"); got != "false,true,true" {
		t.Errorf("Prometheus unreachable: highlighted %s, want the last marks kept", got)
	}
	if n := strings.Count(e.logs.String(), "cannot score recent change sets"); n != 1 {
		t.Errorf("%d warnings for one outage, want 1; logs:\n%s", n, e.logs)
	}

	// The errors are gone: the marks too, the column stays (empty).
	fp.err = nil
	recovered.Store(true)
	targets, err := inst.evaluateSuspects(ctx, time.Now(), runFilter{})
	inst.suspects.noteError(inst, err)
	for _, tg := range targets {
		if tg.set.Role == "web" && (!tg.result.Recovered || tg.result.Score < inst.settings.HighlightScore) {
			t.Errorf("web roll-out after the recovery: score %.1f, recovered %v; want a passing score, recovered", tg.result.Score, tg.result.Recovered)
		}
	}
	f = waitFor("the marks cleared", func(f *data.Frame) bool { return joined(t, f, "highlighted") == "false,false,false" })
	if got := strings.Join(col(t, f, "detail__suspect"), ","); got != ",," {
		t.Errorf("detail__suspect %q after recovery", got)
	}
	if !strings.Contains(e.logs.String(), "recent change sets scored again") {
		t.Errorf("no log of the recovery:\n%s", e.logs)
	}
}
