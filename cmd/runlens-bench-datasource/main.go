// Command runlens-bench-datasource measures the Grafana datasource backend
// (datasource/plugin) against baselines taken in the same run, so its ratios
// mean something on a noisy machine (issues #3 and #9):
//
//   - frames (frames.go): the live frames (lean, pinned) by node and by role
//     for fleets of 1k, 10k and 100k nodes: build time, JSON time and bytes,
//     against copying the fleet's Snapshot (the data they are built from);
//   - publish → frame latency (latency.go): reports published at a steady
//     rate to a real RabbitMQ, followed by a plugin instance whose RunStream
//     sends frames to a recording sender; p50 / p99 / max of the time from a
//     report's publish to the first frame showing it;
//   - fan-out (fanout.go): one live view followed by 100 RunStreams on each
//     of its channels while the fleet changes: frame pairs built and encoded
//     per interval (one), packets sent (one per subscriber);
//   - replay rate (replay.go): a stream preloaded with simulated reports,
//     read by the plugin's history replay and by a bare amqp091-go stream
//     consumer.
//
// Every exchange and stream it uses has a unique name and is deleted at the
// end.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/runlens/runlens/datasource/plugin"
	"github.com/runlens/runlens/pkg/simulator"
)

const (
	// frameRuns is how many timed builds each frames figure is the median of.
	frameRuns = 7
	// nodesPerEnvironment keeps the simulated fleets shaped like real ones:
	// environments of 50 nodes (10 per role), whatever the fleet size. With
	// a fixed 3 environments, 100k nodes would make every web node depend
	// on ~6,700 app nodes and the edge count explode.
	nodesPerEnvironment = 50
	// replayIdleAfter is broker.ReplayConfig's default IdleAfter, which the
	// plugin does not override: its replay reports caught up once this long
	// passed after it handled a message with no further one received.
	replayIdleAfter = 500 * time.Millisecond
	// pollEvery is how often plugin.Instance.Replayed is read.
	pollEvery = time.Millisecond
	// lostMessage is pkg/broker's warning when the replay lost its
	// connection: a pass it happens in measured the reconnect, not the
	// replay.
	lostMessage = "history connection failed or lost; reconnecting"
	// passAttempts bounds how often a disturbed replay pass is repeated.
	passAttempts = 3
	// markerBase is the run duration of the latency report of sequence
	// number 0; report s lasts markerBase + s ms, which the live nodes
	// frame shows in detail__duration (to the millisecond): how a frame is
	// mapped back to the reports it shows.
	markerBase = time.Second
)

type config struct {
	url             string
	nodesList       []int
	rate            int
	latencyDuration time.Duration
	liveInterval    time.Duration
	latencyNodes    int
	replayReports   int
	replayNodes     int
	replayRepeat    int
	subscribers     int
	fanoutDuration  time.Duration
	quick           bool
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "runlens-bench-datasource:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("runlens-bench-datasource", flag.ContinueOnError)
	var cfg config
	var nodesList string
	fs.StringVar(&cfg.url, "amqp.url", "amqp://guest:guest@127.0.0.1:5672/", "broker")
	fs.StringVar(&nodesList, "nodes-list", "1000,10000,100000", "fleet sizes for the frames figures")
	fs.IntVar(&cfg.rate, "rate", 1000, "reports per second for the latency figure")
	fs.DurationVar(&cfg.latencyDuration, "latency-duration", 20*time.Second, "how long to publish for the latency figure")
	fs.DurationVar(&cfg.liveInterval, "live-interval", plugin.DefaultLiveInterval, "the datasource's liveInterval setting")
	fs.IntVar(&cfg.latencyNodes, "latency-nodes", 1000, "nodes the latency reports are spread over (round robin); at most 1,500 keeps the frame by node")
	fs.IntVar(&cfg.replayReports, "replay-reports", 100_000, "reports preloaded into the stream for the replay figure")
	fs.IntVar(&cfg.replayNodes, "replay-nodes", 10_000, "simulated nodes sending the preloaded reports")
	fs.IntVar(&cfg.replayRepeat, "replay-repeat", 2, "replay passes of each kind (interleaved); the median is kept")
	fs.IntVar(&cfg.subscribers, "subscribers", 100, "RunStreams on each of the view's two channels for the fan-out figure")
	fs.DurationVar(&cfg.fanoutDuration, "fanout-duration", 10*time.Second, "how long the fleet changes for the fan-out figure")
	fs.BoolVar(&cfg.quick, "quick", false, "tiny sizes (a smoke test of the benchmark, not a measurement)")
	fs.StringVar(&impactFlags.runs, "impact-runs", "1000,10000", "run counts for the impact ranking figure")
	fs.IntVar(&impactFlags.repeat, "impact-repeat", 5, "timed impact queries of each mode; the median is kept")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.quick {
		// Only what was not set explicitly.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]string{"nodes-list": "200,1000", "rate": "200", "latency-duration": "3s",
			"latency-nodes": "100", "replay-reports": "2000", "replay-nodes": "200", "impact-runs": "500,1000", "impact-repeat": "2",
			"fanout-duration": "2s"}
		for name, v := range quick {
			if !set[name] {
				_ = fs.Set(name, v)
			}
		}
	}
	for _, s := range strings.Split(nodesList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("bad --nodes-list entry %q", s)
		}
		cfg.nodesList = append(cfg.nodesList, n)
	}
	if cfg.rate <= 0 || cfg.latencyNodes <= 0 || cfg.replayReports <= 0 || cfg.replayNodes <= 0 || cfg.replayRepeat <= 0 || cfg.subscribers <= 0 {
		return errors.New("--rate, --latency-nodes, --replay-reports, --replay-nodes, --replay-repeat and --subscribers must be positive")
	}

	// The load average says whether something else competed for the CPUs.
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "runlens-bench-datasource  go=%s  cpus=%d  %s  loadavg %s\n\n", runtime.Version(), runtime.NumCPU(),
		time.Now().UTC().Format(time.RFC3339), strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	if err := benchFrames(w, cfg.nodesList); err != nil {
		return fmt.Errorf("frames: %w", err)
	}

	names := newNames()
	defer names.cleanup(cfg.url)
	if err := benchLatency(ctx, w, cfg, names); err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	if err := benchFanout(ctx, w, cfg, names); err != nil {
		return fmt.Errorf("fan-out: %w", err)
	}
	if err := benchReplay(ctx, w, cfg, names); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if err := benchImpact(ctx, w, cfg, names); err != nil {
		return fmt.Errorf("impact: %w", err)
	}
	return nil
}

// simDependsOn is the simulator's default role dependencies, also given to
// the frames as the datasource's topology file.
var simDependsOn = simulator.Config{}.Defaults().DependsOn

func verdict(ok bool) string {
	if ok {
		return "OK"
	}
	return "MISSED"
}
