// Command runlens-bench measures the exporter against baselines taken in the
// same run, so its ratios mean something on a noisy machine:
//
//  1. drain rate of a preloaded quorum queue: the exporter's pipeline
//     (decode, fleet, metrics, ack) vs a bare amqp091-go consumer that only
//     JSON-decodes each message's top level and acks it;
//  2. sustained throughput: publishers with confirms and the exporter's
//     pipeline running at the same time for a while (published/s, consumed/s,
//     queue depth), vs the bare consumer under the same publishers;
//  3. publish → metric latency: reports published at a fixed rate, the
//     exporter's real /metrics handler polled every 100 ms, the time until a
//     report's node's runlens_runs_total counts it; vs a consumer that only
//     acks and counts, polled the same way;
//  4. /metrics scrape time with N tracked nodes (up to 1,000,000) vs a static
//     registry holding the same number of series in plain GaugeVecs, and
//     heap per tracked node.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/exporter/collector"
	"github.com/runlens/runlens/exporter/ingest"
	"github.com/runlens/runlens/internal/benchutil"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/simulator"
)

type config struct {
	url                  string
	reports, nodes       int
	repeat, prefetch     int
	scrapeNodes          []int
	skipDrain            bool
	cpuProfile           string
	sustainDuration      time.Duration
	sustainPublishers    int
	sustainChunk         int
	sustainBacklog       int
	latencyRate          int
	latencyDuration      time.Duration
	latencyNodes         int
	pollInterval         time.Duration
	baselineMaxNodes     int
	directMinNodes       int
	skipSustain, skipLat bool
	quick                bool
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "runlens-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("runlens-bench", flag.ContinueOnError)
	var cfg config
	var scrapeNodes string
	fs.StringVar(&cfg.url, "amqp.url", "amqp://guest:guest@127.0.0.1:5672/", "broker")
	fs.IntVar(&cfg.reports, "reports", 20000, "reports to preload for the drain benchmark (and cycled through by the sustained one)")
	fs.IntVar(&cfg.nodes, "nodes", 10000, "simulated nodes sending those reports")
	fs.IntVar(&cfg.repeat, "repeat", 2, "drain measurements of each kind (interleaved); the median is kept")
	fs.StringVar(&scrapeNodes, "scrape-nodes", "10000,100000", "fleet sizes for the scrape and heap figures (up to 1000000 and more)")
	fs.IntVar(&cfg.prefetch, "prefetch", 256, "basic.qos prefetch for every consumer")
	fs.BoolVar(&cfg.skipDrain, "skip-drain", false, "skip the drain figure")
	fs.BoolVar(&cfg.skipSustain, "skip-sustain", false, "skip the sustained throughput figure")
	fs.BoolVar(&cfg.skipLat, "skip-latency", false, "skip the publish → metric latency figure")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the exporter's drain passes to this file")
	fs.DurationVar(&cfg.sustainDuration, "sustain-duration", 30*time.Second, "how long each sustained throughput measurement publishes and consumes")
	fs.IntVar(&cfg.sustainPublishers, "sustain-publishers", 2, "concurrent publishers (one connection each) for the sustained figure")
	fs.IntVar(&cfg.sustainChunk, "sustain-chunk", 500, "reports per PublishAll call for the sustained figure")
	fs.IntVar(&cfg.sustainBacklog, "sustain-backlog", 5000, "the sustained figure's publishers wait while more reports than this are published but not yet consumed")
	fs.IntVar(&cfg.latencyRate, "latency-rate", 500, "reports per second for the publish → metric latency figure")
	fs.DurationVar(&cfg.latencyDuration, "latency-duration", 20*time.Second, "how long to publish for the latency figure")
	fs.IntVar(&cfg.latencyNodes, "latency-nodes", 1000, "nodes the latency reports are spread over (round robin)")
	fs.DurationVar(&cfg.pollInterval, "poll-interval", 100*time.Millisecond, "how often the latency figure polls /metrics")
	fs.IntVar(&cfg.baselineMaxNodes, "baseline-max-nodes", 100000, "skip the static-registry scrape baseline above this fleet size (it takes minutes at 1M)")
	fs.IntVar(&cfg.directMinNodes, "direct-min-nodes", 0, "from this fleet size on, the scrape figure builds the fleet from report.Run values made in Go instead of simulating and decoding JSON (0: never; decoding 1M nodes one at a time takes well under a minute)")
	fs.BoolVar(&cfg.quick, "quick", false, "tiny sizes and 2 s durations (a smoke test of the benchmark, not a measurement)")
	restart := addRestartFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := restart.parse(cfg.quick); err != nil {
		return err
	}
	if cfg.quick {
		// Only what was not set explicitly.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]string{"reports": "1000", "nodes": "200", "repeat": "1", "scrape-nodes": "1000,3000",
			"sustain-duration": "2s", "latency-rate": "200", "latency-duration": "2s", "latency-nodes": "100",
			"baseline-max-nodes": "1000", "direct-min-nodes": "3000"}
		for name, v := range quick {
			if !set[name] {
				_ = fs.Set(name, v)
			}
		}
	}
	for _, s := range strings.Split(scrapeNodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("bad -scrape-nodes entry %q", s)
		}
		cfg.scrapeNodes = append(cfg.scrapeNodes, n)
	}
	if cfg.reports <= 0 || cfg.nodes <= 0 || cfg.repeat <= 0 || cfg.sustainPublishers <= 0 || cfg.sustainChunk <= 0 || cfg.sustainBacklog <= 0 ||
		cfg.latencyRate <= 0 || cfg.latencyNodes <= 0 || cfg.pollInterval <= 0 {
		return errors.New("-reports, -nodes, -repeat, -sustain-publishers, -sustain-chunk, -latency-rate, -latency-nodes and -poll-interval must be positive")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// The load average says whether something else competed for the CPUs.
	load := strings.Fields(readFile("/proc/loadavg"))
	fmt.Fprintf(w, "runlens-bench  go=%s  cpus=%d  %s  loadavg %s\n\n", runtime.Version(), runtime.NumCPU(),
		time.Now().UTC().Format(time.RFC3339), strings.Join(load[:min(3, len(load))], " "))
	if restart.only {
		return runRestart(ctx, w, cfg.url, restart, log)
	}
	if !cfg.skipDrain {
		fmt.Fprintf(w, "== 1. drain rate of a preloaded queue\n")
		if err := drain(w, cfg, log); err != nil {
			return fmt.Errorf("drain: %w", err)
		}
	}
	if !cfg.skipSustain {
		if err := sustain(ctx, w, cfg, log); err != nil {
			return fmt.Errorf("sustained throughput: %w", err)
		}
	}
	if !cfg.skipLat {
		if err := latency(ctx, w, cfg, log); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
	}
	fmt.Fprintf(w, "== 4. scrape time and heap per node\n")
	var sc scaleCarry
	for _, n := range cfg.scrapeNodes {
		if err := scrape(w, cfg, n, &sc); err != nil {
			return fmt.Errorf("scrape %d: %w", n, err)
		}
	}
	if restart.enabled {
		return runRestart(ctx, w, cfg.url, restart, log)
	}
	return nil
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// simReports makes reports simulated reports from nodes nodes, every format
// mixed. token[i] is the run identity inside bodies[i] that the sustained
// figure rewrites to make a new run: the run_id (Chef) or the jid (Salt).
func simReports(reports, nodes int) (bodies [][]byte, tokens []string, size int) {
	sim := simulator.New(simulator.Config{Nodes: nodes, Seed: 42})
	for round := 0; len(bodies) < reports; round++ {
		for _, r := range sim.Round(time.Now().Add(time.Duration(round-100)*time.Hour), time.Hour, simulator.Random) {
			tok, _, _ := strings.Cut(r.ID, "/")
			for _, m := range r.Messages {
				if len(bodies) < reports {
					bodies = append(bodies, m)
					tokens = append(tokens, tok)
					size += len(m)
				}
			}
		}
	}
	return bodies, tokens, size
}

// ---------------------------------------------------------------- 1. drain

// drain preloads 3×repeat queues with the same reports (one fanout publish
// copies to all), then drains them alternately with the bare consumers and
// the exporter pipeline.
func drain(w io.Writer, cfg config, log *slog.Logger) error {
	ctx := context.Background()
	bodies, _, size := simReports(cfg.reports, cfg.nodes)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	exchange := "runlens.bench." + suffix
	conn, err := amqp.Dial(cfg.url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	var queues []broker.Topology
	for i := range 3 * cfg.repeat {
		t := broker.Topology{Exchange: exchange, Queue: fmt.Sprintf("runlens.bench.%s.%d", suffix, i)}.Defaults()
		if err := broker.Declare(ch, t); err != nil {
			return err
		}
		queues = append(queues, t)
	}
	defer deleteTopology(ch, exchange, queues)

	pub, err := broker.NewPublisher(ctx, cfg.url, exchange, log)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := pub.PublishAll(ctx, bodies, 0); err != nil {
		return err
	}
	pub.Close()
	fmt.Fprintf(w, "preloaded %d reports (%d nodes, %.1f KiB average, formats mixed) into %d quorum queues in %s\n",
		len(bodies), cfg.nodes, float64(size)/float64(len(bodies))/1024, len(queues), time.Since(start).Round(time.Millisecond))

	var bare, bareBatched, exp []float64
	for i := range cfg.repeat {
		r, err := drainBare(cfg.url, queues[3*i].Queue, len(bodies), cfg.prefetch, 1)
		if err != nil {
			return err
		}
		bare = append(bare, r)
		r, err = drainBare(cfg.url, queues[3*i+2].Queue, len(bodies), cfg.prefetch, 64)
		if err != nil {
			return err
		}
		bareBatched = append(bareBatched, r)
		if cfg.cpuProfile != "" {
			f, err := os.Create(cfg.cpuProfile)
			if err != nil {
				return err
			}
			_ = pprof.StartCPUProfile(f)
		}
		r, err = drainExporter(cfg.url, queues[3*i+1], len(bodies), cfg.prefetch, log)
		if cfg.cpuProfile != "" {
			pprof.StopCPUProfile()
		}
		if err != nil {
			return err
		}
		exp = append(exp, r)
		fmt.Fprintf(w, "  pass %d: bare %.0f msg/s, bare with batched acks %.0f msg/s, exporter %.0f msg/s\n", i+1, bare[i], bareBatched[i], exp[i])
	}
	b, bb, e := benchutil.Median(bare), benchutil.Median(bareBatched), benchutil.Median(exp)
	fmt.Fprintf(w, "drain rate (median of %d)     bare consumer %8.0f msg/s   exporter %8.0f msg/s   ratio %.2f  (target ≥ 0.90)\n", cfg.repeat, b, e, e/b)
	fmt.Fprintf(w, "                              bare consumer acking 64 at a time %8.0f msg/s   ratio %.2f\n\n", bb, e/bb)
	return nil
}

func deleteTopology(ch *amqp.Channel, exchange string, queues []broker.Topology) {
	for _, t := range queues {
		_, _ = ch.QueueDelete(t.Queue, false, false, false)
		_, _ = ch.QueueDelete(t.DeadLetterQueue, false, false, false)
		_ = ch.ExchangeDelete(t.DeadLetterExchange, false, false)
	}
	_ = ch.ExchangeDelete(exchange, false, false)
}

// drainBare is the broker-bound baseline: qos, consume, decode the JSON, ack
// (every ackEvery messages, with multiple, as the exporter does when
// deliveries are waiting; 1 acks each message on its own).
func drainBare(url, queue string, n, prefetch, ackEvery int) (float64, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return 0, err
	}
	start := time.Now()
	dels, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	for i := 0; i < n; i++ {
		d, ok := <-dels
		if !ok {
			return 0, fmt.Errorf("bare consumer: channel closed after %d", i)
		}
		var v map[string]json.RawMessage
		_ = json.Unmarshal(d.Body, &v)
		if (i+1)%ackEvery == 0 || i == n-1 {
			if err := d.Ack(ackEvery > 1); err != nil {
				return 0, err
			}
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// exporterConsumer is the exporter's consumer and pipeline, as serve wires
// them, with a hook called after each handled message.
func exporterConsumer(url string, topo broker.Topology, prefetch int, state *fleet.State, reg prometheus.Registerer, log *slog.Logger, after func()) *broker.Consumer {
	metrics := collector.NewIngestMetrics(reg, 100)
	p := ingest.New(report.Decoder{}, state, metrics, log, nil)
	return broker.NewConsumer(broker.ConsumerConfig{URL: url, Topology: topo, Prefetch: prefetch, Logger: log, Prepare: p.Prepare},
		func(ctx context.Context, m broker.Message) error {
			err := p.Handle(ctx, m)
			after()
			return err
		})
}

// drainExporter runs the exporter's own consumer and pipeline.
func drainExporter(url string, topo broker.Topology, n, prefetch int, log *slog.Logger) (float64, error) {
	var done atomic.Int64
	finished := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := exporterConsumer(url, topo, prefetch, fleet.New(fleet.Options{}), prometheus.NewRegistry(), log, func() {
		if done.Add(1) == int64(n) {
			close(finished)
		}
	})
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	select {
	case <-finished:
	case err := <-errc:
		return 0, fmt.Errorf("exporter consumer stopped: %v", err)
	case <-time.After(10 * time.Minute):
		return 0, fmt.Errorf("exporter drained only %d of %d", done.Load(), n)
	}
	rate := float64(n) / time.Since(start).Seconds()
	cancel()
	<-errc
	return rate, nil
}

// ---------------------------------------------------------------- 2. sustained

type sustainResult struct {
	published, consumed float64 // per second over the window
	depths              []int   // ready messages, sampled every second
	end                 int     // ready messages at the end of the window
	heldBack            float64 // share of the window the publishers spent waiting for the backlog to shrink
}

// sustain publishes and consumes at the same time for cfg.sustainDuration,
// once with the exporter's pipeline and once with the bare consumer.
func sustain(ctx context.Context, w io.Writer, cfg config, log *slog.Logger) error {
	bodies, tokens, size := simReports(cfg.reports, cfg.nodes)
	fmt.Fprintf(w, "== 2. sustained throughput: %d publishers with confirms for %s, consumer running at the same time\n",
		cfg.sustainPublishers, cfg.sustainDuration)
	fmt.Fprintf(w, "   %d publishers (one connection each) publish in a loop with broker.Publisher.PublishAll, %d reports a call\n"+
		"   (at most 1000 unconfirmed), cycling through %d simulated reports (%d nodes, %.1f KiB average, formats mixed)\n"+
		"   whose run ids are rewritten each cycle, so every report is a new run (none is dropped as a duplicate).\n"+
		"   Sustained throughput is the rate publish and consume keep up together indefinitely: a publisher waits before its\n"+
		"   next call while more than %d reports are published but not yet consumed, so the queue cannot grow without bound\n"+
		"   (publishing flat out, the publishers outrun either consumer on this machine and the queue only grows). published/s\n"+
		"   = reports confirmed within the window / window; consumed/s = reports handled and acked within it; depth = ready\n"+
		"   messages, sampled every second; held back = share of the window the publishers waited for the consumer (near 0:\n"+
		"   the publishers or the broker are the limit, not the consumer). Publishers, broker and consumer share the CPUs.\n",
		cfg.sustainPublishers, cfg.sustainChunk, len(bodies), cfg.nodes, float64(size)/float64(len(bodies))/1024, cfg.sustainBacklog)
	exp, err := sustainOnce(ctx, cfg, bodies, tokens, true, log)
	if err != nil {
		return fmt.Errorf("exporter: %w", err)
	}
	printSustain(w, "exporter", exp)
	bare, err := sustainOnce(ctx, cfg, bodies, tokens, false, log)
	if err != nil {
		return fmt.Errorf("bare: %w", err)
	}
	printSustain(w, "bare    ", bare)
	fmt.Fprintf(w, "sustained consumed/s   bare consumer %8.0f msg/s   exporter %8.0f msg/s   ratio %.2f  (published/s ratio %.2f)\n\n",
		bare.consumed, exp.consumed, exp.consumed/bare.consumed, exp.published/bare.published)
	return nil
}

func printSustain(w io.Writer, name string, r sustainResult) {
	verdict := "bounded"
	half := r.depths[:len(r.depths)/2]
	if len(half) > 0 && r.end > 1000 && r.end > 2*slices.Max(half) {
		verdict = "GROWING"
	}
	var every []string
	step := max(1, len(r.depths)/10)
	for i := step - 1; i < len(r.depths); i += step {
		every = append(every, strconv.Itoa(r.depths[i]))
	}
	fmt.Fprintf(w, "  %s  published %8.0f msg/s   consumed %8.0f msg/s   held back %3.0f%%   queue depth at the end %6d, max %6d (%s); every %ds: %s\n",
		name, r.published, r.consumed, 100*r.heldBack, r.end, slices.Max(append([]int{r.end}, r.depths...)), verdict, step, strings.Join(every, " "))
}

func sustainOnce(ctx context.Context, cfg config, bodies [][]byte, tokens []string, exporter bool, log *slog.Logger) (sustainResult, error) {
	var res sustainResult
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	exchange := "runlens.bench.sustain." + suffix
	topo := broker.Topology{Exchange: exchange, Queue: "runlens.bench.sustain." + suffix}.Defaults()
	conn, err := amqp.Dial(cfg.url)
	if err != nil {
		return res, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return res, err
	}
	if err := broker.Declare(ch, topo); err != nil {
		return res, err
	}
	defer deleteTopology(ch, exchange, []broker.Topology{topo})

	var consumed atomic.Int64
	cctx, stopConsumer := context.WithCancel(ctx)
	defer stopConsumer()
	errc := make(chan error, 1)
	if exporter {
		c := exporterConsumer(cfg.url, topo, cfg.prefetch, fleet.New(fleet.Options{}), prometheus.NewRegistry(), log, func() { consumed.Add(1) })
		go func() { errc <- c.Run(cctx) }()
		for deadline := time.Now().Add(15 * time.Second); !c.Consuming(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				return res, errors.New("exporter consumer did not start")
			}
		}
	} else {
		dels, err := bareConsume(cctx, cfg.url, topo.Queue, cfg.prefetch)
		if err != nil {
			return res, err
		}
		go func() {
			for d := range dels {
				var v map[string]json.RawMessage
				_ = json.Unmarshal(d.Body, &v)
				if err := d.Ack(false); err != nil {
					if cctx.Err() != nil {
						err = nil // stopping: the connection closed under the ack
					}
					errc <- err
					return
				}
				consumed.Add(1)
			}
			errc <- nil
		}()
	}

	var published, claimed, waitedNs atomic.Int64
	var stop atomic.Bool
	var next atomic.Int64 // chunk sequence, shared by the publishers
	var wg sync.WaitGroup
	pubErr := make(chan error, cfg.sustainPublishers)
	for range cfg.sustainPublishers {
		pub, err := broker.NewPublisher(ctx, cfg.url, exchange, log)
		if err != nil {
			return res, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pub.Close()
			chunk := make([][]byte, cfg.sustainChunk)
			for !stop.Load() {
				if claimed.Load()-consumed.Load() > int64(cfg.sustainBacklog) {
					t := time.Now()
					for claimed.Load()-consumed.Load() > int64(cfg.sustainBacklog) && !stop.Load() {
						time.Sleep(time.Millisecond)
					}
					waitedNs.Add(int64(time.Since(t)))
					continue
				}
				claimed.Add(int64(cfg.sustainChunk))
				k := int(next.Add(1) - 1)
				for j := range chunk {
					seq := k*cfg.sustainChunk + j
					chunk[j] = newRun(bodies[seq%len(bodies)], tokens[seq%len(tokens)], seq/len(bodies))
				}
				if err := pub.PublishAll(ctx, chunk, 1000); err != nil {
					pubErr <- err
					return
				}
				published.Add(int64(len(chunk)))
			}
		}()
	}

	depthCh, err := conn.Channel()
	if err != nil {
		return res, err
	}
	depth := func() int {
		q, err := depthCh.QueueDeclarePassive(topo.Queue, true, false, false, false, nil)
		if err != nil {
			return -1
		}
		return q.Messages
	}
	start := time.Now()
	tick := time.NewTicker(time.Second)
	end := time.After(cfg.sustainDuration)
	var failure error
loop:
	for {
		select {
		case <-tick.C:
			res.depths = append(res.depths, depth())
		case <-end:
			break loop
		case err := <-pubErr:
			failure = fmt.Errorf("publisher: %w", err)
			break loop
		case err := <-errc:
			failure = fmt.Errorf("consumer stopped: %v", err)
			break loop
		}
	}
	tick.Stop()
	window := time.Since(start).Seconds()
	p, c, waited := published.Load(), consumed.Load(), waitedNs.Load()
	res.end = depth()
	stop.Store(true)
	wg.Wait()
	stopConsumer()
	if failure == nil {
		if err := <-errc; err != nil {
			failure = fmt.Errorf("consumer: %w", err)
		}
	}
	if failure != nil {
		return res, failure
	}
	res.published, res.consumed = float64(p)/window, float64(c)/window
	res.heldBack = float64(waited) / 1e9 / window / float64(cfg.sustainPublishers)
	if len(res.depths) == 0 {
		res.depths = []int{res.end}
	}
	return res, nil
}

// newRun is body with its run identity rewritten for cycle (cycle 0 is the
// body itself): the first 8 characters of the run_id (a UUID) or jid (digits)
// become the cycle number, so the report is a new run.
func newRun(body []byte, token string, cycle int) []byte {
	if cycle == 0 || len(token) < 8 {
		return body
	}
	return bytes.ReplaceAll(body, []byte(token), []byte(fmt.Sprintf("%08d", cycle%100_000_000)+token[8:]))
}

// bareConsume starts a bare amqp091-go consumer; its deliveries channel
// closes when ctx is done.
func bareConsume(ctx context.Context, url, queue string, prefetch int) (<-chan amqp.Delivery, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Qos(prefetch, 0, false)
	}
	var dels <-chan amqp.Delivery
	if err == nil {
		dels, err = ch.Consume(queue, "", false, false, false, false, nil)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	return dels, nil
}

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
	defer deleteTopology(ch, exchange, []broker.Topology{topoExp, topoBare})

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
	expSrv := httptest.NewServer(collector.Handler(reg, collector.NewFleetWriter(state), log, 4))
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

// ---------------------------------------------------------------- 4. scrape

// scaleCarry is what one fleet size tells the next.
type scaleCarry struct {
	decodeNsPerNode   float64 // simulate + decode + apply, per node
	baselineMsPerNode float64 // static-registry scrape, per node
}

// scrape measures /metrics with n nodes tracked, against a static registry
// with the same series, and the heap the fleet state takes per node.
func scrape(w io.Writer, cfg config, n int, carry *scaleCarry) error {
	// The decoder copies every string out of the message (and directFleet
	// clones every string it gives the state), so what the state keeps
	// after the runs are garbage is the state's own.
	state := fleet.New(fleet.Options{DedupWindow: 1}) // the window is a fixed cost, not per node
	var heapBefore, heapAfter uint64
	direct := cfg.directMinNodes > 0 && n >= cfg.directMinNodes
	var took time.Duration
	if direct {
		templates := runTemplates(1000)
		heapBefore = heapInUse()
		start := time.Now()
		directFleet(state, templates, n)
		took = time.Since(start)
		heapAfter = heapInUse()
		runtime.KeepAlive(templates) // not the state's
	} else {
		// One node at a time, as simulator.Round makes them (end times
		// spread over an hour) but without holding every message at once:
		// at 1M nodes that would be gigabytes.
		sim := simulator.New(simulator.Config{Nodes: n, Seed: 7, Formats: []report.Format{report.FormatChefHandler}})
		heapBefore = heapInUse()
		start := time.Now()
		from := start.Add(-time.Hour)
		for i := range n {
			r := sim.NextRun(i, from.Add(time.Duration(i)*time.Hour/time.Duration(n)), simulator.Random)
			d, err := report.Decode(r.Messages[0])
			if err != nil {
				return err
			}
			state.Apply(d, start)
		}
		took = time.Since(start)
		carry.decodeNsPerNode = float64(took.Nanoseconds()) / float64(n)
		heapAfter = heapInUse()
		runtime.KeepAlive(sim) // its nodes are not the state's
	}
	perNode := (float64(heapAfter) - float64(heapBefore)) / float64(n)

	reps := 5
	if n >= 1_000_000 {
		reps = 3
	}
	ours := timeScrape(collector.Handler(prometheus.NewRegistry(), collector.NewFleetWriter(state), slog.Default(), 1), reps)

	var baseline scrapeResult
	if n <= cfg.baselineMaxNodes {
		baseline = staticBaseline(state, reps)
		carry.baselineMsPerNode = baseline.ms / float64(n)
	}
	runtime.KeepAlive(state)

	fmt.Fprintf(w, "%7d nodes  scrape (gzip, median of %d) %7.1f ms  ", n, reps, ours.ms)
	if n <= cfg.baselineMaxNodes {
		fmt.Fprintf(w, "static-registry baseline %7.1f ms  ratio %.2f", baseline.ms, ours.ms/baseline.ms)
	} else {
		fmt.Fprintf(w, "static-registry baseline skipped (> -baseline-max-nodes %d)", cfg.baselineMaxNodes)
	}
	fmt.Fprintf(w, "  |  %6.1f MiB body  |  heap %5.0f B/node (target < 2048)\n", float64(ours.bytes)/(1<<20), perNode)
	if direct {
		fmt.Fprintf(w, "         fleet built in %s from report.Run values made in Go (not decoded JSON; -direct-min-nodes %d): 1,000 decoded\n"+
			"         simulator reports as templates, every string cloned per node so the state owns its copies as after decoding",
			took.Round(time.Millisecond), cfg.directMinNodes)
		if carry.decodeNsPerNode > 0 {
			fmt.Fprintf(w, ";\n         simulating and decoding would take about %s at the decoded sizes' rate (%.1f µs/node)",
				(time.Duration(carry.decodeNsPerNode * float64(n))).Round(time.Second), carry.decodeNsPerNode/1000)
		}
		fmt.Fprintf(w, "\n")
	} else {
		fmt.Fprintf(w, "         fleet built in %s by simulating and decoding Chef handler reports one node at a time (%.1f µs/node)\n",
			took.Round(time.Millisecond), float64(took.Microseconds())/float64(n))
	}
	if n > cfg.baselineMaxNodes {
		fmt.Fprintf(w, "         baseline skipped: client_golang builds every series in its registry and sorts it on each scrape")
		if carry.baselineMsPerNode > 0 {
			fmt.Fprintf(w, ";\n         at the rate measured at the smaller sizes one scrape would take about %s, and %d are timed",
				(time.Duration(carry.baselineMsPerNode * float64(n) * 1e6)).Round(100*time.Millisecond), reps)
		}
		fmt.Fprintf(w, "\n")
	}
	return nil
}

// staticBaseline serves the same series from ordinary GaugeVecs.
func staticBaseline(state *fleet.State, reps int) scrapeResult {
	base := prometheus.NewRegistry()
	vecs := map[string]*prometheus.GaugeVec{}
	for _, name := range []string{"runs_total", "run_failures_total", "updated_resources_total", "last_run_timestamp_seconds",
		"last_run_success", "last_run_duration_seconds", "last_run_updated_resources"} {
		vecs[name] = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "runlens_" + name, Help: name}, []string{"node", "environment"})
		base.MustRegister(vecs[name])
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "runlens_node_info", Help: "info"}, []string{"node", "environment", "fqdn", "ip_address", "source", "roles"})
	base.MustRegister(info)
	state.Each(func(nd *fleet.Node) {
		for _, v := range vecs {
			v.WithLabelValues(nd.Name, nd.Environment).Set(1)
		}
		info.WithLabelValues(nd.Name, nd.Environment, nd.FQDN, nd.IPAddress, string(nd.Source), nd.RolesLabel()).Set(1)
	})
	return timeScrape(promhttp.HandlerFor(base, promhttp.HandlerOpts{}), reps)
}

