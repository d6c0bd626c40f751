// Package fleet keeps what runlens knows about each node: its identity, its
// latest finished run, whether it is converging right now, and how many runs,
// failures and changed resources it reported since this process started.
//
// The state is fed with report.Run values and read by sinks (the exporter's
// metrics, the datasource's frames). It never reaches back to the broker or
// the decoder. It is safe for concurrent use.
package fleet

import (
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

// Outcome of applying one report.
type Outcome uint8

const (
	// Applied: the report was new and has been taken into account.
	Applied Outcome = iota
	// Duplicate: a report with the same key was applied recently; nothing changed.
	Duplicate
	// Refused: the report is of a node not tracked yet and Options.MaxNodes
	// are; nothing changed.
	Refused
)

// Options tune a State. The zero value is usable.
type Options struct {
	// DedupWindow is how many recent report keys are remembered to drop
	// redeliveries. Default 100,000: far more than the reports a broker can
	// redeliver after a consumer's connection drops (at most its prefetch).
	DedupWindow int
	// KeepChanges is how many changed and failed resources of the last run
	// each node keeps by name (the datasource shows them; the exporter needs
	// none, so it keeps 0 and spends no memory on them).
	KeepChanges int
	// MaxNodes, MaxRoles and MaxRoleBytes bound the state (see bounds.go);
	// zero means no bound.
	MaxNodes, MaxRoles, MaxRoleBytes int
}

// LastRun summarises a node's latest finished run.
type LastRun struct {
	ID       string
	Format   report.Format
	Status   report.Status
	Start    time.Time
	End      time.Time
	Duration time.Duration
	Updated  int // resources changed
	Failed   int // resources failed
	Total    int // resources evaluated, 0 when unknown
	Error    *report.RunError
	Changes  []report.Resource // at most Options.KeepChanges
	Failures []report.Resource // at most Options.KeepChanges
}

// Node is one host of the fleet. Values handed out by State are copies.
type Node struct {
	Name          string
	Environment   string
	FQDN          string
	IPAddress     string
	Source        report.Source
	Roles         []string // sorted
	RunList       []string
	PolicyName    string
	PolicyGroup   string
	Platform      string
	ClientVersion string
	DependsOn     []string

	// Counters since this State began. They count every applied run,
	// including ones that arrived out of order.
	Runs             uint64
	Failures         uint64
	UpdatedResources uint64

	// Last is the finished run with the latest end time; nil while only a
	// run start has been seen.
	Last *LastRun

	// Converging is true between a run's start and its end.
	Converging      bool
	ConvergingSince time.Time
	convergingRun   string

	// Seen is when the node was last heard from: the time a counted report
	// was applied, or a restored report's own time (capped at the time it
	// was restored). --node.ttl expires nodes by it.
	Seen time.Time
}

// RolesLabel joins the roles for use as one label value.
func (n *Node) RolesLabel() string { return strings.Join(n.Roles, ",") }

// State is the fleet.
type State struct {
	opts  Options
	mu    sync.RWMutex
	nodes map[string]*Node
	dedup *dedup
	gen   uint64 // bumped on every change, so readers can tell if anything moved
	bound boundCounts
}

// New returns an empty fleet.
func New(opts Options) *State {
	if opts.DedupWindow <= 0 {
		opts.DedupWindow = 100_000
	}
	return &State{opts: opts, nodes: make(map[string]*Node), dedup: newDedup(opts.DedupWindow)}
}

// Apply takes one report into account: counters, last run, converging state.
// A report whose key was applied within the dedup window is a Duplicate and
// changes nothing, so a redelivered message is never counted twice.
func (s *State) Apply(r *report.Run, now time.Time) Outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse(r.Node) {
		return Refused
	}
	if !s.dedup.add(r.Key()) {
		return Duplicate
	}
	s.apply(r, now, true)
	return Applied
}

// Restore takes a report from history into account without counting it: it
// rebuilds identity, last run and converging state after a restart. Counters
// are left alone (Prometheus expects them to restart from zero), and the key
// is not remembered, so the same report arriving later through the counted
// path is still counted once.
func (s *State) Restore(r *report.Run, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse(r.Node) {
		return
	}
	s.apply(r, now, false)
}

