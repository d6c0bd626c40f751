// Package changeset groups configuration-management runs into change sets: a
// roll-out is one change, not hundreds of runs. Runs in one environment, on
// nodes of one role, that changed the same resources (the set of
// `type[name]`), each starting within a gap of the set's previous run, form
// one set. A set knows its waves, its nodes and its resources, and a set
// that changes the same resources on the same nodes again later (a
// roll-back, or a fix rolled forward: the resource names cannot tell them
// apart) names the set it undoes.
//
// Grouping is pure: runs in, sets out, no I/O and no clock.
package changeset

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

// DefaultGap is the gap that splits change sets when Options.Gap is zero:
// a run starting more than this after the set's previous run ended starts a
// new set.
const DefaultGap = 30 * time.Minute

// Options of Group. The zero value uses the defaults.
type Options struct {
	// Gap: a run joins a set only if it starts at most Gap after the end
	// of the set's latest run. Default DefaultGap.
	Gap time.Duration
	// RoleFilter, when set, restricts the roles a set can be assigned
	// (the query's role filter).
	RoleFilter func(role string) bool
	// RoleNodes is how many nodes carry each role, to pick a set's most
	// specific role (see Group). Nil counts the distinct nodes of the runs
	// given to Group.
	RoleNodes map[string]int
	// NodeRuns is how many runs each node made (changes or not) over the
	// time the runs given to Group cover, to tell the resources a node
	// changes on nearly every run (see Group). Nil counts the runs given.
	NodeRuns map[string]int
}

// A resource a node changed in at least chronicMinRuns runs and in at
// least chronicShare of its runs is chronic for that node.
const (
	chronicMinRuns = 4
	chronicShare   = 0.75
)

func (o Options) gap() time.Duration {
	if o.Gap <= 0 {
		return DefaultGap
	}
	return o.Gap
}

// Status of a set: every run succeeded, every run failed, or some failed.
const (
	StatusSuccess = "success"
	StatusFailure = "failure"
	StatusPartial = "partial"
)

// Wave is a batch of a set's runs: runs whose starts follow each other
// closely (see Group for the rule).
type Wave struct {
	Start, End time.Time // first start, last end
	Nodes      []string  // sorted, distinct
	Runs       int
}

// Set is one change set.
type Set struct {
	// ID identifies the set: a hash of its environment, role, resources,
	// first start and first node, so the same runs give the same ID in
	// every query.
	ID          string
	Environment string
	Role        string
	// Resources are the `type[name]` the set's runs changed, sorted. A
	// failed run inside the set may have changed only some of them.
	Resources []string
	// Runs sorted by start (then node).
	Runs  []*report.Run
	Nodes []string // sorted, distinct
	Waves []Wave   // in time order; at least one
	// Start is the first run's start, End the latest run end.
	Start, End time.Time
	Failed     int // runs that failed
	// Undoes is the ID of the earlier set this one changes again (a
	// roll-back or a fix); UndoneBy the ID of the first later set that
	// undoes this one; "" for none. UndoneAt is that set's start.
	Undoes, UndoneBy string
	UndoneAt         time.Time
	// Routine says every run of the set changed only resources its node
	// changes on nearly every run (see Group): churn, not a roll-out. A
	// routine set neither undoes nor is undone.
	Routine bool
}

// Status is StatusSuccess, StatusFailure or StatusPartial.
func (s *Set) Status() string {
	switch s.Failed {
	case 0:
		return StatusSuccess
	case len(s.Runs):
		return StatusFailure
	}
	return StatusPartial
}

// RunStart is the run's start, or its end when the report gave no start.
func RunStart(r *report.Run) time.Time {
	if r.Start.IsZero() || r.Start.After(r.End) {
		return r.End
	}
	return r.Start
}