// runTemplates decodes k simulated Chef handler reports.
func runTemplates(k int) []*report.Run {
	sim := simulator.New(simulator.Config{Nodes: k, Seed: 7, Formats: []report.Format{report.FormatChefHandler}})
	var out []*report.Run
	for _, r := range sim.Round(time.Now().Add(-time.Hour), time.Hour, simulator.Random) {
		d, err := report.Decode(r.Messages[0])
		if err != nil {
			panic(err)
		}
		out = append(out, d)
	}
	return out
}

// directFleet applies one run to state for each of n nodes, made from the
// templates with a unique node name, FQDN, IP address and run id, and every
// string the state may keep cloned, so the state holds its own copies as it
// does after decoding.
func directFleet(state *fleet.State, templates []*report.Run, n int) {
	now := time.Now()
	for i := range n {
		t := templates[i%len(templates)]
		r := *t
		prefix := t.Node[:max(0, strings.LastIndexByte(t.Node, '-'))]
		r.Node = fmt.Sprintf("%s-%07d", prefix, i)
		r.FQDN = r.Node + ".example.internal"
		r.IPAddress = fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255)
		r.ID = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		r.Environment = strings.Clone(t.Environment)
		r.PolicyName, r.PolicyGroup = strings.Clone(t.PolicyName), strings.Clone(t.PolicyGroup)
		r.Platform, r.ClientVersion = strings.Clone(t.Platform), strings.Clone(t.ClientVersion)
		r.Roles, r.RunList, r.DependsOn = cloneStrings(t.Roles), cloneStrings(t.RunList), cloneStrings(t.DependsOn)
		if t.Error != nil {
			r.Error = &report.RunError{Class: strings.Clone(t.Error.Class), Message: strings.Clone(t.Error.Message)}
		}
		state.Apply(&r, now)
	}
}

func cloneStrings(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.Clone(s)
	}
	return out
}

type scrapeResult struct {
	ms    float64
	bytes int64
}

func timeScrape(h http.Handler, reps int) scrapeResult {
	srv := httptest.NewServer(h)
	defer srv.Close()
	var times []float64
	var size int64
	for range reps {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		// What Prometheus sends.
		req.Header.Set("Accept", "text/plain;version=0.0.4")
		req.Header.Set("Accept-Encoding", "gzip")
		t := time.Now()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			panic(err)
		}
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			panic(err)
		}
		size, _ = io.Copy(io.Discard, zr)
		resp.Body.Close()
		times = append(times, float64(time.Since(t).Microseconds())/1000)
	}
	return scrapeResult{ms: benchutil.Median(times), bytes: size}
}

func heapInUse() uint64 {
	var m runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
