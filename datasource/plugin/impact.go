package plugin

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
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

	"github.com/runlens/runlens/pkg/report"
)

const (
	promTimeout = 30 * time.Second
	// maxImpactChanges bounds the Prometheus queries of one impact query
	// (two per change); the newest changes are ranked.
	maxImpactChanges = 200
	impactParallel   = 8
)

// promAPI is the one Prometheus call the impact query makes: an instant
// query.
type promAPI interface {
	Query(ctx context.Context, query string, ts time.Time) (model.Value, error)
}

type promClient struct{ api promv1.API }

func (p promClient) Query(ctx context.Context, q string, ts time.Time) (model.Value, error) {
	v, _, _, err := p.api.Query(ctx, q, ts)
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

// promString escapes a value for a PromQL double-quoted string.
func promString(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// expandImpactQuery substitutes $node, $role and $environment (also written
// ${node} …) in the template; values are escaped for use inside "…".
func expandImpactQuery(tmpl, node, role, env string) string {
	node, role, env = promString(node), promString(role), promString(env)
	return strings.NewReplacer(
		"${node}", node, "${role}", role, "${environment}", env,
		"$node", node, "$role", role, "$environment", env,
	).Replace(tmpl)
}

// sampleValue is the query's value: the largest sample of a vector (the
// template should give one series), nil for no data or NaN.
func sampleValue(v model.Value) *float64 {
	var best *float64
	take := func(f float64) {
		if math.IsNaN(f) {
			return
		}
		if best == nil || f > *best {
			best = &f
		}
	}
	switch v := v.(type) {
	case model.Vector:
		for _, s := range v {
			take(float64(s.Value))
		}
	case *model.Scalar:
		take(float64(v.Value))
	case model.Matrix:
		for _, ss := range v {
			if n := len(ss.Values); n > 0 {
				take(float64(ss.Values[n-1].Value))
			}
		}
	}
	return best
}

type impactRow struct {
	run                  *report.Run
	role, query          string
	at, afterAt          time.Time
	before, after, delta *float64
}

// impactQuery ranks the changes in the range by how much the APM error rate
// rose after them: the template evaluated at the change's start (before) and
// at its end + impactWindow (after), capped at now.
func (inst *Instance) impactQuery(ctx context.Context, tr backend.TimeRange, rf runFilter) (data.Frames, error) {
	if inst.prom == nil {
		return nil, fmt.Errorf("the impact query needs Prometheus: set prometheusUrl in the datasource settings")
	}
	runs := inst.changeRuns(tr, rf)
	var notices []data.Notice
	if len(runs) > maxImpactChanges {
		notices = append(notices, data.Notice{Severity: data.NoticeSeverityWarning,
			Text: fmt.Sprintf("%d changes in the range: ranking the newest %d; narrow the range or the filters", len(runs), maxImpactChanges)})
		runs = runs[len(runs)-maxImpactChanges:]
	}
	rows, err := inst.rankImpact(ctx, runs, rf.role, time.Now())
	if err != nil {
		return nil, err
	}
	n := len(rows)
	var (
		tm                        = make([]time.Time, n)
		node, env, role, title, q = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		before, after, delta      = make([]*float64, n), make([]*float64, n), make([]*float64, n)
		afterAt                   = make([]time.Time, n)
	)
	for i, r := range rows {
		tm[i], afterAt[i] = r.at, r.afterAt
		node[i], env[i], role[i], title[i], q[i] = r.run.Node, r.run.Environment, r.role, changeTitle(r.run), r.query
		before[i], after[i], delta[i] = r.before, r.after, r.delta
	}
	f := data.NewFrame("impact",
		data.NewField("time", nil, tm),
		data.NewField("node", nil, node),
		data.NewField("environment", nil, env),
		data.NewField("role", nil, role),
		data.NewField("before", nil, before),
		data.NewField("after", nil, after),
		data.NewField("delta", nil, delta),
		data.NewField("title", nil, title),
		data.NewField("afterTime", nil, afterAt),
		data.NewField("query", nil, q),
	)
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable, Notices: notices,
		ExecutedQueryString: inst.settings.ImpactQuery}
	return data.Frames{f}, nil
}

// rankImpact queries Prometheus for each change and sorts by delta
// descending (changes without data last, then newest first).
func (inst *Instance) rankImpact(ctx context.Context, runs []*report.Run, roleFilter string, now time.Time) ([]impactRow, error) {
	rows := make([]impactRow, len(runs))
	for i, r := range runs {
		role := pickRole(r, roleFilter)
		afterAt := r.End.Add(inst.settings.ImpactWindow)
		if afterAt.After(now) {
			afterAt = now
		}
		rows[i] = impactRow{run: r, role: role, at: changeTime(r), afterAt: afterAt,
			query: expandImpactQuery(inst.settings.ImpactQuery, r.Node, role, r.Environment)}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, impactParallel)
	)
	query := func(q string, ts time.Time) (*float64, bool) {
		v, err := inst.prom.Query(ctx, q, ts)
		if err != nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = err
				cancel()
			}
			mu.Unlock()
			return nil, false
		}
		return sampleValue(v), true
	}
	for i := range rows {
		wg.Add(1)
		sem <- struct{}{}
		go func(r *impactRow) {
			defer func() { <-sem; wg.Done() }()
			var ok bool
			if r.before, ok = query(r.query, r.at); !ok {
				return
			}
			if r.after, ok = query(r.query, r.afterAt); !ok {
				return
			}
			if r.before != nil && r.after != nil {
				d := *r.after - *r.before
				r.delta = &d
			}
		}(&rows[i])
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("Prometheus at %s: %v", redactHTTP(inst.settings.PrometheusURL), firstErr)
	}
	slices.SortStableFunc(rows, func(a, b impactRow) int {
		switch {
		case a.delta != nil && b.delta != nil:
			if c := cmp.Compare(*b.delta, *a.delta); c != 0 {
				return c
			}
		case a.delta != nil:
			return -1
		case b.delta != nil:
			return 1
		}
		return b.at.Compare(a.at)
	})
	return rows, nil
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
