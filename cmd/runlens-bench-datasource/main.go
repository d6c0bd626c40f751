// Command runlens-bench-datasource measures the Grafana datasource backend
// (datasource/plugin) against baselines taken in the same run, so its ratios
// mean something on a noisy machine (issue #3):
//
//   - frames: topology.Frames (by node and by role) for fleets of 1k, 10k and
//     100k nodes, against copying the fleet's Snapshot (the data the frames
//     are built from);
//   - publish → frame latency: reports published at a steady rate to a real
//     RabbitMQ, followed by a plugin instance whose RunStream sends frames to
//     a recording sender; p50 / p99 / max of the time from a report's publish
//     to the first frame showing it;
//   - replay rate: a stream preloaded with simulated reports, read by the
//     plugin's history replay and by a bare amqp091-go stream consumer.
//
// Every exchange and stream it uses has a unique name and is deleted at the
// end.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/datasource/plugin"
	"github.com/runlens/runlens/internal/benchutil"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/simulator"
	"github.com/runlens/runlens/pkg/topology"
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
	// markerPrefix names the resource each latency report changes; the
	// nodes frame lists it in detail__changed_resources, which is how a
	// frame is mapped back to the reports it shows.
	markerPrefix = "/var/lib/runlens-bench/seq-"
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
	fs.BoolVar(&cfg.quick, "quick", false, "tiny sizes (a smoke test of the benchmark, not a measurement)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.quick {
		// Only what was not set explicitly.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]string{"nodes-list": "200,1000", "rate": "200", "latency-duration": "3s",
			"latency-nodes": "100", "replay-reports": "2000", "replay-nodes": "200"}
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
	if cfg.rate <= 0 || cfg.latencyNodes <= 0 || cfg.replayReports <= 0 || cfg.replayNodes <= 0 || cfg.replayRepeat <= 0 {
		return errors.New("--rate, --latency-nodes, --replay-reports, --replay-nodes and --replay-repeat must be positive")
	}

	// The load average says whether something else competed for the CPUs.
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "runlens-bench-datasource  go=%s  cpus=%d  %s  loadavg %s\n\n", runtime.Version(), runtime.NumCPU(),
		time.Now().UTC().Format(time.RFC3339), strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	benchFrames(w, cfg.nodesList)

	names := newNames()
	defer names.cleanup(cfg.url)
	if err := benchLatency(ctx, w, cfg, names); err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	if err := benchReplay(ctx, w, cfg, names); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------- frames

// simDependsOn is the simulator's default role dependencies, also given to
// the frames as the datasource's topology file.
var simDependsOn = simulator.Config{}.Defaults().DependsOn

func benchFrames(w io.Writer, sizes []int) {
	fmt.Fprintf(w, "== 1. topology frames (median of %d builds after a warm-up; simulated fleet: environments of %d nodes × 5 roles, depends_on by role)\n",
		frameRuns, nodesPerEnvironment)
	fmt.Fprintf(w, "   baseline: copying the fleet's Snapshot(), the data the frames are built from\n")
	var frames10k float64 = -1
	for _, n := range sizes {
		st := buildFleet(n)
		snap := st.Snapshot()
		opts := topology.Options{Now: time.Now(), Config: topology.Config{DependsOn: simDependsOn}}
		copyMs := medianMs(func() { _ = st.Snapshot() })
		opts.GroupBy = topology.ByNode
		nodes, edges := topology.Frames(snap, topology.Filter{}, opts)
		nodeMs := medianMs(func() { topology.Frames(snap, topology.Filter{}, opts) })
		opts.GroupBy = topology.ByRole
		roleNodes, roleEdges := topology.Frames(snap, topology.Filter{}, opts)
		roleMs := medianMs(func() { topology.Frames(snap, topology.Filter{}, opts) })
		fmt.Fprintf(w, "%7d nodes  by node %8.2f ms (%d nodes, %d edges)  by role %7.2f ms (%d nodes, %d edges)  |  snapshot copy %7.2f ms  ratio by node %.1f, by role %.1f\n",
			n, nodeMs, nodes.Rows(), edges.Rows(), roleMs, roleNodes.Rows(), roleEdges.Rows(), copyMs, nodeMs/copyMs, roleMs/copyMs)
		if n == 10_000 {
			frames10k = max(nodeMs, roleMs)
		}
		runtime.KeepAlive(snap)
	}
	if frames10k >= 0 {
		fmt.Fprintf(w, "target: 10,000-node frames < 20 ms: slower of the two %.2f ms  %s\n", frames10k, verdict(frames10k < 20))
	} else {
		fmt.Fprintf(w, "target: 10,000-node frames < 20 ms: not measured (10000 not in --nodes-list)\n")
	}
	fmt.Fprintln(w)
}

