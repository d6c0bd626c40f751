package changeset

import (
	"fmt"
	"strings"
)

// titleResources is how many resources a title names.
const titleResources = 2

// ResourcesLabel names the first resources of the set: "a, b and 3 more";
// "" when the reports named none.
func (s *Set) ResourcesLabel() string {
	if len(s.Resources) == 0 {
		return ""
	}
	shown := s.Resources[:min(len(s.Resources), titleResources)]
	label := strings.Join(shown, ", ")
	if more := len(s.Resources) - len(shown); more > 0 {
		label += fmt.Sprintf(" and %d more", more)
	}
	return label
}

// Title names the changed resources and the number of nodes; a one-node
// set names its node: "web-3: file[/etc/x]", "template[/etc/app.conf] on
// 48 nodes", with the failures when there are any. Runs that named no
// resource: "db-1: run failed", "changes on 3 nodes".
func (s *Set) Title() string {
	label, status := s.ResourcesLabel(), s.Status()
	if label == "" {
		what, whats := "changed", "changes"
		if status == StatusFailure {
			what, whats = "run failed", "failed runs"
		}
		if len(s.Nodes) == 1 {
			return s.Nodes[0] + ": " + what
		}
		return whats + " on " + plural(len(s.Nodes), "node", "nodes")
	}
	var t string
	if len(s.Nodes) == 1 {
		t = s.Nodes[0] + ": " + label
	} else {
		t = label + " on " + plural(len(s.Nodes), "node", "nodes")
	}
	switch status {
	case StatusFailure:
		if len(s.Runs) == 1 {
			t += " (failed)"
		} else {
			t += " (every run failed)"
		}
	case StatusPartial:
		t += fmt.Sprintf(" (%d of %d runs failed)", s.Failed, len(s.Runs))
	}
	return t
}

// ShortList is the nodes, the first limit of them named: "a, b, c and 280
// more".
func ShortList(nodes []string, limit int) string {
	if len(nodes) <= limit {
		return strings.Join(nodes, ", ")
	}
	return strings.Join(nodes[:limit], ", ") + fmt.Sprintf(" and %d more", len(nodes)-limit)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
