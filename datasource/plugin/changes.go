package plugin

// The changes query: annotations, by default one per change set (a region
// from its first start to its last end), with groupBy "run" one per run.
// The change sets are shared with the impact query.

import (
	"fmt"
	"html"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/changeset"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/topology"
)

// groupBy values of the changes and impact queries.
const (
	GroupBySet = "set" // default: one annotation / row per change set
	GroupByRun = "run" // one per run
)

const (
	// lookbackGaps: runs up to this many gaps before the range are grouped
	// too, so a roll-out that began before the range is whole, and a set
	// in the range knows the earlier set it undoes.
	lookbackGaps = 4
	// maxListedNodes is how many node names a node list shows.
	maxListedNodes = 20
	// maxLinkedNodes bounds the nodes a link filters on by name; a larger
	// set's links filter on its role instead.
	maxLinkedNodes = 1000
	// maxListedWaves is how many waves an annotation's text lists.
	maxListedWaves = 20
)

// changeGroupBy validates the groupBy of a changes or impact query. A
// topology value (node, role) is what the query editor leaves when the query
// type is switched from topology: saved queries carry it, so it reads as the
// default.
func changeGroupBy(g string) (string, error) {
	switch g {
	case "", GroupBySet, string(topology.ByNode), string(topology.ByRole):
		return GroupBySet, nil
	case GroupByRun:
		return GroupByRun, nil
	}
	return "", fmt.Errorf("groupBy %q: want %q (one per change set, the default) or %q (one per run)", g, GroupBySet, GroupByRun)
}

// changeSets is what the changes and impact queries group.
type changeSets struct {
	// sets are the change sets with a run ending in the range and a node
	// matching the filter, by start.
	sets []*changeset.Set
	// byID holds every set grouped, the lookback's too.
	byID map[string]*changeset.Set
	// setOf maps each run grouped to its set.
	setOf map[*report.Run]*changeset.Set
}

// changeSets groups the changes of the range. The environment and role
// filters select the runs grouped; the node filter selects the sets that
// have one of its nodes (a node's annotation is the whole roll-out it was
// part of).
func (inst *Instance) changeSets(tr backend.TimeRange, rf runFilter) changeSets {
	gap := inst.settings.ChangeGap
	if gap <= 0 {
		gap = changeset.DefaultGap
	}
	grouped := rf
	grouped.node, grouped.f.Node = nil, nil
	var fleet, changes []*report.Run
	for _, r := range inst.history.Runs(tr.From.Add(-lookbackGaps*gap), tr.To) {
		if len(rf.f.Environments) > 0 && !slices.Contains(rf.f.Environments, r.Environment) {
			continue
		}
		fleet = append(fleet, r)
		if isChange(r) && grouped.match(r) {
			changes = append(changes, r)
		}
	}
	var roleFilter func(string) bool
	if len(rf.f.Roles) > 0 {
		roleFilter = func(role string) bool { return slices.Contains(rf.f.Roles, role) }
	}
	all := changeset.Group(changes, changeset.Options{Gap: gap, RoleFilter: roleFilter,
		RoleNodes: changeset.RoleNodes(fleet), NodeRuns: changeset.NodeRuns(fleet)})
	cs := changeSets{byID: make(map[string]*changeset.Set, len(all)), setOf: make(map[*report.Run]*changeset.Set, len(changes))}
	for _, s := range all {
		cs.byID[s.ID] = s
		for _, r := range s.Runs {
			cs.setOf[r] = s
		}
		if s.End.Before(tr.From) {
			continue
		}
		if rf.node != nil && !slices.ContainsFunc(s.Nodes, rf.node.match) {
			continue
		}
		cs.sets = append(cs.sets, s)
	}
	return cs
}

// changesFrame is the changes query's annotation frame.
func (inst *Instance) changesFrame(pc backend.PluginContext, tr backend.TimeRange, rf runFilter, groupBy string) *data.Frame {
	if groupBy == GroupByRun {
		return inst.runChangesFrame(pc, tr, rf)
	}
	return inst.setChangesFrame(pc, tr, rf)
}