// buildFleet is a fleet.State (as the plugin keeps it) fed with one decoded
// simulated run per node, every format mixed.
func buildFleet(n int) *fleet.State {
	sim := simulator.New(simulator.Config{Nodes: n, Seed: 42, Environments: environments(n),
		NodeAttributeBytes: -1}) // the padding is dropped by the decoder anyway
	st := fleet.New(fleet.Options{KeepChanges: 20}) // as the plugin's
	now := time.Now()
	for _, r := range sim.Round(now.Add(-time.Hour), time.Hour, simulator.Random) {
		for _, m := range r.Messages {
			d, err := report.Decode(m)
			if err != nil {
				panic(err) // the simulator's reports are valid
			}
			st.Apply(d, now)
		}
	}
	return st
}

func environments(nodes int) []string {
	out := make([]string, max(1, nodes/nodesPerEnvironment))
	for i := range out {
		out[i] = fmt.Sprintf("env-%04d", i)
	}
	return out
}

// medianMs runs f once to warm up, then frameRuns times, each after a GC so
// one run's garbage is not collected in the next one's time.
func medianMs(f func()) float64 {
	f()
	times := make([]float64, 0, frameRuns)
	for range frameRuns {
		runtime.GC()
		t := time.Now()
		f()
		times = append(times, float64(time.Since(t).Microseconds())/1000)
	}
	return benchutil.Median(times)
}

// ---------------------------------------------------------------- latency

func benchLatency(ctx context.Context, w io.Writer, cfg config, names *names) error {
	exchange, stream := names.add("live")
	total := int(math.Round(cfg.latencyDuration.Seconds() * float64(cfg.rate)))
	fmt.Fprintf(w, "== 2. publish → frame latency: %d reports/s for %s (%d reports over %d nodes, round robin), liveInterval %s\n",
		cfg.rate, cfg.latencyDuration, total, cfg.latencyNodes, cfg.liveInterval)
	fmt.Fprintf(w, "   latency of a report = arrival of the first frame whose row for the report's node shows that run or a later one\n"+
		"   (each report changes a resource named after its sequence number, shown in detail__changed_resources)\n"+
		"   − the time just before the report was handed to broker.Publisher. A frame arrives when RunStream hands it,\n"+
		"   built and JSON-encoded, to the StreamSender (Grafana itself is not in the loop). Publishing waits for confirms,\n"+
		"   in batches every 10 ms.\n")

	if err := declareHistory(cfg.url, exchange, stream); err != nil {
		return err
	}
	bodies, nodeIndex := latencyReports(cfg, total)

	hook := newLogHook()
	inst, err := newInstance(ctx, cfg, hook, exchange, stream, "1h")
	if err != nil {
		return err
	}
	defer inst.Dispose()
	if _, err := waitReplayed(inst, 0, 15*time.Second); err != nil {
		return err
	}

	// RunStream on the unfiltered nodes view, by node.
	rec := &recorder{packets: make(chan packet, 1024)}
	path := "topology/" + base64.RawURLEncoding.EncodeToString([]byte(`{"groupBy":"node"}`)) + "/nodes"
	streamCtx, stopStream := context.WithCancel(ctx)
	streamDone := make(chan error, 1)
	go func() {
		streamDone <- inst.RunStream(streamCtx, &backend.RunStreamRequest{Path: path}, backend.NewStreamSender(rec))
	}()

	pubNanos := make([]atomic.Int64, total) // publish time of each report, set before it is published
	lat := newLatencies(cfg.latencyNodes, total, pubNanos, nodeIndex)
	analysed := make(chan struct{})
	go func() {
		defer close(analysed)
		for p := range rec.packets {
			lat.frame(p)
		}
	}()

	pub, err := broker.NewPublisher(ctx, cfg.url, exchange, nil)
	if err != nil {
		stopStream()
		return err
	}
	start := time.Now()
	publishFor, err := benchutil.PublishPaced(ctx, pub, bodies, cfg.rate, pubNanos)
	pub.Close()
	if err != nil {
		stopStream()
		return err
	}

	// Let the last reports reach a frame.
	deadline := time.Now().Add(3*cfg.liveInterval + 5*time.Second)
	for lat.shownCount() < total && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stopStream()
	if err := <-streamDone; err != nil {
		return fmt.Errorf("RunStream: %w", err)
	}
	close(rec.packets)
	<-analysed

	if lat.badFrames > 0 {
		return fmt.Errorf("%d frames could not be read back", lat.badFrames)
	}
	ls := lat.sorted()
	if len(ls) == 0 {
		return errors.New("no report reached a frame")
	}
	frames, span := lat.frames, lat.lastAt.Sub(start)
	fmt.Fprintf(w, "published %d reports in %s (%.0f reports/s); %d shown in a frame; %d frames in %s from the first publish to the last frame (%.2f frames/s)\n",
		total, publishFor.Round(time.Millisecond), float64(total)/publishFor.Seconds(), len(ls), frames, span.Round(time.Millisecond), float64(frames)/span.Seconds())
	p99 := benchutil.Percentile(ls, 0.99)
	fmt.Fprintf(w, "latency  p50 %6.0f ms   p99 %6.0f ms   max %6.0f ms   (frame rows %d)\n",
		benchutil.Ms(benchutil.Percentile(ls, 0.50)), benchutil.Ms(p99), benchutil.Ms(ls[len(ls)-1]), lat.lastRows)
	limit := cfg.liveInterval + 200*time.Millisecond
	ok := p99 < limit && len(ls) == total
	fmt.Fprintf(w, "target: p99 < interval + 200 ms = %.0f ms: %.0f ms  %s", benchutil.Ms(limit), benchutil.Ms(p99), verdict(ok))
	if len(ls) < total {
		fmt.Fprintf(w, " (%d reports never shown)", total-len(ls))
	}
	fmt.Fprintf(w, "\n\n")
	return nil
}

