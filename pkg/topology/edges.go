package topology

import (
	"context"
	"slices"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/data"
)

type envRole struct{ env, role string }

// deps are the node-level dependencies between live rows. Without
// forRoles, edges holds (source<<32 | target) row positions, sorted and
// de-duplicated. With forRoles (for roleFrames), edges is empty; byName
// holds the edges whose target was named by its node name and byRole the
// role names that resolved to at least one target node.
type deps struct {
	edges  []uint64
	byName []uint64
	byRole []roleDep
}

type roleDep struct {
	src  int32
	role string
}

// nodeEdges resolves the live rows' depends_on entries and the topology
// file. Lingering rows are neither source nor target.
func (g *graph) nodeEdges(ctx context.Context, forRoles bool) (deps, error) {
	n := len(g.rows)
	pos := make(map[string]int32, g.nLive) // name → row of a live node
	for p, nd := range g.rows {
		if g.live[p] {
			pos[nd.Name] = int32(p)
		}
	}
	// A depends_on entry names a node when some node, filtered out or not,
	// has that name: filtering must not turn a node dependency into a role
	// one.
	var names map[string]struct{}
	if g.nLive < len(g.all) {
		names = make(map[string]struct{}, len(g.all))
		for i := range g.all {
			names[g.all[i].Name] = struct{}{}
		}
	}
	isNode := func(name string) (int32, bool) {
		t, ok := pos[name]
		if !ok && names != nil {
			_, named := names[name]
			return -1, named
		}
		return t, ok
	}

	// Role groups: each (environment, role) gets a number, and its members
	// (rows, ascending) are one range of a single array, filled by a
	// counting sort, rather than a map of slices grown one append at a time.
	groupOf := make(map[envRole]int32)
	slots := make([]int32, 0, 2*n) // group of every (live row, role), in row order
	for p, nd := range g.rows {
		if !g.live[p] {
			continue
		}
		for _, r := range nd.Roles {
			k := envRole{nd.Environment, r}
			gi, ok := groupOf[k]
			if !ok {
				gi = int32(len(groupOf))
				groupOf[k] = gi
			}
			slots = append(slots, gi)
		}
	}
	start := make([]int32, len(groupOf)+1)
	for _, gi := range slots {
		start[gi+1]++
	}
	for k := 1; k < len(start); k++ {
		start[k] += start[k-1]
	}
	members := make([]int32, len(slots))
	next := slices.Clone(start[:len(groupOf)])
	slot := 0
	for p, nd := range g.rows {
		if !g.live[p] {
			continue
		}
		for range nd.Roles {
			gi := slots[slot]
			members[next[gi]] = int32(p)
			next[gi]++
			slot++
		}
	}
	group := func(gi int32) []int32 { return members[start[gi]:start[gi+1]] }

	// First pass: resolve every source's depends_on and topology file
	// entries to what they name, with no string left: a row (>= 0) or a
	// group (^group, < 0), each group once per source. It also bounds the
	// number of edges, so the second pass appends to a slice that never
	// grows. roleFrames needs only byName and byRole.
	var d deps
	var resolved, resolvedEnd, seen []int32
	if !forRoles {
		resolved = make([]int32, 0, 4*g.nLive)
		resolvedEnd = make([]int32, n)
		seen = make([]int32, len(groupOf)) // source+1 that last named the group
	}
	bound := 0
	addGroup := func(src int32, k envRole) bool {
		gi, ok := groupOf[k]
		if !ok {
			return false
		}
		m := group(gi) // never empty, ascending
		if m[0] == src && m[len(m)-1] == src {
			return false // names no node but the source itself
		}
		if !forRoles && seen[gi] != src+1 {
			seen[gi] = src + 1
			resolved = append(resolved, ^gi)
			bound += len(m)
		}
		return true
	}
	for p, nd := range g.rows {
		if p%ctxCheckEvery == 0 && ctx.Err() != nil {
			return deps{}, ctx.Err()
		}
		src := int32(p)
		if g.live[p] {
			for _, dep := range nd.DependsOn {
				role, prefixed := strings.CutPrefix(dep, RolePrefix)
				if !prefixed {
					if t, ok := isNode(dep); ok {
						if t >= 0 && t != src {
							if forRoles {
								d.byName = append(d.byName, uint64(src)<<32|uint64(t))
							} else {
								resolved = append(resolved, t)
								bound++
							}
						}
						continue
					}
				}
				if addGroup(src, envRole{nd.Environment, role}) && forRoles {
					d.byRole = append(d.byRole, roleDep{src, role})
				}
			}
			for _, r := range nd.Roles {
				for _, dep := range g.o.Config.DependsOn[r] {
					addGroup(src, envRole{nd.Environment, dep})
				}
			}
		}
		if !forRoles {
			resolvedEnd[p] = int32(len(resolved))
		}
	}
	if forRoles {
		return d, nil
	}
	if g.o.MaxEdges > 0 && bound > g.o.MaxEdges {
		return deps{}, ErrTooManyEdges
	}

	// Second pass: expand to (source<<32|target) pairs. Sources are
	// visited in order and each one's targets sorted and de-duplicated on
	// their own, so the whole list comes out sorted without a global sort.
	d.edges = make([]uint64, 0, bound)
	var targets []int32
	from := int32(0)
	for p := range n {
		if p%ctxCheckEvery == 0 && ctx.Err() != nil {
			return deps{}, ctx.Err()
		}
		src := int32(p)
		targets = targets[:0]
		for _, r := range resolved[from:resolvedEnd[p]] {
			if r >= 0 {
				targets = append(targets, r)
				continue
			}
			for _, t := range group(^r) {
				if t != src {
					targets = append(targets, t)
				}
			}
		}
		from = resolvedEnd[p]
		if len(targets) > 1 {
			slices.Sort(targets)
			targets = slices.Compact(targets)
		}
		for _, t := range targets {
			d.edges = append(d.edges, uint64(src)<<32|uint64(t))
		}
	}
	return d, nil
}

