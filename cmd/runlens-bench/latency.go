package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/exporter/collector"
	"github.com/runlens/runlens/internal/benchutil"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/simulator"
)

// ---------------------------------------------------------------- 3. latency

// poller polls a /metrics-like endpoint and turns what it sees into one
// latency per report.
type poller struct {
	srv   *httptest.Server
	parse func(body []byte, seen func(report int)) // calls seen for each report first visible
	pub   []atomic.Int64                           // publish time of each report (Unix ns)
	upper []time.Duration                          // first poll that showed it − publish
	first []bool                                   // shown by the first poll that started after its publish
	shown atomic.Int64
	err   error
	polls int
}

func (p *poller) run(ctx context.Context, interval time.Duration, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	prevStart := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		start := time.Now()
		body, err := get(p.srv.URL)
		if err != nil {
			p.err = err
			return
		}
		obs := time.Now()
		p.polls++
		p.parse(body, func(i int) {
			if i < 0 || i >= len(p.pub) || p.upper[i] >= 0 {
				return
			}
			pub := p.pub[i].Load()
			if pub == 0 {
				p.err = fmt.Errorf("report %d shown before it was published", i)
				return
			}
			p.upper[i] = obs.Sub(time.Unix(0, pub))
			p.first[i] = !prevStart.After(time.Unix(0, pub))
			p.shown.Add(1)
		})
		prevStart = start
	}
}

// get fetches url as Prometheus does (text format, gzip) and returns the body.
func get(url string) ([]byte, error) {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return nil, err
		}
		r = zr
	}
	return io.ReadAll(r)
}

// perNode reads every sample of one per-node family: node name → value.
func perNode(body []byte, family string) map[string]float64 {
	out := map[string]float64{}
	prefix := []byte(family + `{node="`)
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, prefix) {
			continue
		}
		rest := line[len(prefix):]
		q := bytes.IndexByte(rest, '"')
		sp := bytes.LastIndexByte(line, ' ')
		if q < 0 || sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(string(line[sp+1:]), 64)
		if err == nil {
			out[string(rest[:q])] = v
		}
	}
	return out
}

