// Command runlens-bench measures the exporter against baselines taken in the
// same run, so its ratios mean something on a noisy machine:
//
//  1. drain rate of a preloaded queue, for small Chef handler reports and for
//     large data collector messages with a real Ohai node object: the
//     exporter's consumer and pipeline (decode, fleet, metrics, ack) vs bare
//     amqp091-go consumers at the best of a prefetch sweep (decoding with
//     encoding/json into a map, decoding with runlens' decoder, and not
//     decoding at all: the broker's limit), each pass on a queue of its own,
//     warmed up, in rotating order; and, on classic queues, vs the original
//     design's Node.js bridge (../shared/anchors/seed-bridge) when Node.js is
//     on PATH;
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
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/runlens/runlens/pkg/broker"
)

type config struct {
	url                  string
	reports, nodes       int
	largeReports         int
	sustainReports       int
	repeat, prefetch     int
	barePrefetch         []int
	exporterPrefetch     []int
	bridge               string
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
	var scrapeNodes, barePrefetch, exporterPrefetch string
	fs.StringVar(&cfg.url, "amqp.url", "amqp://guest:guest@127.0.0.1:5672/", "broker")
	fs.IntVar(&cfg.reports, "reports", 60000, "small reports (Chef handler, about 1.3 KiB) preloaded for each drain pass")
	fs.IntVar(&cfg.largeReports, "large-reports", 2000, "large reports (Chef data collector with a real Ohai node object) preloaded for each drain pass")
	fs.IntVar(&cfg.sustainReports, "sustain-reports", 20000, "simulated reports (every format) the sustained figure cycles through")
	fs.IntVar(&cfg.nodes, "nodes", 10000, "simulated nodes sending those reports")
	fs.IntVar(&cfg.repeat, "repeat", 3, "drain passes of each kind (in rotating order); the median is kept")
	fs.StringVar(&scrapeNodes, "scrape-nodes", "10000,100000", "fleet sizes for the scrape and heap figures (up to 1000000 and more)")
	fs.IntVar(&cfg.prefetch, "prefetch", broker.DefaultPrefetch, "the exporter's basic.qos prefetch (its default), also for the sustained and latency consumers")
	fs.StringVar(&exporterPrefetch, "exporter-prefetch", "", "further prefetch values to drain the exporter with, comma-separated (a sweep for choosing the default)")
	fs.StringVar(&barePrefetch, "bare-prefetch", "256,1000,2000", "prefetch values the bare consumers drain with; the best is their baseline")
	fs.StringVar(&cfg.bridge, "bridge", "auto", "run the seed bridge (../shared/anchors/seed-bridge) on classic queues: auto (when Node.js and npm are on PATH), on, off")
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
		quick := map[string]string{"reports": "1000", "large-reports": "20", "sustain-reports": "1000", "bare-prefetch": "256", "bridge": "off",
			"nodes": "200", "repeat": "1", "scrape-nodes": "1000,3000",
			"sustain-duration": "2s", "latency-rate": "200", "latency-duration": "2s", "latency-nodes": "100",
			"baseline-max-nodes": "1000", "direct-min-nodes": "3000"}
		for name, v := range quick {
			if !set[name] {
				_ = fs.Set(name, v)
			}
		}
	}
	var err error
	if cfg.scrapeNodes, err = positiveInts("scrape-nodes", scrapeNodes); err != nil {
		return err
	}
	if cfg.barePrefetch, err = positiveInts("bare-prefetch", barePrefetch); err != nil {
		return err
	}
	if cfg.exporterPrefetch, err = positiveInts("exporter-prefetch", exporterPrefetch); err != nil {
		return err
	}
	if !slices.Contains(cfg.exporterPrefetch, cfg.prefetch) {
		cfg.exporterPrefetch = append(cfg.exporterPrefetch, cfg.prefetch)
	}
	slices.Sort(cfg.exporterPrefetch)
	if cfg.bridge != "auto" && cfg.bridge != "on" && cfg.bridge != "off" {
		return fmt.Errorf("-bridge %q: want auto, on or off", cfg.bridge)
	}
	if cfg.reports <= 0 || cfg.largeReports <= 0 || cfg.sustainReports <= 0 || cfg.prefetch <= 0 || cfg.nodes <= 0 || cfg.repeat <= 0 || cfg.sustainPublishers <= 0 || cfg.sustainChunk <= 0 || cfg.sustainBacklog <= 0 ||
		cfg.latencyRate <= 0 || cfg.latencyNodes <= 0 || cfg.pollInterval <= 0 {
		return errors.New("-reports, -large-reports, -sustain-reports, -prefetch, -nodes, -repeat, -sustain-publishers, -sustain-chunk, -latency-rate, -latency-nodes and -poll-interval must be positive")
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

// positiveInts parses a comma-separated list of positive integers ("" is
// none).
func positiveInts(flag, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad -%s entry %q", flag, f)
		}
		out = append(out, n)
	}
	return out, nil
}