// setChangesFrame has one annotation per change set: a region from its
// first start to its last end, a title naming its resources and nodes,
// text with its waves, nodes and links, and the tags runlens, environment,
// role and status (success, failure or partial).
func (inst *Instance) setChangesFrame(pc backend.PluginContext, tr backend.TimeRange, rf runFilter) *data.Frame {
	cs := inst.changeSets(tr, rf)
	base := grafanaBase(pc)
	n := len(cs.sets)
	var (
		tm, tmEnd                   = make([]time.Time, n), make([]time.Time, n)
		title, text, tags           = make([]string, n), make([]string, n), make([]string, n)
		env, role, status, id, undo = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		nodeList, nodeRE            = make([]string, n), make([]string, n)
		nodes, runs, waves          = make([]int64, n), make([]int64, n), make([]int64, n)
	)
	for i, s := range cs.sets {
		tm[i], tmEnd[i] = s.Start, s.End
		title[i] = s.Title()
		text[i] = setText(base, s, cs.byID[s.Undoes], inst.settings.ImpactWindow)
		tags[i] = setTags(s)
		env[i], role[i], status[i], id[i], undo[i] = s.Environment, s.Role, s.Status(), s.ID, s.Undoes
		nodeList[i], nodeRE[i] = changeset.ShortList(s.Nodes, maxListedNodes), nodeRegex(s.Nodes)
		nodes[i], runs[i], waves[i] = int64(len(s.Nodes)), int64(len(s.Runs)), int64(len(s.Waves))
	}
	f := data.NewFrame("changes",
		data.NewField("time", nil, tm),
		data.NewField("timeEnd", nil, tmEnd),
		data.NewField("title", nil, title),
		data.NewField("text", nil, text),
		data.NewField("tags", nil, tags),
		data.NewField("environment", nil, env),
		data.NewField("role", nil, role),
		data.NewField("nodes", nil, nodes),
		data.NewField("runs", nil, runs),
		data.NewField("waves", nil, waves),
		data.NewField("status", nil, status),
		data.NewField("nodeList", nil, nodeList),
		data.NewField("nodeRegex", nil, nodeRE),
		data.NewField("set", nil, id),
		data.NewField("undoes", nil, undo),
	)
	f.Meta = &data.FrameMeta{DataTopic: data.DataTopicAnnotations}
	return f
}

func setTags(s *changeset.Set) string {
	tags := []string{"runlens"}
	for _, t := range []string{s.Environment, s.Role, s.Status()} {
		if t != "" {
			tags = append(tags, tagValue(t))
		}
	}
	return strings.Join(slices.Compact(tags), ",")
}

// nodeRegex is the node filter that selects exactly these nodes, in the
// form the datasource anchors (^(?:…)$): "(?:a|b|c)"; "" past
// maxLinkedNodes.
func nodeRegex(nodes []string) string {
	if len(nodes) == 0 || len(nodes) > maxLinkedNodes {
		return ""
	}
	quoted := make([]string, len(nodes))
	for i, n := range nodes {
		quoted[i] = regexp.QuoteMeta(n)
	}
	return "(?:" + strings.Join(quoted, "|") + ")"
}

// nodeParams is the URL query that sets a multi-value node variable to these
// nodes: "var-node=a&var-node=b"; "" past maxLinkedNodes.
func nodeParams(nodes []string) string {
	if len(nodes) > maxLinkedNodes {
		return ""
	}
	q := make([]string, len(nodes))
	for i, n := range nodes {
		q[i] = "var-node=" + url.QueryEscape(n)
	}
	return strings.Join(q, "&")
}

// setLinks are the links of a set's annotation: its nodes on the topology
// and on the fleet dashboard (by role past maxLinkedNodes), and its role's
// APM dashboard, each around the set's time.
func setLinks(base string, s *changeset.Set, window time.Duration) string {
	tr := fmt.Sprintf("&from=%d&to=%d", s.Start.Add(-window).UnixMilli(), s.End.Add(window).UnixMilli())
	envQ := "var-environment=" + url.QueryEscape(s.Environment)
	var topo, fleet, what string
	if re := nodeRegex(s.Nodes); re != "" {
		topo = base + "/d/runlens-topology?var-node=" + url.QueryEscape(re) + "&" + envQ + tr
		fleet = base + "/d/runlens-fleet?" + nodeParams(s.Nodes) + "&" + envQ + tr
		what = "The " + plural(len(s.Nodes), "node", "nodes")
	} else {
		topo = base + "/d/runlens-topology?var-role=" + url.QueryEscape(s.Role) + "&" + envQ + tr
		fleet = base + "/d/runlens-fleet?" + envQ + tr
		what = "Role " + s.Role
	}
	apm := base + "/d/runlens-deploys?" + envQ + "&var-service=" + url.QueryEscape(s.Role) + tr
	esc := html.EscapeString
	return fmt.Sprintf(`<a href="%s">%s on the topology</a> · <a href="%s">on the fleet dashboard</a> · <a href="%s">APM of %s</a>`,
		esc(topo), esc(what), esc(fleet), esc(apm), esc(orDefault(s.Role, "the service")))
}

