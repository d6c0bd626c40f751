package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/topology"
)

// Query types.
const (
	QueryTopology = "topology"
	QueryRuns     = "runs"
	QueryChanges  = "changes"
	QueryImpact   = "impact"
)

const (
	// pastSlack: a time range ending more than this before now asks for
	// the past (History), anything later for the live fleet.
	pastSlack = time.Minute
	// maxTableRows bounds the runs table; the newest rows are kept.
	maxTableRows = 10_000
	// maxListedChanges is how many changed resources an annotation lists.
	maxListedChanges = 20
)

// queryModel is the query JSON.
type queryModel struct {
	QueryType   string `json:"queryType"`
	Environment string `json:"environment"`
	Role        string `json:"role"`
	Node        string `json:"node"` // regular expression (RE2, unanchored)
	GroupBy     string `json:"groupBy"`
	Layout      bool   `json:"layout"`
}

// runFilter selects runs by environment, role and node regex.
type runFilter struct {
	environment, role string
	node              *regexp.Regexp
}

func (f runFilter) match(r *report.Run) bool {
	return topology.MatchEnvironment(f.environment, r.Environment) && topology.MatchRoles(f.role, r.Roles) &&
		(f.node == nil || f.node.MatchString(r.Node))
}

// compileNode compiles the node filter; its error names the regex.
func compileNode(expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("node filter %q is not a valid regular expression: %v", expr, err)
	}
	return re, nil
}

// QueryData answers each query on its own: one failing query does not fail
// the others.
func (inst *Instance) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	resp := backend.NewQueryDataResponse()
	caughtUp := inst.waitCaughtUp(ctx)
	for _, q := range req.Queries {
		r := inst.query(ctx, req.PluginContext, q)
		if r.Error == nil && !caughtUp {
			addNotice(r.Frames, inst.replayNotice())
		}
		inst.noteOlderHistory(&r)
		resp.Responses[q.RefID] = r
	}
	return resp, nil
}

func (inst *Instance) replayNotice() data.Notice {
	text := fmt.Sprintf("runlens is still replaying its history from RabbitMQ (%d reports so far): the picture is incomplete", inst.received.Load())
	if err := inst.feedError(); err != nil {
		text = "runlens cannot read its history from RabbitMQ: " + err.Error()
	}
	return data.Notice{Severity: data.NoticeSeverityWarning, Text: text}
}

func addNotice(frames data.Frames, n data.Notice) {
	if len(frames) == 0 {
		return
	}
	f := frames[0]
	if f.Meta == nil {
		f.Meta = &data.FrameMeta{}
	}
	f.Meta.Notices = append(f.Meta.Notices, n)
}

func (inst *Instance) query(ctx context.Context, pc backend.PluginContext, q backend.DataQuery) backend.DataResponse {
	var m queryModel
	if len(q.JSON) > 0 {
		if err := json.Unmarshal(q.JSON, &m); err != nil {
			return backend.ErrDataResponse(backend.StatusBadRequest, "invalid query JSON: "+err.Error())
		}
	}
	qt := q.QueryType
	if qt == "" {
		qt = m.QueryType
	}
	if qt == "" {
		qt = QueryTopology
	}
	re, err := compileNode(m.Node)
	if err != nil {
		return backend.ErrDataResponse(backend.StatusBadRequest, err.Error())
	}
	rf := runFilter{environment: m.Environment, role: m.Role, node: re}
	var frames data.Frames
	switch qt {
	case QueryTopology:
		f := topoFilter{Environment: m.Environment, Role: m.Role, Node: m.Node, GroupBy: m.GroupBy, Layout: m.Layout}
		if f, err = f.normalize(); err != nil {
			return backend.ErrDataResponse(backend.StatusBadRequest, err.Error())
		}
		frames, err = inst.topologyQuery(ctx, f, q.TimeRange.To)
	case QueryRuns:
		frames = data.Frames{inst.runsFrame(q.TimeRange, rf)}
	case QueryChanges:
		frames = data.Frames{inst.changesFrame(pc, q.TimeRange, rf)}
	case QueryImpact:
		frames, err = inst.impactQuery(ctx, q.TimeRange, rf)
	default:
		return backend.ErrDataResponse(backend.StatusBadRequest,
			fmt.Sprintf("unknown queryType %q (want topology, runs, changes or impact)", qt))
	}
	if err != nil {
		return backend.ErrDataResponseWithSource(backend.StatusBadGateway, backend.ErrorSourceDownstream, err.Error())
	}
	for _, f := range frames {
		f.RefID = q.RefID
	}
	return backend.DataResponse{Frames: frames}
}

// runsFrame is the table of runs that ended in the range, oldest first.
func (inst *Instance) runsFrame(tr backend.TimeRange, rf runFilter) *data.Frame {
	var runs []*report.Run
	for _, r := range inst.history.Runs(tr.From, tr.To) {
		if rf.match(r) {
			runs = append(runs, r)
		}
	}
	var notices []data.Notice
	if len(runs) > maxTableRows {
		notices = append(notices, data.Notice{Severity: data.NoticeSeverityWarning,
			Text: fmt.Sprintf("%d runs in the range: showing the newest %d; narrow the range or the filters", len(runs), maxTableRows)})
		runs = runs[len(runs)-maxTableRows:]
	}
	n := len(runs)
	var (
		node, env, status, errs, roles = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		start                          = make([]*time.Time, n)
		end                            = make([]time.Time, n)
		dur                            = make([]float64, n)
		changed, failed                = make([]int64, n), make([]int64, n)
	)
	for i, r := range runs {
		node[i], env[i], status[i] = r.Node, r.Environment, string(r.Status)
		if !r.Start.IsZero() {
			s := r.Start
			start[i] = &s
		}
		end[i] = r.End
		dur[i] = r.Duration.Seconds()
		changed[i], failed[i] = int64(r.UpdatedCount), int64(r.FailedCount)
		errs[i] = runError(r)
		roles[i] = strings.Join(r.Roles, ",")
	}
	durField := data.NewField("duration", nil, dur).SetConfig(&data.FieldConfig{Unit: "s"})
	f := data.NewFrame("runs",
		data.NewField("node", nil, node),
		data.NewField("environment", nil, env),
		data.NewField("status", nil, status),
		data.NewField("start", nil, start),
		data.NewField("end", nil, end),
		durField,
		data.NewField("changed", nil, changed),
		data.NewField("failed", nil, failed),
		data.NewField("error", nil, errs),
		data.NewField("roles", nil, roles),
	)
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable, Notices: notices}
	return f
}

func runError(r *report.Run) string {
	if r.Error == nil {
		return ""
	}
	if r.Error.Class == "" {
		return r.Error.Message
	}
	if r.Error.Message == "" {
		return r.Error.Class
	}
	return r.Error.Class + ": " + r.Error.Message
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

// changesFrame is the annotation frame: time, timeEnd, title, text, tags.
// tags is a string field of comma-separated tags: Grafana's annotation
// support from data frames splits a string tags field on ",".
func (inst *Instance) changesFrame(pc backend.PluginContext, tr backend.TimeRange, rf runFilter) *data.Frame {
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
