package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
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
	case QueryChanges, QueryImpact:
		groupBy, gerr := changeGroupBy(m.GroupBy)
		if gerr != nil {
			return backend.ErrDataResponse(backend.StatusBadRequest, gerr.Error())
		}
		if qt == QueryChanges {
			frames = data.Frames{inst.changesFrame(pc, q.TimeRange, rf, groupBy)}
		} else {
			frames, err = inst.impactQuery(ctx, q.TimeRange, rf, groupBy)
		}
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
