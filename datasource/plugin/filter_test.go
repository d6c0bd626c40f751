package plugin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/runlens/runlens/pkg/report"
)

// The variable conventions of contracts.md: comma lists, All values.
func TestParseList(t *testing.T) {
	for raw, want := range map[string][]string{
		"":                nil,
		"prod":            {"prod"},
		" staging, prod ": {"prod", "staging"},
		"prod,prod,,":     {"prod"},
		"$__all":          nil,
		"prod,All":        nil,
		"*":               nil,
		".*":              nil,
	} {
		got, err := parseList("environment", raw)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parseList(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
	if _, err := parseList("role", strings.Repeat("r,", maxPatternBytes)); err == nil || !strings.Contains(err.Error(), "role filter is") {
		t.Errorf("long list: %v", err)
	}
	for raw, want := range map[string]string{"": "", "$__all": "", ".*": "", " web-.* ": "web-.*"} {
		if got := normalizeNode(raw); got != want {
			t.Errorf("normalizeNode(%q) = %q", raw, got)
		}
	}
}

// The node regex is anchored: web1 from an annotation link does not match
// web10; a multi-value variable's (?:a|b) still works, and so does a
// single textbox value typed as a regex.
func TestNodeFilterAnchored(t *testing.T) {
	for _, c := range []struct {
		expr string
		yes  []string
		no   []string
	}{
		{"web1", []string{"web1"}, []string{"web10", "aweb1"}},
		{"web-.*", []string{"web-1", "web-"}, []string{"a-web-1"}},
		{`(?:web1|db\.prod)`, []string{"web1", "db.prod"}, []string{"web10", "dbxprod"}},
		{"a|b", []string{"a", "b"}, []string{"ab", "xa"}}, // anchored as a whole, not ^a|b$
	} {
		m, err := newNodeMatcher(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		m.begin(0)
		for _, n := range c.yes {
			if !m.match(n) {
				t.Errorf("%q does not match %q", c.expr, n)
			}
		}
		for _, n := range c.no {
			if m.match(n) {
				t.Errorf("%q matches %q", c.expr, n)
			}
		}
	}
	for expr, want := range map[string]string{
		"web-(":                                 `node filter "web-(" is not a valid regular expression: error parsing regexp: missing closing ): ` + "`web-(`",
		strings.Repeat("a", 5000):               "node filter is 5000 bytes long; the limit is 4096",
		`(?:.?){1000}(?:.?){1000}(?:.?){1000}z`: "compiles to 6005 instructions; the limit is 5000: large repeat counts",
		`(?:.?){1000}(?:.?){1000}z`:             "", // 4,005: under the limit
	} {
		_, err := compileNode(expr)
		if want == "" {
			if err != nil {
				t.Errorf("%.40q: %v, want it accepted (under the limit)", expr, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("compileNode(%.40q): %v, want %q", expr, err, want)
		}
	}
}

func TestLayoutOption(t *testing.T) {
	for raw, want := range map[string]layoutOption{`"pinned"`: layoutPinned, `"auto"`: layoutAuto, `true`: layoutPinned,
		`false`: layoutPinned, `null`: layoutPinned, `""`: layoutPinned} {
		var l layoutOption
		if err := json.Unmarshal([]byte(raw), &l); err != nil || l != want {
			t.Errorf("%s: %q %v", raw, l, err)
		}
	}
	for _, raw := range []string{`"grid"`, `3`, `{}`} {
		var l layoutOption
		if err := json.Unmarshal([]byte(raw), &l); err == nil {
			t.Errorf("%s accepted", raw)
		}
	}
}

func fleetOf(inst *Instance, n int) {
	now := time.Now()
	for i := range n {
		name := fmt.Sprintf("node-%04d.example.internal", i)
		r := &report.Run{Node: name, Environment: "prod", Roles: []string{"web"}, Status: report.StatusSuccess,
			End: now, Kind: report.KindRun, ID: name}
		inst.fleet.Apply(r, now)
		inst.history.Add(r)
	}
}

func queryOne(t *testing.T, inst *Instance, q map[string]any) backend.DataResponse {
	t.Helper()
	raw, _ := json.Marshal(q)
	now := time.Now()
	resp, err := inst.QueryData(context.Background(), &backend.QueryDataRequest{Queries: []backend.DataQuery{
		{RefID: "A", JSON: raw, TimeRange: backend.TimeRange{From: now.Add(-time.Hour), To: now.Add(time.Minute)}}}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Responses["A"]
}

// Issue #13: a viewer's pathological regex over 1,000 nodes is answered or
// refused (here: refused, by the compiled program's size), with an error
// for that query that says why; every query type alike.
func TestPathologicalNodeFilter(t *testing.T) {
	inst, _ := bareInstance(t, Settings{GroupByRoleAbove: 2000})
	fleetOf(inst, 1000)
	const evil = `(?:.?){1000}(?:.?){1000}(?:.?){1000}(?:.?){1000}z`
	for _, qt := range []string{QueryTopology, QueryRuns, QueryChanges} {
		r := queryOne(t, inst, map[string]any{"queryType": qt, "node": evil})
		if r.Error == nil || r.Status != backend.StatusBadRequest ||
			!strings.Contains(r.Error.Error(), "compiles to 8005 instructions; the limit is 5000") {
			t.Errorf("%s with %s: status %d, error %v; want it refused for its size", qt, evil, r.Status, r.Error)
		}
	}
	// A channel path cannot smuggle it in either.
	raw, _ := json.Marshal(channelView{RefID: "A", Filter: topoFilter{Node: evil}})
	if _, _, err := parseChannelPath("topology/v1."+b64(raw)+"/nodes", inst.channels); err == nil || !strings.Contains(err.Error(), "instructions") {
		t.Errorf("channel path with the pattern: %v", err)
	}
}

// A pattern within the size limits but slow to match is answered (right)
// or refused once it has used its time budget: whichever, the query says
// which, and a refusal names the limit.
func TestSlowNodeFilterBudget(t *testing.T) {
	inst, _ := bareInstance(t, Settings{GroupByRoleAbove: 5000})
	fleetOf(inst, 3000)
	const slow = `(?:.?){1000}(?:.?){1000}(?:.?){400}z` // 4,805 instructions, each tried at every byte of every name
	for _, qt := range []string{QueryTopology, QueryRuns} {
		r := queryOne(t, inst, map[string]any{"queryType": qt, "node": slow})
		switch {
		case r.Error != nil:
			if !strings.Contains(r.Error.Error(), "took more than 1s to match the nodes") {
				t.Errorf("%s refused with %v", qt, r.Error)
			}
			t.Logf("%s: refused: %v", qt, r.Error)
		case len(r.Frames) == 0 || r.Frames[0].Rows() != 0:
			t.Errorf("%s answered %d rows; no node name ends in z", qt, r.Frames[0].Rows())
		default:
			t.Logf("%s: answered within the budget", qt)
		}
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
