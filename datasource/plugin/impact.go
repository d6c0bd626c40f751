package plugin

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/changeset"
	"github.com/runlens/runlens/pkg/impact"
	"github.com/runlens/runlens/pkg/report"
)

const (
	promTimeout    = 30 * time.Second
	impactParallel = 8
	// maxImpactQueries bounds the Prometheus range queries of one impact
	// query (one per environment and role, or per set when the template
	// names $node); past it, the rest is listed unmeasured, with a notice.
	maxImpactQueries = 64
	// maxRangePoints is Prometheus' limit of points per series of a range
	// query (11,000).
	maxRangePoints = 11_000
	// The step of a range query is at least impactWindow/maxStepsPerWindow
	// and at most impactWindow/minStepsPerWindow: past that the range is
	// too wide to measure a window with.
	maxStepsPerWindow = 60
	minStepsPerWindow = 5
	// minImpactWindow replaces an impactWindow of 0: a window needs points.
	minImpactWindow = time.Minute
)

// promAPI is the Prometheus calls of the plugin: instant and range
// queries (the impact query makes range queries).
type promAPI interface {
	Query(ctx context.Context, query string, ts time.Time) (model.Value, error)
	QueryRange(ctx context.Context, query string, r promv1.Range) (model.Value, error)
}

type promClient struct{ api promv1.API }

func (p promClient) Query(ctx context.Context, q string, ts time.Time) (model.Value, error) {
	v, _, _, err := p.api.Query(ctx, q, ts)
	return v, err
}

func (p promClient) QueryRange(ctx context.Context, q string, r promv1.Range) (model.Value, error) {
	v, _, _, err := p.api.QueryRange(ctx, q, r)
	return v, err
}

func newPromAPI(s Settings) (promAPI, error) {
	hc, err := httpClient(s.prometheusPeer(), s.Proxy, promTimeout)
	if err != nil {
		return nil, err
	}
	c, err := promapi.NewClient(promapi.Config{
		Address: s.PrometheusURL,
		Client:  hc,
	})
	if err != nil {
		return nil, fmt.Errorf("prometheusUrl %s: %v", redactHTTP(s.PrometheusURL), err)
	}
	return promClient{api: promv1.NewAPI(c)}, nil
}

var promEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// promString escapes a value for a PromQL double-quoted string.
func promString(s string) string { return promEscaper.Replace(s) }

// expandImpactQuery substitutes $node, $role and $environment (also written
// ${node} …) in the template; values are escaped for use inside "…".
func expandImpactQuery(tmpl, node, role, env string) string {
	node, role, env = promString(node), promString(role), promString(env)
	return strings.NewReplacer(
		"${node}", node, "${role}", role, "${environment}", env,
		"$node", node, "$role", role, "$environment", env,
	).Replace(tmpl)
}

// impactTarget is one row of the impact query: a change set, or with
// groupBy "run" one run (measured as a set of its own, with its set's
// role and roll-back).
type impactTarget struct {
	set    *changeset.Set
	run    *report.Run // groupBy "run" only
	change impact.Change
	result impact.Result
}

func (t *impactTarget) start() time.Time { return t.change.Waves[0].Start }
func (t *impactTarget) end() time.Time   { return t.change.Waves[len(t.change.Waves)-1].End }

// impactRange is one Prometheus range query and the targets it measures.
type impactRange struct {
	query      string
	targets    []*impactTarget // by start
	start, end time.Time
	step       time.Duration
	series     impact.Series
}