// setText is a set's annotation text: what, where, the waves, the changed
// resources, the nodes, the first error and the links.
func setText(base string, s *changeset.Set, undoes *changeset.Set, window time.Duration) string {
	var b strings.Builder
	esc := html.EscapeString
	fmt.Fprintf(&b, "<b>%s</b> in %s", plural(len(s.Nodes), "node", "nodes"), esc(orDefault(s.Environment, "no environment")))
	if s.Role != "" {
		fmt.Fprintf(&b, ", role %s", esc(s.Role))
	}
	fmt.Fprintf(&b, ": %s in %s over %s", plural(len(s.Runs), "run", "runs"), plural(len(s.Waves), "wave", "waves"), spanText(s.End.Sub(s.Start)))
	if s.Failed > 0 {
		fmt.Fprintf(&b, ", %d failed", s.Failed)
	}
	b.WriteString("<br/>")
	if undoes != nil {
		fmt.Fprintf(&b, "Changes again what %s changed %s earlier (a roll-back, or a fix).<br/>",
			esc(undoes.Title()), spanText(s.Start.Sub(undoes.Start)))
	}
	if len(s.Waves) > 1 {
		b.WriteString("Waves:<ol>")
		for _, w := range s.Waves[:min(len(s.Waves), maxListedWaves)] {
			fmt.Fprintf(&b, "<li>+%s: %s, %s</li>", spanText(w.Start.Sub(s.Start)), plural(len(w.Nodes), "node", "nodes"), spanText(w.End.Sub(w.Start)))
		}
		if more := len(s.Waves) - maxListedWaves; more > 0 {
			fmt.Fprintf(&b, "<li>… and %d more</li>", more)
		}
		b.WriteString("</ol>")
	}
	if len(s.Resources) > 0 {
		b.WriteString("Changed:<ul>")
		for _, r := range s.Resources[:min(len(s.Resources), maxListedChanges)] {
			fmt.Fprintf(&b, "<li>%s</li>", esc(r))
		}
		if more := len(s.Resources) - maxListedChanges; more > 0 {
			fmt.Fprintf(&b, "<li>… and %d more</li>", more)
		}
		b.WriteString("</ul>")
	}
	fmt.Fprintf(&b, "Nodes: %s<br/>", esc(changeset.ShortList(s.Nodes, maxListedNodes)))
	for _, r := range s.Runs {
		if e := runError(r); e != "" {
			fmt.Fprintf(&b, "First error (%s): <code>%s</code><br/>", esc(r.Node), esc(e))
			break
		}
	}
	b.WriteString(setLinks(base, s, window))
	return b.String()
}

// spanText renders a span in whole seconds: "4m10s".
func spanText(d time.Duration) string { return d.Round(time.Second).String() }

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// isChange is what the changes and impact queries show: runs that changed
// something or failed.
func isChange(r *report.Run) bool {
	return r.UpdatedCount > 0 || r.Status == report.StatusFailure
}

// changeRuns lists the changes in the range that match rf, oldest first.
func (inst *Instance) changeRuns(tr backend.TimeRange, rf runFilter) []*report.Run {
	var out []*report.Run
	for _, r := range inst.history.Runs(tr.From, tr.To) {
		if isChange(r) && rf.match(r) {
			out = append(out, r)
		}
	}
	return out
}

// pickRole is the run's role for APM links and impact queries: the first
// role matching the query's role filter, else the first role.
func pickRole(r *report.Run, want string) string {
	if want != "" && slices.Contains(r.Roles, want) {
		return want
	}
	if len(r.Roles) > 0 {
		return r.Roles[0]
	}
	return ""
}

// changeTitle is "<node>: N changed" or "<node>: run failed".
func changeTitle(r *report.Run) string {
	if r.Status == report.StatusFailure {
		if r.UpdatedCount > 0 {
			return fmt.Sprintf("%s: run failed (%d changed)", r.Node, r.UpdatedCount)
		}
		return r.Node + ": run failed"
	}
	return fmt.Sprintf("%s: %d changed", r.Node, r.UpdatedCount)
}

func changeTime(r *report.Run) time.Time {
	if !r.Start.IsZero() {
		return r.Start
	}
	return r.End
}

// grafanaBase is Grafana's root path (a sub path such as /grafana when
// Grafana is served under one), for links in annotation text.
func grafanaBase(pc backend.PluginContext) string {
	if pc.GrafanaConfig == nil {
		return ""
	}
	raw, err := pc.GrafanaConfig.AppURL()
	if err != nil || raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.TrimRight(u.Path, "/")
}