// runInfo is a run prepared for grouping.
type runInfo struct {
	run        *report.Run
	start      time.Time
	upd, fail  []string // sorted, distinct type[name]
	key        string   // resources key: upd ∪ fail, and the counts
	res        []string // upd ∪ fail, sorted
	failed     bool
	updatedCnt int
	routine    bool // changed only resources chronic for its node
}

// resourceKey identifies a resource list. The counts are part of it: the
// reports list at most report.MaxListedResources by name.
func resourceKey(res []string, count int) string {
	return strconv.Itoa(count) + "\x00" + strings.Join(res, "\x00")
}

func names(rs []report.Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// builder is a set being built.
type builder struct {
	set      *Set
	infos    []*runInfo
	key      string
	res      map[string]bool
	resList  []string
	success  bool            // has a successful run
	done     map[string]bool // nodes with a successful run in the set
	lastFail map[string]bool // nodes whose latest run in the set failed
	lastEnd  time.Time
	order    int // creation order: the oldest set wins ties
}

func (b *builder) setResources(list []string, key string) {
	b.resList, b.key = list, key
	b.res = make(map[string]bool, len(list))
	for _, r := range list {
		b.res[r] = true
	}
}

func (b *builder) add(ri *runInfo) {
	b.infos = append(b.infos, ri)
	n := ri.run.Node
	if ri.failed {
		b.lastFail[n] = true
	} else {
		b.success = true
		b.done[n] = true
		delete(b.lastFail, n)
	}
	if ri.run.End.After(b.lastEnd) {
		b.lastEnd = ri.run.End
	}
}

// subset reports whether every element of a is in b.
func subset(a []string, b map[string]bool) bool {
	for _, x := range a {
		if !b[x] {
			return false
		}
	}
	return true
}

// touched is how many of the set's resources a run changed or failed on.
func touched(ri *runInfo, res map[string]bool) int {
	n := len(ri.upd)
	for _, f := range ri.fail {
		if res[f] {
			n++
		}
	}
	return n
}

// Group forms the change sets of runs (any order; every run should be a
// change: it changed something or failed). The result is sorted by start,
// then ID.
//
// Rules, applied to the runs in start order:
//
//   - Chronic resources: a resource a node changes on nearly every run (in
//     at least 4 runs and 3/4 of its runs: an execute without a guard) is
//     left out when that node's runs are compared, so it does not split a
//     roll-out; a run that changed nothing else keeps it, and the sets of
//     such runs are Routine.
//   - A successful run joins the oldest open set of its environment with
//     exactly its resources, unless its node already changed them
//     successfully in that set: a node changing the same resources again
//     starts a new set (which then undoes the first, see below). A set is
//     open while the run starts at most Gap after the set's latest end.
//   - A failed run stops part way (Chef stops at the failing resource), so
//     it joins the open set whose resources include everything it changed
//     and at least one of what it changed or failed on, preferring an exact
//     match, then the most resources in common. A node's successful retry
//     after a failed run in a set joins that set when what it changed is
//     among the set's resources. A set started by failed runs takes the
//     resources of its first successful run, if every run so far fits them.
//   - Waves: the runs sorted by start split where the pause between two
//     starts exceeds 4 times the median pause, but never less than Gap/60
//     (30 s by default) nor more than Gap/6 (5 min).
//   - Role: a set's role is the most specific role all its nodes share
//     (among those that pass Options.RoleFilter): the one carried by the
//     fewest nodes (Options.RoleNodes), so `web` rather than the `base` every
//     node has; a role only some of its nodes have (monitoring on a few web
//     nodes) does not split the set. Ties go to the role listed last on
//     the set's first run (Chef lists a run list's roles in order, the
//     shared base role usually first). Nodes without a common role give
//     the role most of the set's runs have. A change to nodes of several
//     services through a shared role (base) is one set of that role.
//   - Undoes: a set undoes the latest earlier set of the same environment,
//     role and resources that holds at least half of its nodes.
func Group(runs []*report.Run, o Options) []*Set {
	gap := o.gap()
	sizes := o.RoleNodes
	if sizes == nil {
		sizes = countRoleNodes(runs)
	}
	nodeRuns := o.NodeRuns
	if nodeRuns == nil {
		nodeRuns = countNodeRuns(runs)
	}
	chronic := chronicResources(runs, nodeRuns)
	infos := make([]*runInfo, len(runs))
	for i, r := range runs {
		ri := &runInfo{run: r, start: RunStart(r),
			upd: names(r.Updated), fail: names(r.Failed), failed: r.Status == report.StatusFailure, updatedCnt: r.UpdatedCount}
		if kept := slices.DeleteFunc(slices.Clone(ri.upd), func(u string) bool { return chronic[[2]string{r.Node, u}] }); len(kept) < len(ri.upd) {
			if len(kept)+len(ri.fail) > 0 {
				ri.updatedCnt -= len(ri.upd) - len(kept)
				ri.upd = kept
			} else {
				ri.routine = true
			}
		}
		ri.res = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(ri.upd), ri.fail...))))
		ri.key = resourceKey(ri.res, ri.updatedCnt+len(ri.fail))
		infos[i] = ri
	}
	slices.SortFunc(infos, func(a, b *runInfo) int {
		return cmp.Or(a.start.Compare(b.start), a.run.End.Compare(b.run.End),
			strings.Compare(a.run.Node, b.run.Node), strings.Compare(a.key, b.key))
	})

	type group struct {
		open   []*builder
		byKey  map[string][]*builder
		unkept int // runs since the closed sets were last dropped
	}
	groups := map[string]*group{} // by environment
	var all []*builder
	for _, ri := range infos {
		gk := ri.run.Environment
		g := groups[gk]
		if g == nil {
			g = &group{byKey: map[string][]*builder{}}
			groups[gk] = g
		}
		// Drop the sets this run is too late for, now and then (pick
		// skips them): runs come in start order, so they stay closed.
		if g.unkept++; g.unkept >= 64 {
			g.unkept = 0
			g.open = slices.DeleteFunc(g.open, func(b *builder) bool {
				if ri.start.Sub(b.lastEnd) > gap {
					list := g.byKey[b.key]
					list = slices.DeleteFunc(list, func(x *builder) bool { return x == b })
					if len(list) == 0 {
						delete(g.byKey, b.key)
					} else {
						g.byKey[b.key] = list
					}
					return true
				}
				return false
			})
		}
		b := pick(g.open, g.byKey[ri.key], ri, gap)
		if b == nil {
			b = &builder{set: &Set{Environment: ri.run.Environment}, done: map[string]bool{},
				lastFail: map[string]bool{}, order: len(all)}
			b.setResources(ri.res, ri.key)
			g.open = append(g.open, b)
			g.byKey[b.key] = append(g.byKey[b.key], b)
			all = append(all, b)
		} else if !ri.failed && !b.success && b.key != ri.key && adopts(b, ri) {
			// The first successful run of a set of failed runs names
			// its resources.
			list := slices.DeleteFunc(g.byKey[b.key], func(x *builder) bool { return x == b })
			if len(list) == 0 {
				delete(g.byKey, b.key)
			} else {
				g.byKey[b.key] = list
			}
			b.setResources(ri.res, ri.key)
			g.byKey[b.key] = append(g.byKey[b.key], b)
		}
		b.add(ri)
	}

	sets := make([]*Set, len(all))
	for i, b := range all {
		b.set.Role = setRole(b.infos, o.RoleFilter, sizes)
		sets[i] = b.finish(gap)
	}
	slices.SortFunc(sets, func(a, b *Set) int { return cmp.Or(a.Start.Compare(b.Start), strings.Compare(a.ID, b.ID)) })
	linkUndoes(sets)
	return sets
}