// latencyReports are Chef handler reports from a simulated fleet, each a new
// run (unique run_id, so none is a duplicate) changing one marker resource
// named after its sequence number. nodeIndex maps node names to their index.
func latencyReports(cfg config, total int) ([][]byte, map[string]int) {
	sim := simulator.New(simulator.Config{Nodes: cfg.latencyNodes, Seed: 7, Environments: environments(cfg.latencyNodes),
		Formats: []report.Format{report.FormatChefHandler}})
	nodeIndex := make(map[string]int, cfg.latencyNodes)
	for i, n := range sim.Nodes {
		nodeIndex[n.Name] = i
	}
	// End times follow the sequence (the fleet keeps the run with the
	// latest end as the node's last run).
	base := time.Now()
	bodies := make([][]byte, total)
	for seq := range bodies {
		end := base.Add(time.Duration(seq) * time.Second / time.Duration(cfg.rate))
		r := sim.NextRun(seq%cfg.latencyNodes, end, simulator.Random)
		var m map[string]any
		if err := json.Unmarshal(r.Messages[0], &m); err != nil {
			panic(err)
		}
		m["run_id"] = fmt.Sprintf("bench-%09d", seq)
		m["updated_resources"] = []string{"file[" + marker(seq) + "]"}
		m["updated_resources_count"] = 1
		b, err := json.Marshal(m)
		if err != nil {
			panic(err)
		}
		bodies[seq] = b
	}
	return bodies, nodeIndex
}

func marker(seq int) string { return fmt.Sprintf("%s%09d", markerPrefix, seq) }

// latencies maps frames back to reports. Reports of node k are k, k+nodes,
// k+2·nodes, … (round robin), so a frame showing report s for node k shows
// every report of k up to s; the ones not shown before get their latency.
type latencies struct {
	nodes     int
	pub       []atomic.Int64
	nodeIndex map[string]int

	mu        sync.Mutex
	shown     []int // per node, the last sequence number shown, -1 for none
	lat       []time.Duration
	frames    int
	badFrames int
	lastRows  int
	lastAt    time.Time // arrival of the last frame
}

