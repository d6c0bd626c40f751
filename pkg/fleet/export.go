package fleet

import (
	"sort"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

// What a snapshot of the fleet (pkg/snapshot) needs: read every node in
// batches without copying the whole fleet at once, and take a node as another
// State held it back in.

// Names returns the name of every node, sorted. With EachOf it lets a reader
// walk a large fleet in batches, each under a short read lock, instead of
// holding the lock (and blocking Apply) for the whole walk.
func (s *State) Names() []string {
	s.mu.RLock()
	names := make([]string, 0, len(s.nodes))
	for name := range s.nodes {
		names = append(names, name)
	}
	s.mu.RUnlock()
	sort.Strings(names)
	return names
}

// EachOf calls f, under one read lock, with each node of names that is still
// tracked, in the order of names. As with Each, f must be quick and must not
// keep the pointer.
func (s *State) EachOf(names []string, f func(n *Node)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, name := range names {
		if n := s.nodes[name]; n != nil {
			f(n)
		}
	}
}

// ConvergingRun is the run id of the start that made the node converging
// ("" when the start carried none or the node is not converging).
func (n *Node) ConvergingRun() string { return n.convergingRun }

// SetConvergingRun sets what ConvergingRun returns; for decoders of
// snapshots building a Node to Import.
func (n *Node) SetConvergingRun(id string) { n.convergingRun = id }

// Import takes a node as another State held it (read back from a snapshot)
// into account without counting it, like Restore: identity, last run,
// converging state and when it was last heard from. It goes through the same
// rules as reports do (a run older than the node's latest one does not move
// it back, a start older than the last finished run is ignored), so importing
// a node and applying or restoring reports commute: importing a snapshot
// taken at any point of a history and then restoring that history (or any
// part of it) gives the same state as restoring the history alone. Counters
// are not imported (Prometheus expects them to restart from zero) and the
// de-duplication window is not fed.
func (s *State) Import(in *Node, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Seen is the imported node's, not what the runs standing in for it
	// would make of their times.
	var seenBefore time.Time
	if n := s.nodes[in.Name]; n != nil {
		seenBefore = n.Seen
	}
	if in.Last != nil {
		s.apply(importedRun(in), now, false)
	}
	if in.Converging || in.Last == nil {
		// A node with no finished run was only seen starting one.
		s.apply(importedStart(in), now, false)
	}
	n := s.nodes[in.Name]
	if n == nil {
		return
	}
	seen := in.Seen
	if seen.After(now) {
		seen = now
	}
	n.Seen = seenBefore
	if seen.After(n.Seen) {
		n.Seen = seen
	}
}

// importedRun is the finished run that gives a node in's identity and last
// run.
func importedRun(in *Node) *report.Run {
	lr := in.Last
	r := &report.Run{
		Format: lr.Format, Kind: report.KindRun, Source: in.Source, ID: lr.ID,
		Node: in.Name, FQDN: in.FQDN, IPAddress: in.IPAddress, Environment: in.Environment,
		Roles: in.Roles, RunList: in.RunList, PolicyName: in.PolicyName, PolicyGroup: in.PolicyGroup,
		Platform: in.Platform, ClientVersion: in.ClientVersion, DependsOn: in.DependsOn,
		Status: lr.Status, Start: lr.Start, End: lr.End, Duration: lr.Duration,
		UpdatedCount: lr.Updated, FailedCount: lr.Failed, TotalResources: lr.Total,
		Updated: lr.Changes, Failed: lr.Failures, Error: lr.Error,
	}
	return r
}

// importedStart is the run start that makes a node converging as in is.
func importedStart(in *Node) *report.Run {
	return &report.Run{
		Kind: report.KindStart, Source: in.Source, ID: in.convergingRun, Node: in.Name,
		Start: in.ConvergingSince,
	}
}