// pick chooses the open set a run joins, nil for a new one. exact lists the
// open sets with the run's own resources key.
func pick(open, exact []*builder, ri *runInfo, gap time.Duration) *builder {
	node := ri.run.Node
	closed := func(b *builder) bool { return ri.start.Sub(b.lastEnd) > gap }
	var best *builder
	for _, b := range exact {
		if !b.done[node] && !closed(b) && (best == nil || b.order < best.order) {
			best = b
		}
	}
	if best != nil {
		return best
	}
	bestTouch := 0
	for _, b := range open {
		if b.done[node] || closed(b) {
			continue
		}
		ok := false
		switch {
		case ri.failed:
			ok = subset(ri.upd, b.res) && touched(ri, b.res) > 0
		case b.lastFail[node]:
			// A retry completing a failed run's change.
			ok = len(ri.upd) > 0 && subset(ri.upd, b.res)
		case !b.success:
			ok = adopts(b, ri)
		}
		if !ok {
			continue
		}
		t := touched(ri, b.res)
		if best == nil || t > bestTouch || t == bestTouch && b.order < best.order {
			best, bestTouch = b, t
		}
	}
	return best
}

// adopts reports whether a set of failed runs fits the resources of the
// successful run ri: each run changed only resources of ri, and changed or
// failed on at least one.
func adopts(b *builder, ri *runInfo) bool {
	res := make(map[string]bool, len(ri.res))
	for _, r := range ri.res {
		res[r] = true
	}
	for _, x := range b.infos {
		if !subset(x.upd, res) || touched(x, res) == 0 {
			return false
		}
	}
	return true
}

