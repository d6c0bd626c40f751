// Command runlens-bench measures the exporter against baselines taken in the
// same run, so its ratios mean something on a noisy machine:
//
//   - drain rate of a preloaded quorum queue: the exporter's pipeline
//     (decode, fleet, metrics, ack) vs a bare amqp091-go consumer that only
//     JSON-decodes each message's top level and acks it;
//   - /metrics scrape time with N tracked nodes vs a static registry holding
//     the same number of series in plain GaugeVecs;
//   - heap per tracked node.
package main

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/exporter/collector"
	"github.com/runlens/runlens/exporter/ingest"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/simulator"
)

var cpuProfilePath string

func main() {
	url := flag.String("amqp.url", "amqp://guest:guest@127.0.0.1:5672/", "broker")
	reports := flag.Int("reports", 20000, "reports to preload for the drain benchmark")
	nodes := flag.Int("nodes", 10000, "simulated nodes sending those reports")
	rounds := flag.Int("repeat", 2, "drain measurements of each kind (interleaved); the median is kept")
	scrapeNodes := flag.String("scrape-nodes", "10000,100000", "fleet sizes for the scrape and heap figures")
	prefetch := flag.Int("prefetch", 256, "basic.qos prefetch for both consumers")
	skipDrain := flag.Bool("skip-drain", false, "only the scrape and heap figures")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the exporter's drain passes to this file")
	flag.Parse()
	cpuProfilePath = *cpuProfile
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	fmt.Printf("runlens-bench  go=%s  cpus=%d  %s\n\n", runtime.Version(), runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))
	if !*skipDrain {
		if err := drain(*url, *reports, *nodes, *rounds, *prefetch, log); err != nil {
			fmt.Fprintln(os.Stderr, "drain:", err)
			os.Exit(1)
		}
	}
	for _, s := range strings.Split(*scrapeNodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintln(os.Stderr, "bad -scrape-nodes:", s)
			os.Exit(2)
		}
		scrape(n)
	}
}