// impactQuery ranks the change sets (or runs) of the range by what they did
// to the APM signal of the impactQuery template (package impact explains
// the score): one Prometheus range query per environment and role over the
// whole range, not a query per change.
func (inst *Instance) impactQuery(ctx context.Context, tr backend.TimeRange, rf runFilter, groupBy string) (data.Frames, error) {
	if inst.prom == nil {
		return nil, fmt.Errorf("the impact query needs Prometheus: set prometheusUrl in the datasource settings")
	}
	now := time.Now()
	cs := inst.changeSets(tr, rf)
	var targets []*impactTarget
	if groupBy == GroupByRun {
		for _, r := range inst.changeRuns(tr, rf) {
			s := cs.setOf[r]
			if s == nil { // not grouped: cannot happen, the grouping covers the range
				continue
			}
			targets = append(targets, &impactTarget{set: s, run: r, change: impact.Change{
				Waves: []changeset.Wave{{Start: changeTime(r), End: r.End, Nodes: []string{r.Node}, Runs: 1}},
				Until: s.UndoneAt}})
		}
	} else {
		for _, s := range cs.sets {
			targets = append(targets, &impactTarget{set: s, change: impact.Change{Waves: s.Waves, Until: s.UndoneAt}})
		}
	}
	ranges, notices, promTime, err := inst.score(ctx, targets, now, false)
	if err != nil {
		return nil, err
	}
	rankImpact(targets)

	f := inst.impactFrame(targets, groupBy)
	step := time.Duration(0)
	for _, rg := range ranges {
		step = max(step, rg.step)
	}
	notices = append(notices, data.Notice{Severity: data.NoticeSeverityInfo,
		Text: fmt.Sprintf("%s ranked with %s (step up to %s) in %s", plural(len(targets), "change", "changes"),
			plural(len(ranges), "Prometheus range query", "Prometheus range queries"), step, promTime.Round(time.Millisecond))})
	queries := make([]string, 0, len(ranges))
	custom := impactMeta{}
	for _, rg := range ranges {
		queries = append(queries, rg.query)
		custom.Queries = append(custom.Queries, impactQueryMeta{Query: rg.query, Start: rg.start, End: rg.end, Step: rg.step.String()})
	}
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable, Notices: notices,
		ExecutedQueryString: strings.Join(queries, "\n"), Custom: custom,
		Stats: []data.QueryStat{
			{FieldConfig: data.FieldConfig{DisplayName: "Prometheus range queries"}, Value: float64(len(ranges))},
			{FieldConfig: data.FieldConfig{DisplayName: "Prometheus time", Unit: "ms"}, Value: float64(promTime.Milliseconds())},
			{FieldConfig: data.FieldConfig{DisplayName: "Changes ranked"}, Value: float64(len(targets))},
		}}
	return data.Frames{f}, nil
}

// score measures the targets: it plans the range queries, makes them and
// scores every target it could measure (the others keep the reason they
// were not). promTime is the time of the Prometheus queries alone. toNow
// makes every range query end now, not a window after its last target, so
// each result's Current is the signal now (the highlight's recovery test).
func (inst *Instance) score(ctx context.Context, targets []*impactTarget, now time.Time, toNow bool) (ranges []*impactRange, notices []data.Notice, promTime time.Duration, err error) {
	window := max(inst.settings.ImpactWindow, minImpactWindow)
	ranges, notices = planImpact(inst.settings.ImpactQuery, targets, window, now, toNow)
	promStart := time.Now()
	if err := inst.measure(ctx, ranges); err != nil {
		return nil, nil, 0, fmt.Errorf("Prometheus at %s: %v", redactHTTP(inst.settings.PrometheusURL), err)
	}
	promTime = time.Since(promStart)
	var scorer impact.Scorer
	for _, rg := range ranges {
		for _, t := range rg.targets {
			t.result = scorer.Score(t.change, rg.series, impact.Options{Window: window, Now: earliest(now, rg.end)})
		}
	}
	return ranges, notices, promTime, nil
}

// quantity names what the impact query measures, for details.
func (inst *Instance) quantity() impact.Quantity {
	if inst.settings.ImpactQuery == DefaultImpactQuery {
		return impact.Quantity{Name: "error ratio", Percent: true}
	}
	return impact.Quantity{Name: "impact query"}
}

// impactMeta is the impact frame's meta.custom: the Prometheus range
// queries made, for the query inspector (and the benchmark, which times the
// same queries alone).
type impactMeta struct {
	Queries []impactQueryMeta `json:"queries"`
}

