// Package topology turns the fleet's nodes into the data frames of Grafana's
// Node Graph panel: one node per host (or per role), edges from the nodes'
// depends_on entries and from the datasource's topology file.
package topology

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v2"
)

// Config is the datasource's topology file: role → roles it depends on.
type Config struct {
	DependsOn map[string][]string
}

// ParseConfig reads the topology file: a YAML mapping from a role to the
// role (a string) or roles (a list of strings) it depends on, for example
//
//	web: [app, cache]
//	app: db
//
// Empty text (or only comments) is an empty Config. Lists are sorted and
// de-duplicated; a null value depends on nothing.
func ParseConfig(text string) (Config, error) {
	cfg := Config{DependsOn: map[string][]string{}}
	if strings.TrimSpace(text) == "" {
		return cfg, nil
	}
	var doc yaml.MapSlice
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return Config{}, fmt.Errorf("topology: %w", err)
	}
	// MapSlice loses line numbers; find them again for error messages.
	line := func(key string) int { return findKeyLine(text, key) }
	for _, item := range doc {
		role, ok := item.Key.(string)
		if !ok || role == "" {
			return Config{}, fmt.Errorf("topology: line %d: role %v is not a non-empty string", findKeyLine(text, fmt.Sprint(item.Key)), item.Key)
		}
		if _, dup := cfg.DependsOn[role]; dup {
			return Config{}, fmt.Errorf("topology: line %d: role %q is listed twice", line(role), role)
		}
		var deps []string
		switch v := item.Value.(type) {
		case nil:
		case string:
			deps = []string{v}
		case []any:
			for i, e := range v {
				s, ok := e.(string)
				if !ok {
					return Config{}, fmt.Errorf("topology: line %d: role %q: entry %d (%v) is not a string", line(role), role, i+1, e)
				}
				deps = append(deps, s)
			}
		default:
			return Config{}, fmt.Errorf("topology: line %d: role %q: want a role name or a list of role names, got %v", line(role), role, v)
		}
		for _, d := range deps {
			if strings.TrimSpace(d) == "" {
				return Config{}, fmt.Errorf("topology: line %d: role %q: empty role name", line(role), role)
			}
		}
		sort.Strings(deps)
		cfg.DependsOn[role] = slices.Compact(deps)
	}
	return cfg, nil
}

// findKeyLine returns the 1-based line where key starts a top-level mapping
// entry, or 0 when it cannot be found (quoted keys, flow mappings).
func findKeyLine(text, key string) int {
	for i, l := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(l, key); ok && strings.HasPrefix(strings.TrimLeft(rest, " \t"), ":") {
			return i + 1
		}
		for _, q := range []string{`"`, `'`} {
			if rest, ok := strings.CutPrefix(l, q+key+q); ok && strings.HasPrefix(strings.TrimLeft(rest, " \t"), ":") {
				return i + 1
			}
		}
	}
	return 0
}
