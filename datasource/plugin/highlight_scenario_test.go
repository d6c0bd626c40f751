package plugin

// The suspect lights up by itself (issue #12), on the scenario incidents of
// impact_scenario_test.go (real promtool blocks, real prometheus): scored
// as the instance's evaluator scores them, the culprit roll-out's nodes are
// marked while it hurts and no other set's are; a roll-back clears them;
// and the evaluator's own loop marks them on the live topology, with no
// impact query run.

import (
	"context"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/internal/incident"
	"github.com/runlens/runlens/pkg/changeset"
	"github.com/runlens/runlens/pkg/impact"
	"github.com/runlens/runlens/pkg/topology"
)

func TestHighlightScenarios(t *testing.T) {
	began := time.Now()
	incs, inst := scenarioInstance(t, nil) // highlightScore: the default
	threshold := inst.settings.HighlightScore
	ctx := context.Background()

	var culpritScores, otherScores []float64
	marked, falseMarks, cleared, rolledBack := 0, 0, 0, 0
	// The same marks at other thresholds: what the default is chosen by.
	sweep := []float64{4, 6, 8, 10, 15}
	sweepLit, sweepOther := make([]int, len(sweep)), make([]int, len(sweep))
	for _, inc := range incs {
		c := inc.Culprit
		env := runFilter{f: topology.Filter{Environments: []string{inc.Environment}}}
		// While it hurts: 5 minutes after its last wave (a roll-back
		// starts 5 to 25 minutes after it).
		at := c.End.Add(5 * time.Minute)
		targets, err := inst.evaluateSuspects(ctx, at, env)
		if err != nil {
			t.Fatal(err)
		}
		best := 0.0
		for _, tg := range targets {
			if !tg.result.Evaluated {
				continue
			}
			if isCulprit(c, tg.set.Role, tg.set.Title(), tg.start()) {
				culpritScores = append(culpritScores, tg.result.Score)
			} else {
				best = max(best, tg.result.Score)
			}
		}
		otherScores = append(otherScores, best)
		sets, results := make([]*changeset.Set, 0, len(targets)), map[string]impact.Result{}
		for _, tg := range targets {
			sets, results[tg.set.ID] = append(sets, tg.set), tg.result
		}
		for i, th := range sweep {
			lit, other := 0, false
			for node, m := range impact.Marks(sets, results, th) {
				if strings.Contains(m.Title, c.Resources[0]) && slices.Contains(c.Nodes, node) {
					lit++
				} else if !strings.Contains(m.Title, c.Resources[0]) {
					other = true
				}
			}
			sweepLit[i] += b2i(lit == len(c.Nodes))
			sweepOther[i] += b2i(other)
		}
		byNode := inst.suspects.snapshot()
		if suspectsOf(byNode, c.Nodes, c.Resources[0]) == len(c.Nodes) {
			marked++
		} else {
			t.Logf("%s at +%s: %d of the culprit's %d nodes marked\n  story: %s", inc.Environment, at.Sub(inc.Start),
				suspectsOf(byNode, c.Nodes, c.Resources[0]), len(c.Nodes), strings.Join(inc.Story, "\n         "))
		}
		var others []string
		for _, why := range byNode {
			if !strings.Contains(why, c.Resources[0]) && !slices.Contains(others, why) {
				others = append(others, why)
			}
		}
		if len(others) > 0 {
			falseMarks++
			t.Logf("%s at +%s: nodes marked for other changes:\n  %s\n  story: %s", inc.Environment, at.Sub(inc.Start), strings.Join(others, "\n  "), strings.Join(inc.Story, "\n         "))
		}

		// Rolled back: once the roll-back has run, no mark.
		if !c.RolledBack.IsZero() {
			rolledBack++
			if _, err := inst.evaluateSuspects(ctx, inc.End, env); err != nil {
				t.Fatal(err)
			}
			if n := suspectsOf(inst.suspects.snapshot(), c.Nodes, c.Resources[0]); n == 0 {
				cleared++
			} else {
				t.Errorf("%s: rolled back at +%s, still %d nodes marked at the end", inc.Environment, c.RolledBack.Sub(inc.Start), n)
			}
		}
	}
	sort.Float64s(culpritScores)
	sort.Float64s(otherScores)
	t.Logf("highlightScore %g: culprit marked in %d of %d incidents, another set marked in %d; roll-back cleared %d of %d; "+
		"culprit scores min %.1f median %.1f, best other set per incident max %.1f median %.1f; %s",
		threshold, marked, len(incs), falseMarks, cleared, rolledBack, quantile(culpritScores, 0), quantile(culpritScores, 0.5),
		quantile(otherScores, 1), quantile(otherScores, 0.5), time.Since(began).Round(time.Millisecond))
	for i, th := range sweep {
		t.Logf("  at highlightScore %4.1f: culprit lit in %d, another set lit in %d", th, sweepLit[i], sweepOther[i])
	}
	if rate := float64(marked) / float64(len(incs)); rate < 0.95 {
		t.Errorf("the culprit's nodes are marked in %.0f %% of the incidents, want at least 95 %%", 100*rate)
	}
	// The traps (a one-node change on the culprit's role just before it,
	// whose short after-window is all errors) can light up before the
	// culprit's own evidence is in: seeds 1000 and 5000 (not tuned on)
	// gave 3 and 5 of 100.
	if rate := float64(falseMarks) / float64(len(incs)); rate > 0.10 {
		t.Errorf("another set is marked in %.0f %% of the incidents, want at most 10 %%", 100*rate)
	}

	// The evaluator's loop, live: a topology view of an incident whose
	// culprit was not rolled back (its errors last) lights up by itself.
	var inc *incident.Incident
	for _, i := range incs {
		if i.Culprit.RolledBack.IsZero() && len(i.Culprit.Nodes) <= DefaultGroupByRoleAbove {
			inc = i
			break
		}
	}
	if inc == nil {
		t.Fatal("every incident was rolled back: no live check")
	}
	c := inc.Culprit
	q := map[string]any{"queryType": "topology", "environment": inc.Environment}
	deadline := time.Now().Add(90 * time.Second)
	var nodes *data.Frame
	for {
		nodes = mustFrames(t, inst, q, time.Now().Add(-time.Hour), time.Now())[0]
		if liveMarked(t, nodes, c) == len(c.Nodes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of the culprit's %d nodes highlighted on the live topology after 90 s", inc.Environment, liveMarked(t, nodes, c), len(c.Nodes))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var notices []string
	for _, n := range nodes.Meta.Notices {
		notices = append(notices, n.Text)
	}
	if !slices.ContainsFunc(notices, func(s string) bool {
		return strings.HasPrefix(s, "Suspect change in "+inc.Environment+" / "+c.Role) && strings.Contains(s, c.Resources[0])
	}) {
		t.Errorf("no notice names the suspect change; notices: %q", notices)
	}
	t.Logf("live: %d nodes of %s highlighted by the evaluator; notices %q", len(c.Nodes), inc.Environment, notices)
}

// suspectsOf counts the nodes marked (for a change naming resource, if
// set).
func suspectsOf(byNode map[string]string, nodes []string, resource string) int {
	n := 0
	for _, node := range nodes {
		if why, ok := byNode[node]; ok && strings.Contains(why, resource) {
			n++
		}
	}
	return n
}

// liveMarked counts the culprit's nodes highlighted with a detail__suspect
// naming its resource in a nodes frame.
func liveMarked(t *testing.T, f *data.Frame, c incident.Culprit) int {
	ids, hl, why := col(t, f, "id"), col(t, f, "highlighted"), col(t, f, "detail__suspect")
	if why == nil {
		return 0
	}
	n := 0
	for i, id := range ids {
		if slices.Contains(c.Nodes, id) && hl[i] == "true" && strings.Contains(why[i], c.Resources[0]) {
			n++
		}
	}
	return n
}

// quantile is the q-quantile of sorted xs (0 when empty).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return xs[int(q*float64(len(xs)-1))]
}

func (s *suspects) snapshot() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byNode
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
