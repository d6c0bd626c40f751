package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/runlens/runlens/pkg/topology"
)

// Bounds on what one query's filters may cost (issue #13: a viewer's
// regex must not pin the plugin).
const (
	// maxPatternBytes caps the node filter as typed, and each of the
	// environment and role lists.
	maxPatternBytes = 4096
	// maxProgramInsts caps the node filter's compiled program: a
	// repetition such as (?:.?){1000} expands to thousands of instructions,
	// each tried at every byte of every name.
	maxProgramInsts = 5000
	// filterBudget is how long one query (or one live frame) may spend
	// matching names before it is refused.
	filterBudget = time.Second
)

// allValues are what a dashboard variable's All sends, or what people type
// for "every one": no filter.
var allValues = []string{"$__all", "*", ".*", "All"}

// parseList reads the environment or role filter: a name, or several as a
// comma-separated list (a multi-value variable); empty, or any item being
// an All value, means every one. The result is sorted and de-duplicated.
func parseList(name, raw string) ([]string, error) {
	if len(raw) > maxPatternBytes {
		return nil, fmt.Errorf("%s filter is %d bytes long; the limit is %d", name, len(raw), maxPatternBytes)
	}
	var out []string
	for item := range strings.SplitSeq(raw, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if slices.Contains(allValues, item) {
			return nil, nil
		}
		out = append(out, item)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// normalizeNode reads the node filter: "" and the All values $__all and .*
// mean every node.
func normalizeNode(raw string) string {
	raw = strings.TrimSpace(raw)
	if raw == "$__all" || raw == ".*" {
		return ""
	}
	return raw
}

// compileNode compiles the node filter, anchored as ^(?:expr)$ so that
// web1 does not match web10; its error names the filter and the limit it
// broke.
func compileNode(expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	if len(expr) > maxPatternBytes {
		return nil, fmt.Errorf("node filter is %d bytes long; the limit is %d: narrow the selection or use a shorter pattern", len(expr), maxPatternBytes)
	}
	anchored := "^(?:" + expr + ")$"
	parsed, err := syntax.Parse(anchored, syntax.Perl)
	if err != nil {
		if _, plain := syntax.Parse(expr, syntax.Perl); plain != nil {
			err = plain // the user's own text, not the anchored one
		}
		return nil, fmt.Errorf("node filter %q is not a valid regular expression: %v", expr, err)
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return nil, fmt.Errorf("node filter %q cannot be compiled: %v", expr, err)
	}
	if n := len(prog.Inst); n > maxProgramInsts {
		return nil, fmt.Errorf("node filter %q compiles to %d instructions; the limit is %d: large repeat counts such as {1000} expand, so simplify it",
			expr, n, maxProgramInsts)
	}
	return regexp.Compile(anchored)
}

// errFilterBudget is the nodeMatcher's error once its budget is spent.
var errFilterBudget = errors.New("the node filter is too expensive")

// nodeMatcher answers "does this node name match?" at most once per name
// (a node's name is asked about in every frame, and by every run of a runs
// query), within a time budget per evaluation. Safe for concurrent use.
type nodeMatcher struct {
	expr string
	re   *regexp.Regexp // nil: every name

	mu       sync.Mutex
	memo     map[string]bool
	deadline time.Time
	err      error
}

func newNodeMatcher(expr string) (*nodeMatcher, error) {
	re, err := compileNode(expr)
	if err != nil {
		return nil, err
	}
	return &nodeMatcher{expr: expr, re: re, memo: map[string]bool{}}, nil
}

// begin starts an evaluation: the next filterBudget of matching. keep
// bounds the memo: past it, the memo starts over (names of nodes long gone
// go with it).
func (m *nodeMatcher) begin(keep int) {
	if m.re == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deadline, m.err = time.Now().Add(filterBudget), nil
	if len(m.memo) > 2*keep+1024 {
		m.memo = map[string]bool{}
	}
}

// match reports whether name matches; once the evaluation's budget is
// spent it says no to every name it has not decided yet, and err says so.
func (m *nodeMatcher) match(name string) bool {
	if m.re == nil {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.memo[name]; ok {
		return v
	}
	if m.err != nil {
		return false
	}
	if !m.deadline.IsZero() && time.Now().After(m.deadline) {
		m.err = fmt.Errorf("%w: %q took more than %s to match the nodes; simplify it", errFilterBudget, m.expr, filterBudget)
		return false
	}
	v := m.re.MatchString(name)
	m.memo[name] = v
	return v
}

// Err is the evaluation's error (a spent budget), or nil.
func (m *nodeMatcher) Err() error {
	if m.re == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Layouts of a topology query.
const (
	layoutPinned = "pinned" // fixedX/fixedY on every node (topology.Layout)
	layoutAuto   = "auto"   // the Node Graph panel's own layout
)

// layoutOption reads the query's layout: "pinned" (default) or "auto";
// the legacy boolean reads as pinned (true) or the default (false).
type layoutOption string

func (l *layoutOption) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case nil, bool:
		*l = layoutPinned
	case string:
		switch v {
		case "", layoutPinned:
			*l = layoutPinned
		case layoutAuto:
			*l = layoutAuto
		default:
			return fmt.Errorf("layout %q: want pinned or auto", v)
		}
	default:
		return fmt.Errorf("layout %v: want pinned or auto", v)
	}
	return nil
}

// topoFilter is what a topology view depends on, normalized: equal views
// have equal filters (and the same key).
type topoFilter struct {
	Environments []string         `json:"e,omitempty"`
	Roles        []string         `json:"r,omitempty"`
	Node         string           `json:"n,omitempty"` // RE2 as typed; anchored by compileNode
	GroupBy      topology.GroupBy `json:"g,omitempty"` // "" = node
	Layout       string           `json:"l,omitempty"` // "" = pinned
}

// newTopoFilter normalizes the query's topology fields.
func newTopoFilter(m queryModel) (topoFilter, error) {
	var f topoFilter
	var err error
	if f.Environments, err = parseList("environment", m.Environment); err != nil {
		return f, err
	}
	if f.Roles, err = parseList("role", m.Role); err != nil {
		return f, err
	}
	f.Node = normalizeNode(m.Node)
	switch topology.GroupBy(m.GroupBy) {
	case "", topology.ByNode:
	case topology.ByRole:
		f.GroupBy = topology.ByRole
	default:
		return f, fmt.Errorf("groupBy %q: want node or role", m.GroupBy)
	}
	if m.Layout == layoutAuto {
		f.Layout = layoutAuto
	}
	return f, f.validate()
}

// validate checks a filter read from a channel path as newTopoFilter made
// it: normalized, and with a node filter that compiles within the limits.
func (f topoFilter) validate() error {
	for _, l := range [][]string{f.Environments, f.Roles} {
		if !slices.IsSorted(l) || len(slices.Compact(slices.Clone(l))) != len(l) || slices.Contains(l, "") {
			return errors.New("filter lists are not normalized")
		}
	}
	if f.GroupBy != "" && f.GroupBy != topology.ByRole || f.Layout != "" && f.Layout != layoutAuto {
		return errors.New("filter groupBy or layout is not normalized")
	}
	_, err := compileNode(f.Node)
	return err
}

func (f topoFilter) groupBy() topology.GroupBy {
	if f.GroupBy == "" {
		return topology.ByNode
	}
	return f.GroupBy
}

func (f topoFilter) pinned() bool { return f.Layout != layoutAuto }

// key identifies the view: its canonical JSON.
func (f topoFilter) key() string {
	b, _ := json.Marshal(f)
	return string(b)
}