// runChangesFrame is the annotation frame of groupBy "run", one annotation
// per run: time, timeEnd, title, text, tags. tags is a string field of
// comma-separated tags: Grafana's annotation support from data frames
// splits a string tags field on ",".
func (inst *Instance) runChangesFrame(pc backend.PluginContext, tr backend.TimeRange, rf runFilter) *data.Frame {
	runs := inst.changeRuns(tr, rf)
	base := grafanaBase(pc)
	n := len(runs)
	var (
		tm, tmEnd          = make([]time.Time, n), make([]time.Time, n)
		title, text, tags  = make([]string, n), make([]string, n), make([]string, n)
		nodeF, envF, roleF = make([]string, n), make([]string, n), make([]string, n)
	)
	for i, r := range runs {
		role := pickRole(r, rf.role)
		tm[i], tmEnd[i] = changeTime(r), r.End
		title[i] = changeTitle(r)
		text[i] = changeText(base, r, role, inst.settings.ImpactWindow)
		tags[i] = changeTags(r)
		nodeF[i], envF[i], roleF[i] = r.Node, r.Environment, role
	}
	f := data.NewFrame("changes",
		data.NewField("time", nil, tm),
		data.NewField("timeEnd", nil, tmEnd),
		data.NewField("title", nil, title),
		data.NewField("text", nil, text),
		data.NewField("tags", nil, tags),
		data.NewField("node", nil, nodeF),
		data.NewField("environment", nil, envF),
		data.NewField("role", nil, roleF),
	)
	f.Meta = &data.FrameMeta{DataTopic: data.DataTopicAnnotations}
	return f
}

func tagValue(s string) string { return strings.ReplaceAll(s, ",", ";") }

func changeTags(r *report.Run) string {
	tags := []string{"runlens", tagValue(r.Node)}
	if r.Environment != "" {
		tags = append(tags, tagValue(r.Environment))
	}
	for _, role := range r.Roles {
		tags = append(tags, tagValue(role))
	}
	if r.Status == report.StatusFailure {
		tags = append(tags, "failed")
	}
	if r.UpdatedCount > 0 {
		tags = append(tags, "changed")
	}
	return strings.Join(slices.Compact(tags), ",")
}

// changeText is the annotation's text: what changed, the error, and links to
// the node on the topology dashboard and to the service's APM dashboard.
func changeText(base string, r *report.Run, role string, window time.Duration) string {
	var b strings.Builder
	esc := html.EscapeString
	if r.Status == report.StatusFailure {
		fmt.Fprintf(&b, "<b>Run failed</b> on %s", esc(r.Node))
	} else {
		fmt.Fprintf(&b, "<b>%d changed</b> on %s", r.UpdatedCount, esc(r.Node))
	}
	if r.Environment != "" {
		fmt.Fprintf(&b, " (%s)", esc(r.Environment))
	}
	b.WriteString("<br/>")
	if len(r.Updated) > 0 {
		b.WriteString("Changed:<ul>")
		shown := r.Updated[:min(len(r.Updated), maxListedChanges)]
		for _, res := range shown {
			fmt.Fprintf(&b, "<li>%s</li>", esc(res.String()))
		}
		if more := r.UpdatedCount - len(shown); more > 0 {
			fmt.Fprintf(&b, "<li>… and %d more</li>", more)
		}
		b.WriteString("</ul>")
	}
	if len(r.Failed) > 0 {
		b.WriteString("Failed:<ul>")
		for _, res := range r.Failed[:min(len(r.Failed), maxListedChanges)] {
			fmt.Fprintf(&b, "<li>%s</li>", esc(res.String()))
		}
		b.WriteString("</ul>")
	}
	if e := runError(r); e != "" {
		fmt.Fprintf(&b, "Error: <code>%s</code><br/>", esc(e))
	}
	topo := base + "/d/runlens-topology?var-node=" + url.QueryEscape(r.Node)
	fmt.Fprintf(&b, `<a href="%s">Node on the topology</a>`, esc(topo))
	apm := base + "/d/runlens-deploys?var-environment=" + url.QueryEscape(r.Environment) +
		"&var-service=" + url.QueryEscape(role) +
		fmt.Sprintf("&from=%d&to=%d", changeTime(r).Add(-window).UnixMilli(), r.End.Add(window).UnixMilli())
	fmt.Fprintf(&b, ` · <a href="%s">APM of %s</a>`, esc(apm), esc(orDefault(role, "the service")))
	return b.String()
}