func newLatencies(nodes, total int, pub []atomic.Int64, nodeIndex map[string]int) *latencies {
	l := &latencies{nodes: nodes, pub: pub, nodeIndex: nodeIndex, shown: make([]int, nodes), lat: make([]time.Duration, 0, total)}
	for i := range l.shown {
		l.shown[i] = -1
	}
	return l
}

func (l *latencies) frame(p packet) {
	var f data.Frame
	err := json.Unmarshal(p.data, &f)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.frames++
	l.lastAt = p.at
	if err != nil {
		l.badFrames++
		return
	}
	ids, changed := field(&f, "id"), field(&f, "detail__changed_resources")
	if ids == nil || changed == nil {
		l.badFrames++
		return
	}
	l.lastRows = f.Rows()
	for row := range ids.Len() {
		name, _ := ids.ConcreteAt(row)
		res, _ := changed.ConcreteAt(row)
		k, ok := l.nodeIndex[fmt.Sprint(name)]
		if !ok {
			continue
		}
		s, ok := markerSeq(fmt.Sprint(res))
		if !ok {
			continue
		}
		first := l.shown[k] + l.nodes
		if l.shown[k] < 0 {
			first = k
		}
		for seq := first; seq <= s && seq < len(l.pub); seq += l.nodes {
			l.lat = append(l.lat, p.at.Sub(time.Unix(0, l.pub[seq].Load())))
		}
		l.shown[k] = max(l.shown[k], s)
	}
}

func markerSeq(s string) (int, bool) {
	_, rest, ok := strings.Cut(s, markerPrefix)
	if !ok || len(rest) < 9 {
		return 0, false
	}
	n, err := strconv.Atoi(rest[:9])
	return n, err == nil
}

func field(f *data.Frame, name string) *data.Field {
	for _, fl := range f.Fields {
		if fl.Name == name {
			return fl
		}
	}
	return nil
}

func (l *latencies) shownCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lat)
}

func (l *latencies) sorted() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := slices.Clone(l.lat)
	slices.Sort(s)
	return s
}

// recorder is the StreamPacketSender: it stamps each packet as it arrives
// and leaves decoding to another goroutine, so RunStream is not slowed.
type recorder struct{ packets chan packet }

type packet struct {
	at   time.Time
	data []byte
}

func (r *recorder) Send(p *backend.StreamPacket) error {
	r.packets <- packet{time.Now(), slices.Clone(p.Data)}
	return nil
}

// ---------------------------------------------------------------- replay

func benchReplay(ctx context.Context, w io.Writer, cfg config, names *names) error {
	exchange, stream := names.add("replay")
	fmt.Fprintf(w, "== 3. history replay: %d reports preloaded into a stream, read %d times by each reader, interleaved\n",
		cfg.replayReports, cfg.replayRepeat)
	fmt.Fprintf(w, "   bare: amqp091-go stream consumer, qos prefetch 1000, x-stream-offset \"first\", JSON-decodes each message's\n"+
		"   top level (encoding/json into map[string]json.RawMessage) and acks it on its own, until %d messages\n"+
		"   plugin: a new datasource instance (replay 24h) until its fleet has applied them: the first time Instance.Replayed()\n"+
		"   (polled every %s) counts all %d handled, each decoded and applied to the fleet and the runs; it must then report\n"+
		"   caught up, which it does once its idle wait (%s) passed after the last message handled with none received, with the\n"+
		"   same count (a pass without that is an error). Both readers are timed from before connecting\n",
		cfg.replayReports, pollEvery, cfg.replayReports, replayIdleAfter)

	if err := declareHistory(cfg.url, exchange, stream); err != nil {
		return err
	}
	bodies, avg := replayReports(cfg)
	pub, err := broker.NewPublisher(ctx, cfg.url, exchange, nil)
	if err != nil {
		return err
	}
	start := time.Now()
	err = pub.PublishAll(ctx, bodies, 0)
	pub.Close()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "preloaded %d reports (%d nodes, every format mixed, node attributes of 2 KiB, %.1f KiB average) in %s\n",
		len(bodies), cfg.replayNodes, avg/1024, time.Since(start).Round(time.Millisecond))
	bodies = nil

	var bare, plug []float64
	for i := range cfg.replayRepeat {
		var b, p float64
		var pr replayed
		for attempt := 1; ; attempt++ {
			b, err = replayBare(cfg.url, stream, cfg.replayReports)
			if err == nil {
				p, pr, err = replayPlugin(ctx, cfg, exchange, stream)
			}
			if err == nil {
				break
			}
			if !errors.Is(err, errDisturbed) || attempt == passAttempts {
				return err
			}
			// A shared broker restarted by someone else: measure again.
			fmt.Fprintf(w, "  pass %d: %v; repeating the pass\n", i+1, err)
			time.Sleep(5 * time.Second)
		}
		bare, plug = append(bare, b), append(plug, p)
		fmt.Fprintf(w, "  pass %d: bare %8.0f msg/s   plugin %8.0f msg/s (all handled after %s; caught up %s later)\n",
			i+1, b, p, pr.handled.Round(time.Millisecond), (pr.caughtUp - pr.handled).Round(time.Millisecond))
	}
	b, p := benchutil.Median(bare), benchutil.Median(plug)
	fmt.Fprintf(w, "replay rate (median of %d)  bare %8.0f msg/s   plugin %8.0f msg/s   ratio %.2f\n", cfg.replayRepeat, b, p, p/b)
	fmt.Fprintf(w, "target: replay ≥ 0.8 of the bare rate: %.2f  %s\n\n", p/b, verdict(p/b >= 0.8))
	return nil
}

