package fleet

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

// TestEarlyFailureKeepsIdentity: a Chef run that failed before the node
// loaded reports "node": {} (lib/chef/data_collector/run_end_message.rb:
// node&.data_for_save || {}). It is the node's run, counted under the
// environment, roles and run list the node had, not a run of a node in
// _default without roles; the next full report sets the identity again.
func TestEarlyFailureKeepsIdentity(t *testing.T) {
	s := New(Options{})
	ok := run("web-1", "r1", t0, report.StatusSuccess, 1)
	ok.FQDN, ok.RunList, ok.PolicyName, ok.Platform = "web-1.example.com", []string{"role[web]"}, "web", "ubuntu 24.04"
	s.Apply(ok, t0)

	early := decodeSample(t, "chef-run_converge-node-load-failure.json")
	early.Node = "web-1"
	early.Start, early.End = t0.Add(time.Hour-2*time.Second), t0.Add(time.Hour)
	if !early.IdentityMissing || early.Environment != "_default" {
		t.Fatalf("the sample must be an identity-less report in _default: %+v", early)
	}
	if s.Apply(early, t0.Add(time.Hour)) != Applied {
		t.Fatal("not applied")
	}
	n, _ := s.Node("web-1")
	if n.Environment != "prod" || n.FQDN != "web-1.example.com" || n.RolesLabel() != "base,web" ||
		!slices.Equal(n.RunList, []string{"role[web]"}) || n.PolicyName != "web" || n.Platform != "ubuntu 24.04" {
		t.Errorf("identity after the early failure: %+v", n)
	}
	if n.Runs != 2 || n.Failures != 1 || n.Last.Status != report.StatusFailure || n.Last.ID != early.ID {
		t.Errorf("the early failure was not counted as the node's run: %+v, last %+v", n, n.Last)
	}
	// The run itself now carries the identity, for the sinks after the fleet.
	if early.Environment != "prod" || early.IdentityMissing || !slices.Equal(early.Roles, []string{"base", "web"}) {
		t.Errorf("the run was not given the node's identity: env %q roles %v", early.Environment, early.Roles)
	}

	// A node never seen before: the report's fallback, _default.
	fresh := decodeSample(t, "chef-run_converge-node-load-failure.json")
	fresh.ID = "another-run"
	s.Apply(fresh, t0)
	if n, _ := s.Node(fresh.Node); n.Environment != "_default" || n.Runs != 1 || n.Failures != 1 {
		t.Errorf("unknown node: %+v", n)
	}

	// The next full report sets the identity as usual.
	moved := run("web-1", "r3", t0.Add(2*time.Hour), report.StatusSuccess, 0)
	moved.Environment, moved.Roles = "staging", []string{"db"}
	s.Apply(moved, t0.Add(2*time.Hour))
	if n, _ := s.Node("web-1"); n.Environment != "staging" || n.RolesLabel() != "db" {
		t.Errorf("after a full report: %+v", n)
	}
}

// TestDryRunsChangeNothing: a why-run or test=True run is not a run: no
// counter, no last run, no node, no history record.
func TestDryRunsChangeNothing(t *testing.T) {
	s := New(Options{})
	h := NewHistory(HistoryOptions{})
	r := run("web-1", "r1", t0, report.StatusSuccess, 2)
	s.Apply(r, t0)
	h.Add(r)
	gen := s.Generation()
	for _, name := range []string{"chef-handler-why-run.json", "salt-state.test.json", "salt-state.apply-test-true.json"} {
		dry := decodeSample(t, name)
		if dry.Kind != report.KindDryRun {
			t.Fatalf("%s is not a dry run", name)
		}
		dry.Node = "web-1"
		s.Apply(dry, t0.Add(time.Hour))
		s.Restore(dry, t0.Add(time.Hour))
		if h.Add(dry) {
			t.Errorf("%s: the history holds a dry run", name)
		}
		other := decodeSample(t, name)
		s.Apply(other, t0.Add(time.Hour))
		if _, known := s.Node(other.Node); known {
			t.Errorf("%s: a dry run created node %s", name, other.Node)
		}
	}
	n, _ := s.Node("web-1")
	if n.Runs != 1 || n.UpdatedResources != 2 || n.Last.ID != "r1" || s.Generation() != gen || h.Len() != 1 {
		t.Errorf("after dry runs: runs %d updated %d last %s gen %d→%d history %d", n.Runs, n.UpdatedResources, n.Last.ID, gen, s.Generation(), h.Len())
	}
	if st := h.StateAt(t0.Add(2*time.Hour), Options{}); st.Len() != 1 {
		t.Errorf("StateAt: %d nodes", st.Len())
	}
}

func decodeSample(t *testing.T, name string) *report.Run {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "report", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	r, err := report.Decode(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return r
}