// drain preloads 2×repeat queues with the same reports (one fanout publish
// copies to all), then drains them alternately with the bare consumer and
// the exporter pipeline.
func drain(url string, reports, nodes, repeat, prefetch int, log *slog.Logger) error {
	ctx := context.Background()
	sim := simulator.New(simulator.Config{Nodes: nodes, Seed: 42})
	var bodies [][]byte
	size := 0
	for round := 0; len(bodies) < reports; round++ {
		for _, r := range sim.Round(time.Now().Add(time.Duration(round-100)*time.Hour), time.Hour, simulator.Random) {
			for _, m := range r.Messages {
				if len(bodies) < reports {
					bodies = append(bodies, m)
					size += len(m)
				}
			}
		}
	}
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	exchange := "runlens.bench." + suffix
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	var queues []broker.Topology
	for i := range 3 * repeat {
		t := broker.Topology{Exchange: exchange, Queue: fmt.Sprintf("runlens.bench.%s.%d", suffix, i)}.Defaults()
		if err := broker.Declare(ch, t); err != nil {
			return err
		}
		queues = append(queues, t)
	}
	defer func() {
		for _, t := range queues {
			_, _ = ch.QueueDelete(t.Queue, false, false, false)
			_, _ = ch.QueueDelete(t.DeadLetterQueue, false, false, false)
			_ = ch.ExchangeDelete(t.DeadLetterExchange, false, false)
		}
		_ = ch.ExchangeDelete(exchange, false, false)
	}()

	pub, err := broker.NewPublisher(ctx, url, exchange, log)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := pub.PublishAll(ctx, bodies, 0); err != nil {
		return err
	}
	pub.Close()
	fmt.Printf("preloaded %d reports (%d nodes, %.1f KiB average, formats mixed) into %d quorum queues in %s\n",
		len(bodies), nodes, float64(size)/float64(len(bodies))/1024, len(queues), time.Since(start).Round(time.Millisecond))

	var bare, bareBatched, exp []float64
	for i := range repeat {
		r, err := drainBare(url, queues[3*i].Queue, len(bodies), prefetch, 1)
		if err != nil {
			return err
		}
		bare = append(bare, r)
		r, err = drainBare(url, queues[3*i+2].Queue, len(bodies), prefetch, 64)
		if err != nil {
			return err
		}
		bareBatched = append(bareBatched, r)
		if cpuProfilePath != "" {
			f, err := os.Create(cpuProfilePath)
			if err != nil {
				return err
			}
			_ = pprof.StartCPUProfile(f)
		}
		r, err = drainExporter(url, queues[3*i+1], len(bodies), prefetch, log)
		if cpuProfilePath != "" {
			pprof.StopCPUProfile()
		}
		if err != nil {
			return err
		}
		exp = append(exp, r)
		fmt.Printf("  pass %d: bare %.0f msg/s, bare with batched acks %.0f msg/s, exporter %.0f msg/s\n", i+1, bare[i], bareBatched[i], exp[i])
	}
	b, bb, e := median(bare), median(bareBatched), median(exp)
	fmt.Printf("drain rate (median of %d)     bare consumer %8.0f msg/s   exporter %8.0f msg/s   ratio %.2f  (target ≥ 0.90)\n", repeat, b, e, e/b)
	fmt.Printf("                              bare consumer acking 64 at a time %8.0f msg/s   ratio %.2f\n\n", bb, e/bb)
	return nil
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

// drainExporter runs the exporter's own consumer and pipeline.
func drainExporter(url string, topo broker.Topology, n, prefetch int, log *slog.Logger) (float64, error) {
	state := fleet.New(fleet.Options{})
	reg := prometheus.NewRegistry()
	metrics := collector.NewIngestMetrics(reg, 100)
	p := ingest.New(report.Decoder{}, state, metrics, log, nil)
	var done atomic.Int64
	finished := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := broker.NewConsumer(broker.ConsumerConfig{URL: url, Topology: topo, Prefetch: prefetch, Logger: log, Prepare: p.Prepare},
		func(ctx context.Context, m broker.Message) error {
			err := p.Handle(ctx, m)
			if done.Add(1) == int64(n) {
				close(finished)
			}
			return err
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

// scrape measures /metrics with n nodes tracked, against a static registry
// with the same series, and the heap the fleet state takes per node.
func scrape(n int) {
	sim := simulator.New(simulator.Config{Nodes: n, Seed: 7, Formats: []report.Format{report.FormatChefHandler}})
	runs := sim.Round(time.Now().Add(-time.Hour), time.Hour, simulator.Random)

	// The decoder copies every string out of the message, so what the state
	// keeps after the decoded runs are garbage is the state's own.
	state := fleet.New(fleet.Options{DedupWindow: 1}) // the window is a fixed cost, not per node
	heapBefore := heapInUse()
	now := time.Now()
	for _, r := range runs {
		d, err := report.Decode(r.Messages[0])
		if err != nil {
			panic(err)
		}
		state.Apply(d, now)
	}
	heapAfter := heapInUse()
	runtime.KeepAlive(runs)
	perNode := (float64(heapAfter) - float64(heapBefore)) / float64(n)

	ours := timeScrape(collector.Handler(prometheus.NewRegistry(), collector.NewFleetWriter(state), slog.Default(), 1))

	// Baseline: the same series in ordinary GaugeVecs.
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
	baseline := timeScrape(promhttp.HandlerFor(base, promhttp.HandlerOpts{}))
	runtime.KeepAlive(state)

	fmt.Printf("%7d nodes  scrape (gzip, median of 5) %7.1f ms  static-registry baseline %7.1f ms  ratio %.2f  |  %6.1f MiB body  |  heap %5.0f B/node (target < 2048)\n",
		n, ours.ms, baseline.ms, ours.ms/baseline.ms, float64(ours.bytes)/(1<<20), perNode)
}

type scrapeResult struct {
	ms    float64
	bytes int64
}

func timeScrape(h http.Handler) scrapeResult {
	srv := httptest.NewServer(h)
	defer srv.Close()
	var times []float64
	var size int64
	for range 5 {
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
	return scrapeResult{ms: median(times), bytes: size}
}

func heapInUse() uint64 {
	var m runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