// replayReports are simulated reports of every format, with recent end times
// (within the plugin's replay window and history age), and their average
// size in bytes.
func replayReports(cfg config) ([][]byte, float64) {
	sim := simulator.New(simulator.Config{Nodes: cfg.replayNodes, Seed: 42, Environments: environments(cfg.replayNodes),
		NodeAttributeBytes: 2 << 10})
	bodies := make([][]byte, 0, cfg.replayReports)
	size := 0
	from := time.Now().Add(-2 * time.Hour)
	for round := 0; len(bodies) < cfg.replayReports; round++ {
		for _, r := range sim.Round(from.Add(time.Duration(round)*10*time.Minute), 10*time.Minute, simulator.Random) {
			for _, m := range r.Messages {
				if len(bodies) < cfg.replayReports {
					bodies = append(bodies, m)
					size += len(m)
				}
			}
		}
	}
	return bodies, float64(size) / float64(len(bodies))
}

// errDisturbed marks a pass whose broker connection was lost.
var errDisturbed = errors.New("broker connection lost mid-pass")

// replayBare is the broker-bound baseline. It returns messages per second.
func replayBare(url, stream string, n int) (float64, error) {
	start := time.Now()
	conn, err := amqp.Dial(url)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errDisturbed, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	if err := ch.Qos(1000, 0, false); err != nil {
		return 0, err
	}
	dels, err := ch.Consume(stream, "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
	if err != nil {
		return 0, err
	}
	for i := range n {
		d, ok := <-dels
		if !ok {
			return 0, fmt.Errorf("%w: bare consumer's channel closed after %d messages", errDisturbed, i)
		}
		var v map[string]json.RawMessage
		_ = json.Unmarshal(d.Body, &v)
		if err := d.Ack(false); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// replayPlugin starts a datasource instance on the preloaded stream and
// returns its rate (messages per second, to the last message handled) and
// when, from the start, it had handled them all and said it caught up.
func replayPlugin(ctx context.Context, cfg config, exchange, stream string) (float64, replayed, error) {
	hook := newLogHook()
	start := time.Now()
	inst, err := newInstance(ctx, cfg, hook, exchange, stream, "24h")
	if err != nil {
		return 0, replayed{}, err
	}
	defer inst.Dispose()
	r, err := waitReplayed(inst, uint64(cfg.replayReports), 10*time.Minute)
	if n := hook.lost.Load(); n > 0 {
		return 0, replayed{}, fmt.Errorf("%w: the plugin's replay lost its broker connection %d times", errDisturbed, n)
	}
	if err != nil {
		return 0, replayed{}, err
	}
	r.handled, r.caughtUp = r.handledAt.Sub(start), r.caughtUpAt.Sub(start)
	return float64(cfg.replayReports) / r.handled.Seconds(), r, nil
}

// replayed is what waitReplayed saw.
type replayed struct {
	handledAt, caughtUpAt time.Time
	handled, caughtUp     time.Duration // since the start, set by replayPlugin
}

// waitReplayed polls inst.Replayed() until the instance has handled want
// messages and said it caught up, and returns when it first saw each. It
// fails if the instance caught up with fewer or more than want (a pause of
// the idle wait mid-replay reads as caught up).
func waitReplayed(inst *plugin.Instance, want uint64, timeout time.Duration) (replayed, error) {
	var r replayed
	deadline := time.Now().Add(timeout)
	for {
		n, caughtUp := inst.Replayed()
		now := time.Now()
		if n >= want && r.handledAt.IsZero() {
			r.handledAt = now
		}
		if caughtUp {
			r.caughtUpAt = now
			if n != want && want > 0 {
				return r, fmt.Errorf("plugin caught up after %d reports, want %d (a pause of %s mid-replay reads as caught up)",
					n, want, replayIdleAfter)
			}
			return r, nil
		}
		if now.After(deadline) {
			return r, fmt.Errorf("the datasource's replay did not catch up within %s (%d of %d messages handled)", timeout, n, want)
		}
		time.Sleep(pollEvery)
	}
}

// ---------------------------------------------------------------- plugin

// newInstance creates a datasource instance through the plugin's own
// factory, from settings JSON as Grafana stores them (the password in the
// secure settings).
func newInstance(ctx context.Context, cfg config, hook *logHook, exchange, stream, replay string) (*plugin.Instance, error) {
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
	var topo strings.Builder
	for _, role := range slices.Sorted(maps.Keys(simDependsOn)) {
		fmt.Fprintf(&topo, "%s: [%s]\n", role, strings.Join(simDependsOn[role], ", "))
	}
	jd, _ := json.Marshal(map[string]any{
		"amqpUrl": u.String(), "exchange": exchange, "stream": stream,
		"replay": replay, "liveInterval": cfg.liveInterval.String(), "topology": topo.String(),
	})
	i, err := plugin.Factory(slog.New(hook))(ctx, backend.DataSourceInstanceSettings{
		UID: "runlens-bench", Name: "runlens-bench", JSONData: jd, DecryptedSecureJSONData: secure,
	})
	if err != nil {
		return nil, err
	}
	return i.(*plugin.Instance), nil
}

// logHook is the instance's logger: warnings and errors go to stderr, and
// the replay's lost-connection warnings are counted (progress is read from
// plugin.Instance.Replayed, not from the log).
type logHook struct {
	out  slog.Handler
	lost *atomic.Int64 // lostMessage warnings
}

func newLogHook() *logHook {
	return &logHook{out: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}), lost: new(atomic.Int64)}
}

func (h *logHook) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *logHook) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == lostMessage {
		h.lost.Add(1)
	}
	if r.Level >= slog.LevelWarn {
		return h.out.Handle(ctx, r)
	}
	return nil
}

