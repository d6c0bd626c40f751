package main

// The impact figure (issue #12): the impact query ranking 1,000 and 10,000
// runs against a real Prometheus, beside the time of its Prometheus range
// queries alone.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/datasource/plugin"
	"github.com/runlens/runlens/internal/benchutil"
	"github.com/runlens/runlens/internal/incident"
	"github.com/runlens/runlens/pkg/broker"
)

// impactFlags are the impact figure's flags (set in run).
var impactFlags struct {
	runs   string // comma-separated run counts
	repeat int
}

// impactParallel is the plugin's concurrency of range queries, used for the
// Prometheus-alone baseline too.
const impactParallel = 8

type impactSize struct {
	want int
	inc  *incident.Incident
}

func benchImpact(ctx context.Context, w io.Writer, cfg config, names *names) error {
	var sizes []impactSize
	end := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	for _, s := range strings.Split(impactFlags.runs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 100 {
			return fmt.Errorf("bad --impact-runs entry %q (at least 100)", s)
		}
		// 4 roles × nodes × 12 runs in 6 hours, every run a change.
		nodes := max(1, n/(4*12))
		sizes = append(sizes, impactSize{want: n, inc: incident.New(incident.Config{Seed: uint64(n), Environment: fmt.Sprintf("bench-%d", n),
			End: end, MinNodes: nodes, MaxNodes: nodes, Churn: 1})})
	}
	repeat := max(1, impactFlags.repeat)
	fmt.Fprintf(w, "== 5. impact ranking: the impact query over 6 hours of runs (every run a change: roll-outs in waves, single-node changes), against a real\n"+
		"   Prometheus serving promtool blocks of the APM metrics (internal/incident); median of %d after a warm-up, set and run modes alternating\n"+
		"   baseline: the same Prometheus range queries alone (the plugin's concurrency, %d), as the plugin made them (frame meta)\n", repeat, impactParallel)

	incs := make([]*incident.Incident, len(sizes))
	for i, s := range sizes {
		incs[i] = s.inc
	}
	promURL, stop, err := servePrometheus(incs)
	if err != nil {
		return err
	}
	defer stop()
	prom, err := promapi.NewClient(promapi.Config{Address: promURL})
	if err != nil {
		return err
	}
	api := promv1.NewAPI(prom)

	var tenK float64 = -1
	for _, s := range sizes {
		ms, err := benchImpactSize(ctx, w, cfg, names, s, promURL, api, repeat)
		if err != nil {
			return fmt.Errorf("%d runs: %w", s.want, err)
		}
		if s.want == 10_000 {
			tenK = ms
		}
	}
	if tenK >= 0 {
		fmt.Fprintf(w, "target: 10,000 runs ranked < 2 s: slower of the two modes %.0f ms  %s\n", tenK, verdict(tenK < 2000))
	} else {
		fmt.Fprintf(w, "target: 10,000 runs ranked < 2 s: not measured (10000 not in --impact-runs)\n")
	}
	fmt.Fprintln(w)
	return nil
}

// benchImpactSize publishes one incident's reports, replays them into a
// plugin instance and times its impact queries; it returns the slower
// mode's median in ms.
func benchImpactSize(ctx context.Context, w io.Writer, cfg config, names *names, s impactSize, promURL string, api promv1.API, repeat int) (float64, error) {
	inc := s.inc
	exchange, stream := names.add(fmt.Sprintf("impact-%d", s.want))
	if err := declareHistory(cfg.url, exchange, stream); err != nil {
		return 0, err
	}
	bodies := inc.Reports()
	pub, err := broker.NewPublisher(ctx, cfg.url, exchange, nil)
	if err != nil {
		return 0, err
	}
	err = pub.PublishAll(ctx, bodies, 0)
	pub.Close()
	if err != nil {
		return 0, err
	}
	inst, err := impactInstance(ctx, cfg, exchange, stream, promURL)
	if err != nil {
		return 0, err
	}
	defer inst.Dispose()
	if _, err := waitReplayed(inst, uint64(len(bodies)), time.Minute); err != nil {
		return 0, err
	}

	query := func(groupBy string) (*data.Frame, time.Duration, error) {
		raw, _ := json.Marshal(map[string]any{"queryType": "impact", "environment": inc.Environment, "groupBy": groupBy})
		start := time.Now()
		resp, err := inst.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{{
			RefID: "A", JSON: raw, TimeRange: backend.TimeRange{From: inc.Start, To: inc.End}}}})
		took := time.Since(start)
		if err != nil {
			return nil, 0, err
		}
		r := resp.Responses["A"]
		if r.Error != nil {
			return nil, 0, r.Error
		}
		return r.Frames[0], took, nil
	}
	setFrame, _, err := query("set") // warm-up
	if err != nil {
		return 0, err
	}
	runFrame, _, err := query("run")
	if err != nil {
		return 0, err
	}
	made, err := rangeQueries(setFrame)
	if err != nil {
		return 0, err
	}
	var bySet, byRun, alone []float64
	for range repeat {
		for _, mode := range []string{"set", "run"} {
			runtime.GC()
			_, took, err := query(mode)
			if err != nil {
				return 0, err
			}
			if mode == "set" {
				bySet = append(bySet, ms(took))
			} else {
				byRun = append(byRun, ms(took))
			}
		}
		runtime.GC()
		took, err := promAlone(ctx, api, made)
		if err != nil {
			return 0, err
		}
		alone = append(alone, ms(took))
	}
	setMs, runMs, aloneMs := benchutil.Median(bySet), benchutil.Median(byRun), benchutil.Median(alone)
	step := ""
	if len(made) > 0 {
		step = made[0].Step.String()
	}
	fmt.Fprintf(w, "%6d runs (%d changes: %d change sets)  by set %7.1f ms  by run %7.1f ms (%d rows)  |  Prometheus alone %6.1f ms  |  %d Prometheus range queries per impact query (step %s)\n",
		len(inc.Runs), inc.Changes(), setFrame.Rows(), setMs, runMs, runFrame.Rows(), aloneMs, len(made), step)
	return max(setMs, runMs), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type madeQuery struct {
	Query      string
	Start, End time.Time
	Step       time.Duration
}

