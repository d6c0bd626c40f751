package impact

import (
	"cmp"
	"slices"

	"github.com/runlens/runlens/pkg/changeset"
)

// Mark is what a node of a suspect change set carries on the live topology
// (issue #12, phase 2): the set and its score.
type Mark struct {
	Set   string // changeset.Set.ID
	Title string
	Score float64
}

// Marks maps node names to the mark of the highest-scoring suspect set they
// belong to. A suspect set is one whose score reaches threshold, that was
// not undone (rolled back), whose signal has not recovered
// (Result.Recovered), and whose rise another set of the same environment
// explains. Errors spread along dependencies, so a roll-out on a service
// that calls the culprit's, or a one-node change on the culprit's own
// role, sees a rise too; such a set is explained, and stays dark, when
//
//   - a better suspect (a higher score) began before its rise did, or
//   - it began after another passing set's rise had begun, a rise that
//     came after that set's own start (so plausibly its doing): what was
//     already going wrong explains what it saw, whatever the scores.
//
// Two bad roll-outs in one environment, the second starting once the
// first one's errors had begun, light up one at a time: the second once
// the first is rolled back or recovered. results is keyed by set ID; sets
// without a result are skipped.
func Marks(sets []*changeset.Set, results map[string]Result, threshold float64) map[string]Mark {
	var passing []*changeset.Set
	for _, s := range sets {
		r, ok := results[s.ID]
		if ok && r.Evaluated && r.Score >= threshold && s.UndoneBy == "" && !r.Recovered {
			passing = append(passing, s)
		}
	}
	// Best first; equal scores: the earlier set, the likelier cause.
	slices.SortStableFunc(passing, func(a, b *changeset.Set) int {
		return cmp.Or(cmp.Compare(results[b.ID].Score, results[a.ID].Score), a.Start.Compare(b.Start))
	})
	risingBefore := func(s *changeset.Set) bool {
		return slices.ContainsFunc(passing, func(a *changeset.Set) bool {
			on := results[a.ID].Onset
			return a != s && a.Environment == s.Environment && !on.IsZero() && !on.Before(a.Start) && on.Before(s.Start)
		})
	}
	out := map[string]Mark{}
	var suspects []*changeset.Set
	for _, s := range passing {
		onset := results[s.ID].Onset
		if risingBefore(s) || slices.ContainsFunc(suspects, func(better *changeset.Set) bool {
			return better.Environment == s.Environment && !onset.IsZero() && !better.Start.After(onset)
		}) {
			continue
		}
		suspects = append(suspects, s)
		m := Mark{Set: s.ID, Title: s.Title(), Score: results[s.ID].Score}
		for _, n := range s.Nodes {
			if _, ok := out[n]; !ok { // a better suspect marked it already
				out[n] = m
			}
		}
	}
	return out
}
