package topology

import (
	"reflect"
	"testing"
)

// The nodes of a suspect change set light up (issue #12): highlighted, and
// detail__suspect says which set; a role with such nodes too.
func TestFramesSuspects(t *testing.T) {
	suspects := map[string]string{"app-1": "set A, score 31", "web-1": "set B, score 12"}
	nodes, _ := Frames(testFleet(), Filter{}, Options{Now: now, Config: testConfig, Suspects: suspects})
	want := map[string][]any{
		"id":              {"app-1", "app-2", "cache-1", "db-1", "web-1", "web-2"},
		"highlighted":     {true, false, false, false, true, true}, // web-2 failed
		"detail__suspect": {"set A, score 31", "", "", "", "set B, score 12", ""},
	}
	for name, w := range want {
		if got := column(t, nodes, name); !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %q\n want %q", name, got, w)
		}
	}

	roles, _ := Frames(testFleet(), Filter{}, Options{Now: now, Config: testConfig, GroupBy: ByRole,
		Suspects: map[string]string{"app-1": "set A", "app-2": "set C", "web-1": "set B"}})
	want = map[string][]any{
		"id":              {"app", "base", "cache", "db", "web"},
		"highlighted":     {true, true, false, false, true},
		"detail__suspect": {"2 suspect nodes, first: set A", "set B", "", "", "set B"},
	}
	for name, w := range want {
		if got := column(t, roles, name); !reflect.DeepEqual(got, w) {
			t.Errorf("by role: %s = %q\n want %q", name, got, w)
		}
	}

	// An empty map keeps the column (the live view's schema does not change
	// when the last mark clears); nil leaves it out.
	empty, _ := Frames(testFleet(), Filter{}, Options{Now: now, Config: testConfig, Suspects: map[string]string{}})
	if f, _ := empty.FieldByName("detail__suspect"); f == nil {
		t.Error("Suspects empty: no detail__suspect column")
	}
	off, _ := Frames(testFleet(), Filter{}, Options{Now: now, Config: testConfig})
	if f, _ := off.FieldByName("detail__suspect"); f != nil {
		t.Error("Suspects nil: a detail__suspect column")
	}
}
