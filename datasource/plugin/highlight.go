package plugin

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/changeset"
	"github.com/runlens/runlens/pkg/impact"
	"github.com/runlens/runlens/pkg/topology"
)

// The suspect lights up by itself (issue #12).
//
// With prometheusUrl set and highlightScore above 0, each instance scores
// the change sets of the last highlightLookback every highlightEvery, as
// an impact query over that range would (one range query per environment
// and role), and marks the nodes of every set whose score reaches
// highlightScore on the live topology: highlighted, a detail__suspect
// naming the set and its score, a notice on the nodes frame. A mark goes
// when its set stops passing: the signal recovered (impact.Result.Recovered),
// the set was rolled back, or it left the lookback. Nobody needs to run an
// impact query: the evaluation runs while any live view exists.
const (
	highlightEvery    = time.Minute
	highlightLookback = 6 * time.Hour
	// highlightTimeout bounds one evaluation (its Prometheus queries).
	highlightTimeout = 45 * time.Second
	// maxSuspectNotices is how many suspect sets a frame names in notices;
	// one more notice counts the rest.
	maxSuspectNotices = 3
)

// suspectSet is a change set whose score passes highlightScore.
type suspectSet struct {
	id, title, env, role string
	detail               string // impact.Result.Detail
	score                float64
	nodes                []string
}

// suspects are an instance's current marks.
type suspects struct {
	kick chan struct{} // a view appeared: evaluate now if due

	mu        sync.Mutex
	byNode    map[string]string // node → its detail__suspect
	sets      []*suspectSet     // best score first
	evaluated time.Time
	ver       uint64
	failing   bool
}

// highlighting reports whether the instance marks suspects.
func (inst *Instance) highlighting() bool {
	return inst.prom != nil && inst.settings.HighlightScore > 0
}

// highlight is the evaluator's loop; it waits for the history replay, then
// evaluates every highlightEvery while a live view exists, and at once when
// the first view of a while appears.
func (inst *Instance) highlight(ctx context.Context) {
	defer inst.wg.Done()
	select {
	case <-ctx.Done():
		return
	case <-inst.caughtUp:
	}
	t := time.NewTicker(highlightEvery)
	defer t.Stop()
	for {
		if inst.hasViews() && time.Since(inst.suspects.lastEvaluated()) >= highlightEvery/2 {
			ectx, cancel := context.WithTimeout(ctx, highlightTimeout)
			_, err := inst.evaluateSuspects(ectx, time.Now(), runFilter{})
			cancel()
			inst.suspects.noteError(inst, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-inst.suspects.kick:
		}
	}
}

func (inst *Instance) hasViews() bool {
	inst.live.mu.Lock()
	defer inst.live.mu.Unlock()
	return len(inst.live.views) > 0
}

// kickSuspects asks the evaluator to run (a view was made).
func (inst *Instance) kickSuspects() {
	if inst.suspects.kick == nil {
		return
	}
	select {
	case inst.suspects.kick <- struct{}{}:
	default:
	}
}

func (s *suspects) lastEvaluated() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.evaluated
}

// noteError logs the first failure of an outage and the recovery; the
// previous marks stay while Prometheus cannot be reached.
func (s *suspects) noteError(inst *Instance, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil && !s.failing:
		inst.log.Warn("cannot score recent change sets; the topology keeps the suspects it last knew", "err", err)
		s.failing = true
	case err == nil && s.failing:
		inst.log.Info("recent change sets scored again")
		s.failing = false
	}
}

