package impact

import "github.com/runlens/runlens/pkg/changeset"

// Mark is what a node of a suspect change set carries on the live topology
// (issue #12, phase 2): the set and its score.
type Mark struct {
	Set   string // changeset.Set.ID
	Title string
	Score float64
}

// Marks maps node names to the mark of the highest-scoring change set they
// belong to among the sets whose score reaches threshold. A set that was
// undone (rolled back) or whose signal has recovered (Result.Recovered)
// marks nothing. results is keyed by set ID; sets without a result are
// skipped.
func Marks(sets []*changeset.Set, results map[string]Result, threshold float64) map[string]Mark {
	out := map[string]Mark{}
	for _, s := range sets {
		r, ok := results[s.ID]
		if !ok || !r.Evaluated || r.Score < threshold || s.UndoneBy != "" || r.Recovered {
			continue
		}
		m := Mark{Set: s.ID, Title: s.Title(), Score: r.Score}
		for _, n := range s.Nodes {
			if old, ok := out[n]; !ok || m.Score > old.Score {
				out[n] = m
			}
		}
	}
	return out
}