func (b *builder) finish(gap time.Duration) *Set {
	s := b.set
	s.Resources = b.resList
	slices.SortStableFunc(b.infos, func(x, y *runInfo) int {
		return cmp.Or(x.start.Compare(y.start), strings.Compare(x.run.Node, y.run.Node))
	})
	s.Runs = make([]*report.Run, len(b.infos))
	nodes := make([]string, 0, len(b.infos))
	for i, ri := range b.infos {
		s.Runs[i] = ri.run
		nodes = append(nodes, ri.run.Node)
		if ri.failed {
			s.Failed++
		}
	}
	slices.Sort(nodes)
	s.Nodes = slices.Compact(nodes)
	s.Start, s.End = b.infos[0].start, b.lastEnd
	s.Routine = !slices.ContainsFunc(b.infos, func(ri *runInfo) bool { return !ri.routine })
	s.Waves = waves(b.infos, gap)
	h := sha256.New()
	for _, part := range []string{s.Environment, s.Role, b.key, strconv.FormatInt(s.Start.UnixNano(), 10), b.infos[0].run.Node} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	s.ID = hex.EncodeToString(h.Sum(nil)[:6])
	return s
}

// waves splits runs (sorted by start) where a pause between starts is long
// (see Group).
func waves(infos []*runInfo, gap time.Duration) []Wave {
	pause := gap / 6
	if len(infos) > 2 {
		pauses := make([]time.Duration, len(infos)-1)
		for i := 1; i < len(infos); i++ {
			pauses[i-1] = infos[i].start.Sub(infos[i-1].start)
		}
		slices.Sort(pauses)
		pause = min(max(4*pauses[len(pauses)/2], gap/60), gap/6)
	}
	var out []Wave
	var nodes []string
	flush := func(w Wave) {
		slices.Sort(nodes)
		w.Nodes = slices.Clone(slices.Compact(nodes))
		out = append(out, w)
		nodes = nodes[:0]
	}
	w := Wave{Start: infos[0].start}
	for i, ri := range infos {
		if i > 0 && ri.start.Sub(infos[i-1].start) > pause {
			flush(w)
			w = Wave{Start: ri.start}
		}
		w.Runs++
		nodes = append(nodes, ri.run.Node)
		if ri.run.End.After(w.End) {
			w.End = ri.run.End
		}
	}
	flush(w)
	return out
}