func (s *State) apply(r *report.Run, now time.Time, count bool) {
	if r.Kind == report.KindDryRun {
		// A dry run changed nothing: it is neither a run nor news about the
		// node's last one.
		return
	}
	s.gen++
	n := s.nodes[r.Node]
	if n == nil {
		n = &Node{Name: r.Node}
		s.nodes[r.Node] = n
	}
	// A counted report was heard now. A restored one (history) was heard
	// when it was sent, which the report's own time stands for; capped at
	// now so a node with a clock in the future cannot outlive its TTL.
	seen := now
	if !count {
		seen = r.End
		if r.Kind == report.KindStart {
			seen = r.Start
		}
		if seen.IsZero() || seen.After(now) {
			seen = now
		}
	}
	if seen.After(n.Seen) {
		n.Seen = seen
	}

	if r.Kind == report.KindStart {
		s.applyStart(n, r)
		return
	}

	if r.IdentityMissing && n.Environment != "" {
		// The run failed before Chef loaded the node ("node": {}): it is
		// this node's run, in the environment and roles it had, not a run
		// of a node in _default without roles. Filling them into r lets
		// every sink after this one (metrics by environment, the run
		// history) file it there too.
		fillIdentity(r, n)
	}
	newest := n.Last == nil || !r.End.Before(n.Last.End)
	if newest {
		// Identity follows the newest run: a node that moved environment
		// or changed roles is shown as it is now.
		setIdentity(n, r)
		n.Roles = s.boundRoles(n.Roles)
	}
	if count {
		n.Runs++
		if r.Status == report.StatusFailure {
			n.Failures++
		}
		n.UpdatedResources += uint64(r.UpdatedCount)
	}
	if newest {
		n.Last = s.lastRun(r)
	}
	if n.Converging && (r.ID != "" && r.ID == n.convergingRun || !r.End.Before(n.ConvergingSince)) {
		n.Converging = false
		n.convergingRun = ""
		n.ConvergingSince = time.Time{}
	}
}

func (s *State) applyStart(n *Node, r *report.Run) {
	if n.Source == "" {
		n.Source = r.Source
	}
	// A start that is older than the last finished run (or is that run's own
	// start, arriving late) says nothing about now.
	if n.Last != nil && (r.ID != "" && r.ID == n.Last.ID || !r.Start.IsZero() && r.Start.Before(n.Last.End)) {
		return
	}
	if n.Converging && r.Start.Before(n.ConvergingSince) {
		return
	}
	n.Converging = true
	n.ConvergingSince = r.Start
	n.convergingRun = r.ID
}

func setIdentity(n *Node, r *report.Run) {
	n.Environment = r.Environment
	n.Source = r.Source
	n.FQDN = r.FQDN
	n.IPAddress = r.IPAddress
	n.Roles = sortedCopy(r.Roles)
	n.RunList = slices.Clone(r.RunList)
	n.PolicyName = r.PolicyName
	n.PolicyGroup = r.PolicyGroup
	n.Platform = r.Platform
	n.ClientVersion = r.ClientVersion
	n.DependsOn = sortedCopy(r.DependsOn)
}

// fillIdentity gives r, a run that carries no identity, the node's last
// known one. The slices are shared with the node, which never modifies them.
func fillIdentity(r *report.Run, n *Node) {
	r.Environment = n.Environment
	r.FQDN = n.FQDN
	r.IPAddress = n.IPAddress
	r.Roles = n.Roles
	r.RunList = n.RunList
	r.PolicyName = n.PolicyName
	r.PolicyGroup = n.PolicyGroup
	r.Platform = n.Platform
	r.ClientVersion = n.ClientVersion
	r.DependsOn = n.DependsOn
	r.IdentityMissing = false
}

func (s *State) lastRun(r *report.Run) *LastRun {
	lr := &LastRun{
		ID: r.ID, Format: r.Format, Status: r.Status,
		Start: r.Start, End: r.End, Duration: r.Duration,
		Updated: r.UpdatedCount, Failed: r.FailedCount, Total: r.TotalResources,
	}
	if r.Error != nil {
		e := *r.Error
		lr.Error = &e
	}
	if k := s.opts.KeepChanges; k > 0 {
		lr.Changes = slices.Clone(r.Updated[:min(k, len(r.Updated))])
		lr.Failures = slices.Clone(r.Failed[:min(k, len(r.Failed))])
	}
	return lr
}

func sortedCopy(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := slices.Clone(in)
	sort.Strings(out)
	return slices.Compact(out)
}

// Expire removes nodes not seen since now-ttl and returns their names.
func (s *State) Expire(now time.Time, ttl time.Duration) []string {
	if ttl <= 0 {
		return nil
	}
	cut := now.Add(-ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	var gone []string
	for name, n := range s.nodes {
		if n.Seen.Before(cut) {
			delete(s.nodes, name)
			gone = append(gone, name)
		}
	}
	if len(gone) > 0 {
		s.gen++
	}
	sort.Strings(gone)
	return gone
}

// Len is the number of nodes tracked.
func (s *State) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.nodes)
}

// Generation changes whenever the state changes.
func (s *State) Generation() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gen
}

// Node returns a copy of one node.
func (s *State) Node(name string) (Node, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n, ok := s.nodes[name]
	if !ok {
		return Node{}, false
	}
	return *n, true
}

// Each calls f with every node, sorted by name, under a read lock: f must be
// quick and must not keep the pointer (copy what it needs). Sorting keeps
// every reader's output stable from one call to the next.
func (s *State) Each(f func(n *Node)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := make([]string, 0, len(s.nodes))
	for name := range s.nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f(s.nodes[name])
	}
}

// Snapshot returns copies of every node, sorted by name. Slices inside the
// copies are shared with the state and must not be modified.
func (s *State) Snapshot() []Node {
	out := make([]Node, 0, s.Len())
	s.Each(func(n *Node) { out = append(out, *n) })
	return out
}