// rangeQueries reads the range queries an impact frame says it made.
func rangeQueries(f *data.Frame) ([]madeQuery, error) {
	if f.Meta == nil || f.Meta.Custom == nil {
		return nil, errors.New("the impact frame lists no queries in its meta")
	}
	raw, err := json.Marshal(f.Meta.Custom)
	if err != nil {
		return nil, err
	}
	var m struct {
		Queries []struct {
			Query string    `json:"query"`
			Start time.Time `json:"start"`
			End   time.Time `json:"end"`
			Step  string    `json:"step"`
		} `json:"queries"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	out := make([]madeQuery, len(m.Queries))
	for i, q := range m.Queries {
		step, err := time.ParseDuration(q.Step)
		if err != nil {
			return nil, err
		}
		out[i] = madeQuery{Query: q.Query, Start: q.Start, End: q.End, Step: step}
	}
	return out, nil
}

// promAlone runs the queries as the plugin does, impactParallel at a time.
func promAlone(ctx context.Context, api promv1.API, qs []madeQuery) (time.Duration, error) {
	start := time.Now()
	sem := make(chan struct{}, impactParallel)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, q := range qs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, _, _, err := api.QueryRange(ctx, q.Query, promv1.Range{Start: q.Start, End: q.End, Step: q.Step}); err != nil {
				mu.Lock()
				firstErr = errors.Join(firstErr, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return time.Since(start), firstErr
}

// impactInstance is a plugin instance with Prometheus configured, made
// through the plugin's factory as newInstance makes one.
func impactInstance(ctx context.Context, cfg config, exchange, stream, promURL string) (*plugin.Instance, error) {
	u, err := url.Parse(cfg.url)
	if err != nil {
		return nil, fmt.Errorf("--amqp.url: %v", err)
	}
	secure := map[string]string{}
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			secure["amqpPassword"] = pw
			u.User = url.User(u.User.Username())
		}
	}
	jd, _ := json.Marshal(map[string]any{"amqpUrl": u.String(), "exchange": exchange, "stream": stream, "replay": "24h", "prometheusUrl": promURL})
	i, err := plugin.Factory(slog.New(newLogHook()))(ctx, backend.DataSourceInstanceSettings{
		UID: "runlens-bench-impact", Name: "runlens-bench-impact", JSONData: jd, DecryptedSecureJSONData: secure,
	})
	if err != nil {
		return nil, err
	}
	return i.(*plugin.Instance), nil
}

// servePrometheus writes the incidents' metrics as OpenMetrics, makes TSDB
// blocks of them with promtool and serves them with prometheus (the Debian
// packages); stop kills it and removes its files.
func servePrometheus(incs []*incident.Incident) (promURL string, stop func(), err error) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		return "", nil, fmt.Errorf("promtool is not installed (apt-get install prometheus): %v", err)
	}
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		return "", nil, fmt.Errorf("prometheus is not installed (apt-get install prometheus): %v", err)
	}
	dir, err := os.MkdirTemp("", "runlens-bench-impact-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	tsdb, err := incident.Blocks(promtool, dir, incs...)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(incident.PrometheusConfig), 0o600); err != nil {
		cleanup()
		return "", nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		cleanup()
		return "", nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		cleanup()
		return "", nil, err
	}
	cmd := exec.Command(bin, incident.PrometheusArgs(cfgFile, tsdb, addr)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		cleanup()
		return "", nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop = func() {
		_ = cmd.Process.Kill() // the process this function started
		<-exited
		logf.Close()
		cleanup()
	}
	promURL = "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(promURL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return promURL, stop, nil
			}
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(logf.Name())
			stop()
			return "", nil, fmt.Errorf("prometheus exited:\n%s", out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, errors.New("prometheus not ready within 30s")
		}
	}
}

// freeAddr is a loopback address with a port free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