// evaluateSuspects scores the change sets of [now-highlightLookback, now]
// that rf selects (the loop: all) and replaces the marks with theirs. Each
// environment is scored on its own, so a fleet of many environments and
// roles is not cut at maxImpactQueries. It returns the targets scored.
func (inst *Instance) evaluateSuspects(ctx context.Context, now time.Time, rf runFilter) ([]*impactTarget, error) {
	cs := inst.changeSets(backend.TimeRange{From: now.Add(-highlightLookback), To: now}, rf)
	byEnv := map[string][]*impactTarget{}
	var envs []string
	for _, s := range cs.sets {
		if _, ok := byEnv[s.Environment]; !ok {
			envs = append(envs, s.Environment)
		}
		byEnv[s.Environment] = append(byEnv[s.Environment], &impactTarget{set: s, change: impact.Change{Waves: s.Waves, Until: s.UndoneAt}})
	}
	var all []*impactTarget
	for _, env := range envs {
		if _, _, _, err := inst.score(ctx, byEnv[env], now, true); err != nil {
			return nil, err
		}
		all = append(all, byEnv[env]...)
	}
	results := make(map[string]impact.Result, len(all))
	for _, t := range all {
		results[t.set.ID] = t.result
	}
	marks := impact.Marks(cs.sets, results, inst.settings.HighlightScore)
	inst.suspects.set(marks, cs.byID, results, inst.quantity(), now)
	return all, nil
}

// set replaces the marks; the version changes only when they do.
func (s *suspects) set(marks map[string]impact.Mark, byID map[string]*changeset.Set, results map[string]impact.Result, q impact.Quantity, now time.Time) {
	setOf := map[string]*suspectSet{}
	byNode := make(map[string]string, len(marks))
	for node, m := range marks {
		ss := setOf[m.Set]
		if ss == nil {
			cs := byID[m.Set]
			ss = &suspectSet{id: m.Set, title: m.Title, env: cs.Environment, role: cs.Role,
				detail: results[m.Set].Detail(q), score: m.Score}
			setOf[m.Set] = ss
		}
		ss.nodes = append(ss.nodes, node)
		byNode[node] = suspectText(ss)
	}
	sets := make([]*suspectSet, 0, len(setOf))
	for _, ss := range setOf {
		sort.Strings(ss.nodes)
		sets = append(sets, ss)
	}
	slices.SortFunc(sets, func(a, b *suspectSet) int {
		return cmp.Or(cmp.Compare(b.score, a.score), strings.Compare(a.id, b.id))
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evaluated = now
	if maps.Equal(s.byNode, byNode) {
		return
	}
	s.byNode, s.sets = byNode, sets
	s.ver++
}

// suspectText is a node's detail__suspect: the set, its score and why.
func suspectText(ss *suspectSet) string {
	return fmt.Sprintf("%s (set %s): score %.1f, %s", ss.title, ss.id, ss.score, ss.detail)
}

func (inst *Instance) suspectsVersion() uint64 {
	inst.suspects.mu.Lock()
	defer inst.suspects.mu.Unlock()
	return inst.suspects.ver
}

// suspectsFor gives a live view its marks: the detail__suspect of each
// node (nil with highlighting off, which leaves the column out) and a
// notice per suspect set with a node in the selection.
func (inst *Instance) suspectsFor(sel *topology.Selection) (map[string]string, []data.Notice) {
	if !inst.highlighting() {
		return nil, nil
	}
	s := &inst.suspects
	s.mu.Lock()
	byNode, sets := s.byNode, s.sets
	s.mu.Unlock()
	if byNode == nil {
		byNode = map[string]string{}
	}
	var shown []*suspectSet
	for _, ss := range sets {
		if slices.ContainsFunc(ss.nodes, sel.Has) {
			shown = append(shown, ss)
		}
	}
	var notices []data.Notice
	for i, ss := range shown {
		if i == maxSuspectNotices {
			notices = append(notices, data.Notice{Severity: data.NoticeSeverityWarning,
				Text: fmt.Sprintf("and %s more: see the impact query", plural(len(shown)-i, "suspect change", "suspect changes"))})
			break
		}
		notices = append(notices, data.Notice{Severity: data.NoticeSeverityWarning,
			Text: fmt.Sprintf("Suspect change in %s / %s on %s, score %.1f (highlightScore %g): %s; %s",
				ss.env, ss.role, plural(len(ss.nodes), "node", "nodes"), ss.score, inst.settings.HighlightScore, ss.title, ss.detail)})
	}
	return byNode, notices
}