// edgeFrame builds the edges frame from (source<<32|target) pairs indexing
// ids, which must be sorted.
func edgeFrame(pairs []uint64, ids []string) *data.Frame {
	n := len(pairs)
	idField, id := newColumn[string]("id", n)
	srcField, src := newColumn[string]("source", n)
	dstField, dst := newColumn[string]("target", n)
	// Every id in the arena: sized for ids of average length, so usually
	// one allocation.
	idBytes := 0
	for _, s := range ids {
		idBytes += len(s)
	}
	a := newArena(n * (2*idBytes/max(len(ids), 1) + len("->")))
	sorted := true
	for k, e := range pairs {
		src[k], dst[k] = ids[e>>32], ids[uint32(e)]
		a.add(src[k])
		a.add("->")
		a.add(dst[k])
		id[k] = a.take()
		// (source, target) order is usually id order, but not always:
		// source "a" sorts before "a-0", id "a->x" after "a-0->y". Within
		// one source ids sort as their targets do, so only a change of
		// source can break the order: compare there only.
		if k > 0 && e>>32 != pairs[k-1]>>32 && id[k-1] > id[k] {
			sorted = false
		}
	}
	if !sorted {
		perm := make([]int, n)
		for k := range perm {
			perm[k] = k
		}
		slices.SortFunc(perm, func(a, b int) int { return strings.Compare(id[a], id[b]) })
		permute(id, perm)
		permute(src, perm)
		permute(dst, perm)
	}
	f := data.NewFrame("edges", idField, srcField, dstField)
	f.SetMeta(&data.FrameMeta{PreferredVisualization: data.VisTypeNodeGraph})
	return f
}

// permute reorders s in place so that s[k] becomes the old s[perm[k]].
func permute(s []string, perm []int) {
	old := slices.Clone(s)
	for k, p := range perm {
		s[k] = old[p]
	}
}
