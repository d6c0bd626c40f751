package dashboards

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// impactFields are the fields of the runlens impact frame (set mode),
// datasource/plugin/impact.go impactFrame; TestImpactRanking there holds
// the frame to them.
var impactFields = []string{"time", "timeEnd", "environment", "role", "nodes", "runs", "waves", "nodeList", "title",
	"before", "after", "delta", "score", "detail", "status", "set", "undoes", "nodeRegex", "nodeParams"}

// impactPanels are a dashboard's tables of the runlens impact query.
func impactPanels(d loaded) []map[string]any {
	var out []map[string]any
	for _, p := range d.raw["panels"].([]any) {
		pm := p.(map[string]any)
		targets, _ := pm["targets"].([]any)
		if pm["type"] == "table" && len(targets) == 1 && targets[0].(map[string]any)["queryType"] == "impact" {
			out = append(out, pm)
		}
	}
	return out
}

// overrideLinks are the data links a panel's override of field name sets.
func overrideLinks(p map[string]any, name string) []string {
	var urls []string
	for _, o := range p["fieldConfig"].(map[string]any)["overrides"].([]any) {
		om := o.(map[string]any)
		if m := om["matcher"].(map[string]any); m["id"] != "byName" || m["options"] != name {
			continue
		}
		for _, prop := range om["properties"].([]any) {
			pm := prop.(map[string]any)
			if pm["id"] != "links" {
				continue
			}
			for _, l := range pm["value"].([]any) {
				urls = append(urls, l.(map[string]any)["url"].(string))
			}
		}
	}
	return urls
}

func changeAnnotation(d loaded) map[string]any {
	for _, a := range d.raw["annotations"].(map[string]any)["list"].([]any) {
		am := a.(map[string]any)
		if tg, ok := am["target"].(map[string]any); ok && tg["queryType"] == "changes" && am["enable"] == true {
			return tg
		}
	}
	return nil
}

// TestChangeSetPanels checks what issue #12 asks of the dashboards: the
// deploys dashboard shows the change-set regions on its APM panels and the
// impact table (nodes, waves, score, links) beside them; the fleet
// dashboard links a change set to its nodes.
func TestChangeSetPanels(t *testing.T) {
	byFile := map[string]loaded{}
	for _, d := range loadAll(t) {
		byFile[d.file] = d
	}
	fieldRef := regexp.MustCompile(`\$\{__data\.fields\.([A-Za-z]+)(?::[a-z]+)?\}`)
	for _, file := range []string{"deploys.json", "fleet.json"} {
		d := byFile[file]
		// One annotation per change set: the default groupBy.
		a := changeAnnotation(d)
		if a == nil || a["groupBy"] != nil {
			t.Errorf("%s: want an enabled changes annotation, one region per change set (no groupBy), got %v", file, a)
		}
		tables := impactPanels(d)
		if len(tables) != 1 {
			t.Fatalf("%s: %d impact tables, want 1", file, len(tables))
		}
		p := tables[0]
		nodes := overrideLinks(p, "nodes")
		if len(nodes) != 2 || !strings.HasPrefix(nodes[0], "/d/"+TopologyUID+"/") || !strings.Contains(nodes[0], "var-node=${__data.fields.nodeRegex}") ||
			!strings.HasPrefix(nodes[1], "/d/"+FleetUID+"/") || !strings.Contains(nodes[1], "?${__data.fields.nodeParams:raw}&") {
			t.Errorf("%s: the nodes column should link to the set's nodes on the topology (node regex) and the fleet dashboard (var-node per node): %q", file, nodes)
		}
		// Links and the organize transformation name fields the frame has.
		for _, u := range append(nodes, overrideLinks(p, "title")...) {
			for _, m := range fieldRef.FindAllStringSubmatch(u, -1) {
				if !slices.Contains(impactFields, m[1]) {
					t.Errorf("%s: link %s names field %s, not in the impact frame", file, u, m[1])
				}
			}
		}
		for _, tr := range p["transformations"].([]any) {
			opts := tr.(map[string]any)["options"].(map[string]any)
			for _, key := range []string{"excludeByName", "indexByName"} {
				m, _ := opts[key].(map[string]any)
				for f := range m {
					if !slices.Contains(impactFields, f) {
						t.Errorf("%s: %s names %s, not a field of the impact frame", file, key, f)
					}
				}
			}
			shown := opts["excludeByName"].(map[string]any)
			for _, f := range []string{"nodes", "waves", "score", "title"} {
				if shown[f] == true {
					t.Errorf("%s: the impact table hides %s", file, f)
				}
			}
		}
	}
	if a := changeAnnotation(byFile["fleet.json"]); a["environment"] != "$environment" || a["node"] != "$node" {
		t.Errorf("fleet.json: the change sets should follow the environment and node variables: %v", a)
	}
}
