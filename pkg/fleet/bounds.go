package fleet

import "sync/atomic"

// Bounds on what reports can make the state hold. A producer credential can
// send any number of node names and any roles; these keep the state, and
// the series and frames made from it, within what an operator configured.

// boundCounts counts what the bounds refused, read without the state's lock.
type boundCounts struct {
	nodes, roleCount, roleBytes atomic.Uint64
}

// Refusals is what the bounds refused since the state began.
type Refusals struct {
	// Nodes: reports (applied or restored) of a node not tracked yet,
	// refused because MaxNodes nodes were tracked.
	Nodes uint64
	// RolesOverCount: roles dropped because a report listed more than
	// MaxRoles (the first MaxRoles in sorted order are kept).
	RolesOverCount uint64
	// RolesOverBytes: roles dropped because they were longer than
	// MaxRoleBytes.
	RolesOverBytes uint64
}

// Refusals returns the counts of what the bounds refused.
func (s *State) Refusals() Refusals {
	return Refusals{
		Nodes:          s.bound.nodes.Load(),
		RolesOverCount: s.bound.roleCount.Load(),
		RolesOverBytes: s.bound.roleBytes.Load(),
	}
}

// refuse reports whether a report of node must be refused: the node is new
// and MaxNodes are tracked. Nodes already tracked are never refused, so a
// flood of new names cannot push the real fleet out. Called with s.mu held.
func (s *State) refuse(node string) bool {
	if s.opts.MaxNodes <= 0 || len(s.nodes) < s.opts.MaxNodes {
		return false
	}
	if _, ok := s.nodes[node]; ok {
		return false
	}
	s.bound.nodes.Add(1)
	return true
}

// boundRoles drops, from sorted roles, those longer than MaxRoleBytes and
// then those past MaxRoles. A role is dropped rather than cut: a cut name
// would be a role that does not exist. roles is the node's own copy.
func (s *State) boundRoles(roles []string) []string {
	if s.opts.MaxRoleBytes > 0 {
		kept := roles[:0]
		for _, r := range roles {
			if len(r) > s.opts.MaxRoleBytes {
				s.bound.roleBytes.Add(1)
				continue
			}
			kept = append(kept, r)
		}
		roles = kept
	}
	if s.opts.MaxRoles > 0 && len(roles) > s.opts.MaxRoles {
		s.bound.roleCount.Add(uint64(len(roles) - s.opts.MaxRoles))
		roles = roles[:s.opts.MaxRoles:s.opts.MaxRoles]
	}
	if len(roles) == 0 {
		return nil
	}
	return roles
}

// Environments returns how many tracked nodes are in each environment (""
// for nodes known only from a run start). It walks every node: the exporter
// calls it once per expiry pass, to drop the aggregate series of
// environments no node is in any more.
func (s *State) Environments() map[string]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	envs := make(map[string]int)
	for _, n := range s.nodes {
		envs[n.Environment]++
	}
	return envs
}
