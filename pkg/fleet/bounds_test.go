package fleet

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

// With MaxNodes tracked, reports of new nodes are refused (applied or
// restored, runs or run starts) and counted; the nodes already tracked keep
// being updated, and a node that expired frees its place.
func TestMaxNodes(t *testing.T) {
	s := New(Options{MaxNodes: 3})
	for i := range 3 {
		if got := s.Apply(run(fmt.Sprint("n", i), fmt.Sprint("r", i), t0, report.StatusSuccess, 0), t0); got != Applied {
			t.Fatalf("node %d: %v", i, got)
		}
	}
	if got := s.Apply(run("n3", "r3", t0, report.StatusSuccess, 0), t0); got != Refused {
		t.Fatalf("fourth node: %v, want Refused", got)
	}
	s.Restore(run("n4", "r4", t0, report.StatusSuccess, 0), t0)
	if got := s.Apply(&report.Run{Kind: report.KindStart, Node: "n5", ID: "s5", Start: t0}, t0); got != Refused {
		t.Fatalf("run start of a fifth node: %v, want Refused", got)
	}
	if s.Len() != 3 {
		t.Fatalf("%d nodes tracked, want 3", s.Len())
	}
	if got := s.Refusals().Nodes; got != 3 {
		t.Errorf("Refusals().Nodes = %d, want 3", got)
	}
	// A tracked node is never refused, and the refused report's key was not
	// remembered: once there is room it is applied, not a duplicate.
	if got := s.Apply(run("n0", "r0b", t0.Add(time.Minute), report.StatusFailure, 1), t0.Add(time.Minute)); got != Applied {
		t.Fatalf("tracked node at the bound: %v", got)
	}
	s.Expire(t0.Add(30*time.Minute), 10*time.Minute) // n1, n2 expire
	if got := s.Apply(run("n3", "r3", t0, report.StatusSuccess, 0), t0.Add(30*time.Minute)); got != Applied {
		t.Fatalf("refused report once nodes expired: %v, want Applied", got)
	}
}

func TestRoleBounds(t *testing.T) {
	s := New(Options{MaxRoles: 2, MaxRoleBytes: 8})
	r := run("web-1", "r1", t0, report.StatusSuccess, 0)
	r.Roles = []string{"web", strings.Repeat("x", 9), "db", "base", "web"}
	s.Apply(r, t0)
	n, _ := s.Node("web-1")
	// Sorted and de-duplicated: base, db, web, xxxxxxxxx. The long one is
	// dropped, then the first two kept.
	if !slices.Equal(n.Roles, []string{"base", "db"}) {
		t.Errorf("roles = %q, want [base db]", n.Roles)
	}
	if got := s.Refusals(); got.RolesOverBytes != 1 || got.RolesOverCount != 1 {
		t.Errorf("refusals = %+v, want one role over the length and one over the count", got)
	}
	if !slices.Equal(r.Roles, []string{"web", strings.Repeat("x", 9), "db", "base", "web"}) {
		t.Errorf("the report's own roles were changed: %q", r.Roles)
	}
	// Without bounds everything is kept.
	s = New(Options{})
	r.Roles = []string{strings.Repeat("y", 300), "a", "b", "c"}
	s.Apply(r, t0)
	if n, _ := s.Node("web-1"); len(n.Roles) != 4 {
		t.Errorf("unbounded: roles %q", n.Roles)
	}
}

func TestEnvironments(t *testing.T) {
	s := New(Options{})
	a := run("a", "1", t0, report.StatusSuccess, 0)
	b := run("b", "2", t0, report.StatusSuccess, 0)
	b.Environment = "dev"
	s.Apply(a, t0)
	s.Apply(b, t0)
	s.Apply(&report.Run{Kind: report.KindStart, Node: "c", ID: "3", Start: t0}, t0)
	got := s.Environments()
	if len(got) != 3 || got["prod"] != 1 || got["dev"] != 1 || got[""] != 1 {
		t.Errorf("Environments() = %v", got)
	}
	// A node that moves takes its environment with it.
	moved := run("b", "4", t0.Add(time.Minute), report.StatusSuccess, 0)
	s.Apply(moved, t0.Add(time.Minute))
	if got := s.Environments(); got["dev"] != 0 || got["prod"] != 2 {
		t.Errorf("after the move: %v", got)
	}
}