func latency(ctx context.Context, w io.Writer, cfg config, log *slog.Logger) error {
	total := int(math.Round(cfg.latencyDuration.Seconds() * float64(cfg.latencyRate)))
	nodes := cfg.latencyNodes
	fmt.Fprintf(w, "== 3. publish → metric latency: %d reports/s for %s (%d reports over %d nodes, round robin), /metrics polled every %s\n",
		cfg.latencyRate, cfg.latencyDuration, total, nodes, cfg.pollInterval)
	fmt.Fprintf(w, "   Each report is a new run (unique run_id, Chef handler format) of one node with a known end time. The exporter's\n"+
		"   consumer and pipeline feed a fleet state served by its real /metrics handler (collector.Handler, on httptest),\n"+
		"   polled every %s with gzip as a fast Prometheus would scrape it. The k-th report of a node is shown when that\n"+
		"   node's runlens_runs_total ≥ k; its latency = end of the first poll that shows it − the time just before it was\n"+
		"   handed to broker.Publisher (PublishAll in batches every 10 ms, waiting for confirms). Polling adds up to one\n"+
		"   interval (about half on average); 'first poll' counts the reports already shown by the first poll that started\n"+
		"   after their publish, i.e. whose own delay was shorter than the wait for that poll.\n"+
		"   Baseline, same run, same publishes (the exchange fans out to a second queue): a bare amqp091-go consumer that\n"+
		"   only acks and adds 1 to an atomic counter, served as one number over httptest and polled the same way; the\n"+
		"   k-th report published is shown when the counter ≥ k.\n",
		cfg.pollInterval)

	sim := simulator.New(simulator.Config{Nodes: nodes, Seed: 11, Formats: []report.Format{report.FormatChefHandler}})
	base := time.Now().Add(-time.Duration(total)*time.Second - time.Hour).Truncate(time.Second)
	bodies := make([][]byte, total)
	ends := make([]time.Time, total)
	for k := range total {
		ends[k] = base.Add(time.Duration(k) * time.Second) // strictly later for each next report of a node
		bodies[k] = sim.NextRun(k%nodes, ends[k], simulator.Random).Messages[0]
	}
	index := map[string]int{}
	for i, n := range sim.Nodes {
		index[n.Name] = i
	}

	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	exchange := "runlens.bench.latency." + suffix
	topoExp := broker.Topology{Exchange: exchange, Queue: "runlens.bench.latency." + suffix + ".exporter"}.Defaults()
	topoBare := broker.Topology{Exchange: exchange, Queue: "runlens.bench.latency." + suffix + ".bare"}.Defaults()
	conn, err := amqp.Dial(cfg.url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	for _, t := range []broker.Topology{topoExp, topoBare} {
		if err := broker.Declare(ch, t); err != nil {
			return err
		}
	}
	defer deleteTopology(conn, exchange, []broker.Topology{topoExp, topoBare})

	cctx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()

	// The exporter, wired as serve does.
	state := fleet.New(fleet.Options{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	collector.RegisterBuildInfo(reg)
	c := exporterConsumer(cfg.url, topoExp, cfg.prefetch, state, reg, log, func() {})
	expErr := make(chan error, 1)
	go func() { expErr <- c.Run(cctx) }()
	expSrv := httptest.NewServer(collector.Handler(reg, collector.NewFleetWriter(state), log, collector.HandlerOpts{}))
	defer expSrv.Close()

	// The baseline.
	var counted atomic.Int64
	dels, err := bareConsume(cctx, cfg.url, topoBare.Queue, cfg.prefetch)
	if err != nil {
		return err
	}
	bareErr := make(chan error, 1)
	go func() {
		for d := range dels {
			if err := d.Ack(false); err != nil {
				if cctx.Err() != nil {
					err = nil // stopping: the connection closed under the ack
				}
				bareErr <- err
				return
			}
			counted.Add(1)
		}
		bareErr <- nil
	}()
	bareSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "bare_consumed_total %d\n", counted.Load())
	}))
	defer bareSrv.Close()

	for deadline := time.Now().Add(15 * time.Second); !c.Consuming(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return errors.New("exporter consumer did not start")
		}
	}

	pubNanos := make([]atomic.Int64, total)
	newPoller := func(srv *httptest.Server, parse func([]byte, func(int))) *poller {
		p := &poller{srv: srv, parse: parse, pub: pubNanos, upper: make([]time.Duration, total), first: make([]bool, total)}
		for i := range p.upper {
			p.upper[i] = -1
		}
		return p
	}
	seenNode := make([]int, nodes)
	expPoll := newPoller(expSrv, func(body []byte, seen func(int)) {
		for name, v := range perNode(body, "runlens_runs_total") {
			j, ok := index[name]
			if !ok {
				continue
			}
			for ; seenNode[j] < int(v); seenNode[j]++ {
				seen(j + seenNode[j]*nodes)
			}
		}
	})
	seenAll := 0
	barePoll := newPoller(bareSrv, func(body []byte, seen func(int)) {
		v, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(string(body), "bare_consumed_total ")))
		for ; seenAll < v; seenAll++ {
			seen(seenAll)
		}
	})
	pctx, stopPolls := context.WithCancel(ctx)
	defer stopPolls()
	expDone, bareDone := make(chan struct{}), make(chan struct{})
	go expPoll.run(pctx, cfg.pollInterval, expDone)
	go barePoll.run(pctx, cfg.pollInterval, bareDone)

	pub, err := broker.NewPublisher(ctx, cfg.url, exchange, log)
	if err != nil {
		return err
	}
	publishFor, err := benchutil.PublishPaced(ctx, pub, bodies, cfg.latencyRate, pubNanos)
	pub.Close()
	if err != nil {
		return err
	}

	deadline := time.Now().Add(10 * time.Second)
	for (expPoll.shown.Load() < int64(total) || barePoll.shown.Load() < int64(total)) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stopPolls()
	<-expDone
	<-bareDone
	for _, p := range []*poller{expPoll, barePoll} {
		if p.err != nil {
			return p.err
		}
	}

	// Check the exporter's figures: every node counted every run, and its
	// last run is the one with the latest end time.
	body, err := get(expSrv.URL)
	if err != nil {
		return err
	}
	runs, last := perNode(body, "runlens_runs_total"), perNode(body, "runlens_last_run_timestamp_seconds")
	bad := 0
	for j, n := range sim.Nodes {
		want := (total - j + nodes - 1) / nodes
		lastK := j + (want-1)*nodes
		if want > 0 && (int(runs[n.Name]) != want || last[n.Name] != float64(ends[lastK].Unix())) {
			bad++
		}
	}
	stopConsumers()
	if err := <-expErr; err != nil {
		return fmt.Errorf("exporter consumer: %w", err)
	}
	if err := <-bareErr; err != nil {
		return fmt.Errorf("bare consumer: %w", err)
	}

	fmt.Fprintf(w, "published %d reports in %s (%.0f reports/s); %d polls of the exporter, %d of the baseline\n",
		total, publishFor.Round(time.Millisecond), float64(total)/publishFor.Seconds(), expPoll.polls, barePoll.polls)
	if bad == 0 {
		fmt.Fprintf(w, "check: every node's runlens_runs_total and runlens_last_run_timestamp_seconds match what was published\n")
	} else {
		fmt.Fprintf(w, "check: %d nodes' runlens_runs_total or runlens_last_run_timestamp_seconds do NOT match what was published\n", bad)
	}
	line := func(name string, p *poller) (p99 time.Duration) {
		up, first := shownOnly(p.upper, p.first)
		if len(up) == 0 {
			fmt.Fprintf(w, "  %s  no report shown\n", name)
			return 0
		}
		fmt.Fprintf(w, "  %s  latency p50 %6.1f ms   p99 %6.1f ms   max %6.1f ms   first poll %5.1f%%   (%d of %d shown)\n",
			name, benchutil.Ms(benchutil.Percentile(up, 0.50)), benchutil.Ms(benchutil.Percentile(up, 0.99)), benchutil.Ms(up[len(up)-1]), 100*float64(first)/float64(len(up)), len(up), total)
		return benchutil.Percentile(up, 0.99)
	}
	e99 := line("exporter", expPoll)
	b99 := line("baseline", barePoll)
	fmt.Fprintf(w, "publish → metric p99   baseline %.1f ms   exporter %.1f ms   difference %.1f ms  (the %s poll interval adds 0–%s to both, ≈%s on average)\n\n",
		benchutil.Ms(b99), benchutil.Ms(e99), benchutil.Ms(e99-b99), cfg.pollInterval, cfg.pollInterval, cfg.pollInterval/2)
	return nil
}

// shownOnly returns the latencies of the reports that were shown, sorted,
// and how many of them the first poll after their publish showed.
func shownOnly(upper []time.Duration, first []bool) (up []time.Duration, firsts int) {
	for i, u := range upper {
		if u >= 0 {
			up = append(up, u)
			if first[i] {
				firsts++
			}
		}
	}
	slices.Sort(up)
	return up, firsts
}
