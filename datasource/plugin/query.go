package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	QueryType   string       `json:"queryType"`
	Environment string       `json:"environment"` // a name or a comma list; "" and All values: every one
	Role        string       `json:"role"`        // likewise
	Node        string       `json:"node"`        // RE2, anchored (compileNode); "", $__all and .*: every node
	GroupBy     string       `json:"groupBy"`
	Layout      layoutOption `json:"layout"`
}

// runFilter selects runs by environment, role and node regex.
type runFilter struct {
	// role is the role filter when it names one role (pickRole prefers
	// it), else "".
	role string
	f    topology.Filter
	node *nodeMatcher
}

// newRunFilter reads the query's filters for runs; it starts the node
// matcher's budget.
func newRunFilter(m queryModel) (runFilter, error) {
	envs, err := parseList("environment", m.Environment)
	if err != nil {
		return runFilter{}, err
	}
	roles, err := parseList("role", m.Role)
	if err != nil {
		return runFilter{}, err
	}
	node, err := newNodeMatcher(normalizeNode(m.Node))
	if err != nil {
		return runFilter{}, err
	}
	node.begin(0)
	rf := runFilter{f: topology.Filter{Environments: envs, Roles: roles}, node: node}
	if node.re != nil {
		rf.f.Node = node.match
	}
	if len(roles) == 1 {
		rf.role = roles[0]
	}
	return rf, nil
}

// match evaluates the node filter once per node name.
func (f runFilter) match(r *report.Run) bool {
	return f.f.MatchFields(r.Environment, r.Roles, r.Node)
}

// err says whether the node filter ran out of its budget: the matches
// are then incomplete.
func (f runFilter) err() error { return f.node.Err() }

// QueryData answers each query on its own: one failing query does not fail
// the others.
func (inst *Instance) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	resp := backend.NewQueryDataResponse()
	if inst.settingsErr != nil {
		for _, q := range req.Queries {
			resp.Responses[q.RefID] = backend.ErrDataResponse(backend.StatusBadRequest, inst.settingsErr.Error())
		}
		return resp, nil
	}
	caughtUp := inst.waitCaughtUp(ctx)
	for _, q := range req.Queries {
		r := inst.query(ctx, req.PluginContext, q, caughtUp)
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

func (inst *Instance) query(ctx context.Context, pc backend.PluginContext, q backend.DataQuery, caughtUp bool) backend.DataResponse {
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
	rf, err := newRunFilter(m)
	if err != nil {
		return backend.ErrDataResponse(backend.StatusBadRequest, err.Error())
	}
	var frames data.Frames
	switch qt {
	case QueryTopology:
		f, ferr := newTopoFilter(m)
		if ferr != nil {
			return backend.ErrDataResponse(backend.StatusBadRequest, ferr.Error())
		}
		// A live view's frames carry the replay state themselves (and
		// are shared with its stream).
		frames, err = inst.topologyQuery(ctx, q.RefID, f, q.TimeRange.To)
		caughtUp = true
	case QueryRuns:
		frames, err = inst.runsFrame(ctx, q.TimeRange, rf)
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
	if ferr := rf.err(); ferr != nil {
		return backend.ErrDataResponse(backend.StatusBadRequest, ferr.Error())
	}
	if errors.Is(err, errFilterBudget) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return backend.ErrDataResponse(backend.StatusBadRequest, err.Error())
	}
	if err != nil {
		return backend.ErrDataResponseWithSource(backend.StatusBadGateway, backend.ErrorSourceDownstream, err.Error())
	}
	for i, f := range frames {
		if f.RefID != q.RefID {
			c := *f // live frames are shared: label a copy
			c.RefID = q.RefID
			frames[i] = &c
		}
	}
	if !caughtUp {
		addNotice(frames, inst.replayNotice())
	}
	return backend.DataResponse{Frames: frames}
}

// runsFrame is the table of runs that ended in the range, oldest first.
func (inst *Instance) runsFrame(ctx context.Context, tr backend.TimeRange, rf runFilter) (data.Frames, error) {
	var runs []*report.Run
	for i, r := range inst.history.Runs(tr.From, tr.To) {
		if i%1024 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if rf.match(r) {
			runs = append(runs, r)
		}
	}
	if err := rf.err(); err != nil {
		return nil, err
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
	return data.Frames{f}, nil
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