func (h *logHook) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHook{out: h.out.WithAttrs(as), lost: h.lost}
}

func (h *logHook) WithGroup(name string) slog.Handler {
	return &logHook{out: h.out.WithGroup(name), lost: h.lost}
}

// ---------------------------------------------------------------- broker names

// names are this run's exchanges and streams, deleted at the end.
type names struct {
	suffix            string
	exchanges, queues []string
}

func newNames() *names { return &names{suffix: strconv.FormatInt(time.Now().UnixNano(), 36)} }

func (n *names) add(kind string) (exchange, stream string) {
	exchange = "runlens.bench-datasource." + n.suffix + "." + kind
	stream = exchange + ".history"
	n.exchanges, n.queues = append(n.exchanges, exchange), append(n.queues, stream)
	return exchange, stream
}

func (n *names) cleanup(url string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cleanup:", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cleanup:", err)
		return
	}
	for _, q := range n.queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup: delete stream", q, err)
			return // the channel is closed by the error
		}
	}
	for _, e := range n.exchanges {
		if err := ch.ExchangeDelete(e, false, false); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup: delete exchange", e, err)
			return
		}
	}
}

// declareHistory declares the stream up front, bound to the exchange, so
// what is published before a plugin instance starts is kept.
func declareHistory(url, exchange, stream string) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := broker.DeclareHistory(conn, broker.History{Stream: stream, Exchange: exchange}, nil)
	if err != nil {
		return err
	}
	return ch.Close()
}

// ---------------------------------------------------------------- stats

func verdict(ok bool) string {
	if ok {
		return "OK"
	}
	return "MISSED"
}