type impactQueryMeta struct {
	Query string    `json:"query"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Step  string    `json:"step"`
}

// usesNode reports whether the template names $node: it is then evaluated
// per set (or run), $node the regex of its nodes.
func usesNode(tmpl string) bool {
	return strings.Contains(tmpl, "$node") || strings.Contains(tmpl, "${node}")
}

// planImpact decides the range queries: one per expanded template (per
// environment and role, or per set when the template names $node), each
// over its targets' time span, from 4 windows before the first to one
// window after the last (the baseline and the after window package impact
// reads). Targets a query cannot cover (the span needs more than
// maxRangePoints at a step of impactWindow/minStepsPerWindow, or
// maxImpactQueries is reached) stay unmeasured, and a notice says so. With
// toNow every query ends at now.
func planImpact(tmpl string, targets []*impactTarget, window time.Duration, now time.Time, toNow bool) ([]*impactRange, []data.Notice) {
	type key struct{ env, role, node string }
	expanded := map[key]string{}
	byQuery := map[string]*impactRange{}
	var ranges []*impactRange
	perNode := usesNode(tmpl)
	for _, t := range targets {
		k := key{env: t.set.Environment, role: t.set.Role}
		if perNode {
			nodes := t.set.Nodes
			if t.run != nil {
				nodes = []string{t.run.Node}
			}
			k.node = nodeRegex(nodes)
		}
		q, ok := expanded[k]
		if !ok {
			q = expandImpactQuery(tmpl, k.node, k.role, k.env)
			expanded[k] = q
		}
		rg := byQuery[q]
		if rg == nil {
			rg = &impactRange{query: q}
			byQuery[q] = rg
			ranges = append(ranges, rg)
		}
		rg.targets = append(rg.targets, t)
	}
	var notices []data.Notice
	maxSpan := time.Duration(maxRangePoints) * (window / minStepsPerWindow)
	tooWide := 0
	for _, rg := range ranges {
		slices.SortStableFunc(rg.targets, func(a, b *impactTarget) int { return a.start().Compare(b.start()) })
		var last time.Time
		for _, t := range rg.targets {
			if t.end().After(last) {
				last = t.end()
			}
		}
		end := earliest(now, last.Add(window))
		if toNow {
			end = now
		}
		// The newest targets are measured first: drop the oldest until
		// the span fits.
		keep := rg.targets
		for len(keep) > 0 && end.Sub(keep[0].start().Add(-4*window)) > maxSpan {
			keep[0].result = impact.Result{Reason: "not measured: the time range is too wide"}
			keep = keep[1:]
			tooWide++
		}
		rg.targets = keep
		if len(keep) == 0 {
			continue
		}
		rg.start, rg.end = keep[0].start().Add(-4*window), end
		// Whole seconds, rounded up so the points stay within the limit.
		rg.step = max(window/maxStepsPerWindow, rg.end.Sub(rg.start)/maxRangePoints)
		rg.step = max(time.Second, (rg.step + time.Second - 1).Truncate(time.Second))
	}
	ranges = slices.DeleteFunc(ranges, func(rg *impactRange) bool { return len(rg.targets) == 0 })
	if tooWide > 0 {
		notices = append(notices, data.Notice{Severity: data.NoticeSeverityWarning,
			Text: fmt.Sprintf("the time range is too wide to measure every change at a step of impactWindow/%d: %s at its start are listed without a score; narrow the range", minStepsPerWindow, plural(tooWide, "change", "changes"))})
	}
	if len(ranges) > maxImpactQueries {
		// The queries with the most changes are made.
		slices.SortStableFunc(ranges, func(a, b *impactRange) int { return len(b.targets) - len(a.targets) })
		skipped := 0
		for _, rg := range ranges[maxImpactQueries:] {
			for _, t := range rg.targets {
				t.result = impact.Result{Reason: fmt.Sprintf("not measured: over %d Prometheus queries", maxImpactQueries)}
				skipped++
			}
		}
		notices = append(notices, data.Notice{Severity: data.NoticeSeverityWarning,
			Text: fmt.Sprintf("%d Prometheus queries needed, %d made: %s are listed without a score; narrow the filters", len(ranges), maxImpactQueries, plural(skipped, "change", "changes"))})
		ranges = ranges[:maxImpactQueries]
	}
	return ranges, notices
}

// measure runs the range queries, impactParallel at a time; the first
// error cancels the others.
func (inst *Instance) measure(ctx context.Context, ranges []*impactRange) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, impactParallel)
	)
	for _, rg := range ranges {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			v, err := inst.prom.QueryRange(ctx, rg.query, promv1.Range{Start: rg.start, End: rg.end, Step: rg.step})
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				mu.Unlock()
				return
			}
			rg.series = seriesOf(v)
		}()
	}
	wg.Wait()
	return firstErr
}

// seriesOf is the signal of a query's result: per instant, the largest
// value of its series (the template should give one).
func seriesOf(v model.Value) impact.Series {
	var b impact.Builder
	switch v := v.(type) {
	case model.Matrix:
		for _, ss := range v {
			for _, p := range ss.Values {
				b.Add(int64(p.Timestamp), float64(p.Value))
			}
		}
	case model.Vector:
		for _, s := range v {
			b.Add(int64(s.Timestamp), float64(s.Value))
		}
	case *model.Scalar:
		b.Add(int64(v.Timestamp), float64(v.Value))
	}
	return b.Series()
}

// rankImpact sorts best suspect first: score descending, then (equal
// scores: sets measured over the same signal and windows) the set with more
// nodes and the earlier one, the likelier cause; the unmeasured last,
// newest first.
func rankImpact(ts []*impactTarget) {
	slices.SortStableFunc(ts, func(a, b *impactTarget) int {
		ea, eb := a.result.Evaluated, b.result.Evaluated
		switch {
		case ea && eb:
			return cmp.Or(cmp.Compare(b.result.Score, a.result.Score), cmp.Compare(len(b.set.Nodes), len(a.set.Nodes)),
				a.start().Compare(b.start()))
		case ea:
			return -1
		case eb:
			return 1
		}
		return b.start().Compare(a.start())
	})
}

// impactFrame is the impact table, one row per target in rank order.
func (inst *Instance) impactFrame(ts []*impactTarget, groupBy string) *data.Frame {
	n := len(ts)
	var (
		tm, tmEnd                          = make([]time.Time, n), make([]time.Time, n)
		env, role, nodeList, title, detail = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		status, id, undo, nodeRE, nodeQ    = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		nodes, runs, waves                 = make([]int64, n), make([]int64, n), make([]int64, n)
		before, after, delta, score        = make([]*float64, n), make([]*float64, n), make([]*float64, n), make([]*float64, n)
		node                               = make([]string, n)
	)
	q := inst.quantity()
	ptr := func(v float64) *float64 { return &v }
	for i, t := range ts {
		s, r := t.set, t.result
		tm[i], tmEnd[i] = t.start(), t.end()
		env[i], role[i], id[i], undo[i] = s.Environment, s.Role, s.ID, s.Undoes
		if t.run != nil {
			node[i], nodeList[i], title[i] = t.run.Node, t.run.Node, changeTitle(t.run)
			nodeRE[i], nodeQ[i] = nodeRegex([]string{t.run.Node}), nodeParams([]string{t.run.Node})
			nodes[i], runs[i], waves[i] = 1, 1, 1
			status[i] = string(t.run.Status)
		} else {
			nodeList[i], title[i] = changeset.ShortList(s.Nodes, maxListedNodes), s.Title()
			nodeRE[i], nodeQ[i] = nodeRegex(s.Nodes), nodeParams(s.Nodes)
			nodes[i], runs[i], waves[i] = int64(len(s.Nodes)), int64(len(s.Runs)), int64(len(s.Waves))
			status[i] = s.Status()
		}
		detail[i] = r.Detail(q)
		if r.Evaluated {
			before[i], after[i], delta[i], score[i] = ptr(r.Before), ptr(r.After), ptr(r.After-r.Before), ptr(r.Score)
		}
	}
	var unit *data.FieldConfig
	if q.Percent {
		unit = &data.FieldConfig{Unit: "percentunit"}
	}
	fields := []*data.Field{
		data.NewField("time", nil, tm),
		data.NewField("timeEnd", nil, tmEnd),
		data.NewField("environment", nil, env),
		data.NewField("role", nil, role),
	}
	if groupBy == GroupByRun {
		fields = append(fields, data.NewField("node", nil, node))
	}
	fields = append(fields,
		data.NewField("nodes", nil, nodes),
		data.NewField("runs", nil, runs),
		data.NewField("waves", nil, waves),
		data.NewField("nodeList", nil, nodeList),
		data.NewField("title", nil, title),
		data.NewField("before", nil, before).SetConfig(unit),
		data.NewField("after", nil, after).SetConfig(unit),
		data.NewField("delta", nil, delta).SetConfig(unit),
		data.NewField("score", nil, score).SetConfig(&data.FieldConfig{Decimals: ptrU16(1)}),
		data.NewField("detail", nil, detail),
		data.NewField("status", nil, status),
		data.NewField("set", nil, id),
		data.NewField("undoes", nil, undo),
		data.NewField("nodeRegex", nil, nodeRE),
		data.NewField("nodeParams", nil, nodeQ),
	)
	return data.NewFrame("impact", fields...)
}

func ptrU16(v uint16) *uint16 { return &v }

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// checkPrometheus is the health check's probe: an instant query of "1",
// reporting the HTTP status as Prometheus answered it.
func checkPrometheus(ctx context.Context, s Settings) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u := s.PrometheusURL + "/api/v1/query?query=" + url.QueryEscape("1")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	hc, err := httpClient(s.prometheusPeer(), s.Proxy, 5*time.Second)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return unwrapURLError(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// unwrapURLError drops net/url's "Get \"<url>\": " prefix: the message
// names the URL already (redacted).
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