// linkUndoes sets Undoes / UndoneBy (sets sorted by start).
func linkUndoes(sets []*Set) {
	type key struct{ env, role, res string }
	prev := map[key][]*Set{}
	for _, s := range sets {
		if s.Routine {
			continue
		}
		k := key{s.Environment, s.Role, strings.Join(s.Resources, "\x00")}
		earlier := prev[k]
		for i := len(earlier) - 1; i >= 0; i-- {
			e := earlier[i]
			if !e.Start.Before(s.Start) {
				continue
			}
			if common(s.Nodes, e.Nodes)*2 >= len(s.Nodes) {
				s.Undoes = e.ID
				if e.UndoneBy == "" {
					e.UndoneBy, e.UndoneAt = s.ID, s.Start
				}
				break
			}
		}
		prev[k] = append(prev[k], s)
	}
}

// common counts the elements two sorted lists share.
func common(a, b []string) int {
	n, i, j := 0, 0, 0
	for i < len(a) && j < len(b) {
		switch c := strings.Compare(a[i], b[j]); {
		case c == 0:
			n++
			i++
			j++
		case c < 0:
			i++
		default:
			j++
		}
	}
	return n
}

// setRole is the most specific role the runs' nodes share (see Group).
func setRole(infos []*runInfo, filter func(string) bool, sizes map[string]int) string {
	count := map[string]int{}
	for _, ri := range infos {
		for _, role := range slices.Compact(slices.Sorted(slices.Values(ri.run.Roles))) {
			if filter == nil || filter(role) {
				count[role]++
			}
		}
	}
	// Candidates: the roles of every run, else the roles of the most.
	most := 0
	for _, n := range count {
		most = max(most, n)
	}
	best, bestN := "", -1
	consider := func(role string) {
		if count[role] != most {
			return
		}
		if n := sizes[role]; bestN < 0 || n <= bestN {
			best, bestN = role, n
		}
	}
	// The first run's order breaks ties (the last listed wins), then the
	// other roles by name.
	first := infos[0].run.Roles
	for _, role := range first {
		consider(role)
	}
	rest := make([]string, 0, len(count))
	for role := range count {
		if !slices.Contains(first, role) {
			rest = append(rest, role)
		}
	}
	slices.Sort(rest)
	for _, role := range rest {
		consider(role)
	}
	return best
}

// chronicResources are the (node, resource) pairs changed in most of the
// node's runs.
func chronicResources(runs []*report.Run, nodeRuns map[string]int) map[[2]string]bool {
	freq := map[[2]string]int{}
	for _, r := range runs {
		for _, u := range names(r.Updated) {
			freq[[2]string{r.Node, u}]++
		}
	}
	out := map[[2]string]bool{}
	for k, n := range freq {
		if n >= chronicMinRuns && float64(n) >= chronicShare*float64(max(nodeRuns[k[0]], n)) {
			out[k] = true
		}
	}
	return out
}

func countNodeRuns(runs []*report.Run) map[string]int {
	out := map[string]int{}
	for _, r := range runs {
		out[r.Node]++
	}
	return out
}

// NodeRuns counts each node's runs: the Options.NodeRuns of these runs.
func NodeRuns(runs []*report.Run) map[string]int { return countNodeRuns(runs) }

// countRoleNodes counts the distinct nodes carrying each role.
func countRoleNodes(runs []*report.Run) map[string]int {
	seen := map[[2]string]bool{}
	out := map[string]int{}
	for _, r := range runs {
		for _, role := range r.Roles {
			k := [2]string{role, r.Node}
			if !seen[k] {
				seen[k] = true
				out[role]++
			}
		}
	}
	return out
}

// RoleNodes counts the distinct nodes carrying each role among runs: the
// Options.RoleNodes of a fleet whose runs these are.
func RoleNodes(runs []*report.Run) map[string]int { return countRoleNodes(runs) }
