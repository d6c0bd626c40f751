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
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

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
	if err := fs.Parse(args); err != nil {
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
