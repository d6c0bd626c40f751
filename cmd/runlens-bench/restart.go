package main

// Section "restart": how long a restarted exporter takes to be ready (its
// fleet state restored, /-/ready 200) against a bare amqp091-go consumer
// reading the same history stream from its first offset to its end, with and
// without a fleet snapshot (pkg/snapshot), and whether every node is right
// once ready.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/datasource/plugin"
	"github.com/runlens/runlens/internal/benchutil"
	"github.com/runlens/runlens/internal/proctest"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/simulator"
	"github.com/runlens/runlens/pkg/snapshot"
)

// restartConfig is the restart section's flags.
type restartConfig struct {
	enabled, only, big bool
	sizes              []restartSize
	sizesFlag          string
	repeat             int
}

type restartSize struct{ reports, nodes int }

// addRestartFlags registers the section's flags on fs.
func addRestartFlags(fs *flag.FlagSet) *restartConfig {
	rc := &restartConfig{}
	fs.BoolVar(&rc.enabled, "restart", false, "also measure restarts (section 5): ready time against a bare read of the history, with and without a fleet snapshot")
	fs.BoolVar(&rc.only, "restart-only", false, "measure restarts only (section 5), no other section")
	fs.BoolVar(&rc.big, "restart-big", false, "add 4,800,000 reports of 100,000 nodes to the restart sizes (publishing them takes minutes and about 6.5 GB of broker disk, deleted after)")
	fs.StringVar(&rc.sizesFlag, "restart-sizes", "300000/30000", "restart history sizes, reports/nodes, comma-separated")
	fs.IntVar(&rc.repeat, "restart-repeat", 2, "bare reads of each kind per size (alternating with and without decoding); the median is kept")
	return rc
}

func (rc *restartConfig) parse(quick bool) error {
	s := rc.sizesFlag
	if quick && s == "300000/30000" {
		s = "6000/600"
	}
	for _, part := range strings.Split(s, ",") {
		r, n, ok := strings.Cut(strings.TrimSpace(part), "/")
		reports, err1 := strconv.Atoi(r)
		nodes, err2 := strconv.Atoi(n)
		if !ok || err1 != nil || err2 != nil || reports < nodes || nodes <= 0 {
			return fmt.Errorf("bad -restart-sizes entry %q (want reports/nodes, reports ≥ nodes > 0)", part)
		}
		rc.sizes = append(rc.sizes, restartSize{reports, nodes})
	}
	if rc.big {
		rc.sizes = append(rc.sizes, restartSize{4_800_000, 100_000})
	}
	if rc.repeat < 1 {
		return errors.New("-restart-repeat must be positive")
	}
	return nil
}

// runRestart is the section.
func runRestart(ctx context.Context, w io.Writer, url string, rc *restartConfig, log *slog.Logger) error {
	// Interrupted, it still deletes its streams (gigabytes at the big size).
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(w, "== 5. restart: exporter ready time against a bare read of the history stream\n")
	fmt.Fprintf(w, "   The history is Chef handler reports of about 1.3 KB, rounds of the whole fleet, published to an exchange only the\n"+
		"   history stream is bound to (the exporters' own quorum queue is bound to another, so it does not hold the history: the\n"+
		"   restore reads the stream only). The bare read is a plain amqp091-go stream consumer (prefetch 1000, acks every 250)\n"+
		"   from the first offset to the last, connecting included; 'decode' JSON-decodes each body's top level into a map.\n"+
		"   Ready is from the exporter process's start to /-/ready 200 (its fleet state restored); the first exporter is killed\n"+
		"   with SIGKILL once its snapshot is written, the others stop with SIGTERM (writing a snapshot of what they replayed).\n")
	bin, cleanup, err := buildExporter()
	if err != nil {
		return err
	}
	defer cleanup()
	for _, sz := range rc.sizes {
		if err := restartOnce(ctx, w, url, bin, sz, rc.repeat, log); err != nil {
			return fmt.Errorf("%d reports / %d nodes: %w", sz.reports, sz.nodes, err)
		}
	}
	fmt.Fprintln(w)
	return nil
}

func buildExporter() (string, func(), error) {
	dir, err := os.MkdirTemp("", "runlens-bench-")
	if err != nil {
		return "", nil, err
	}
	bin, err := proctest.BuildExporter(dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// restartBed is one size's broker entities and truth.
type restartBed struct {
	url, exchange, queueExchange, queue, stream string
	sim                                         *simulator.Fleet
	nodes, messages, round                      int
	bytes                                       int64
	base                                        time.Time
	lastEnd, success                            map[string]float64
}

func restartOnce(ctx context.Context, w io.Writer, url, bin string, sz restartSize, repeat int, log *slog.Logger) error {
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	b := &restartBed{
		url: url, exchange: "runlens.bench.restart." + suffix, queueExchange: "runlens.bench.restart.q." + suffix,
		queue: "runlens.bench.restart." + suffix, stream: "runlens.bench.restart.history." + suffix,
		sim:   simulator.New(simulator.Config{Nodes: sz.nodes, Seed: 77, Formats: []report.Format{report.FormatChefHandler}, Resources: 250}),
		nodes: sz.nodes, lastEnd: make(map[string]float64, sz.nodes), success: make(map[string]float64, sz.nodes),
	}
	rounds := (sz.reports + sz.nodes - 1) / sz.nodes
	b.base = time.Now().Add(-time.Duration(rounds) * roundSpacing).Truncate(time.Second)
	defer b.cleanup()

	// A stream sized for this history (about 1.3 KB a report, plus room).
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	ch, err := broker.DeclareHistory(conn, broker.History{Stream: b.stream, Exchange: b.exchange, MaxBytes: int64(sz.reports)*2000 + 256<<20}, log)
	conn.Close()
	if err != nil {
		return err
	}
	_ = ch.Close()

	pub, err := broker.NewPublisher(ctx, url, b.exchange, log)
	if err != nil {
		return err
	}
	start := time.Now()
	for b.messages < sz.reports {
		if err := b.publishRound(ctx, pub, min(sz.nodes, sz.reports-b.messages)); err != nil {
			pub.Close()
			return err
		}
	}
	pub.Close()
	fmt.Fprintf(w, "history: %d reports (%.2f KiB average) of %d nodes, published in %s\n", b.messages,
		float64(b.bytes)/float64(b.messages)/1024, sz.nodes, time.Since(start).Round(time.Millisecond))

	// The bare read, alternating with and without decoding.
	var plain, decoded []float64
	for i := range repeat {
		for _, decode := range []bool{i%2 == 1, i%2 == 0} {
			d, err := bareRead(ctx, url, b.stream, b.messages, decode)
			if err != nil {
				return err
			}
			if decode {
				decoded = append(decoded, d.Seconds())
			} else {
				plain = append(plain, d.Seconds())
			}
		}
	}
	bare, bareDec := benchutil.Median(plain), benchutil.Median(decoded)
	fmt.Fprintf(w, "  bare read of the history (median of %d)  no decode %7.2f s (%6.0f msg/s)   decode %7.2f s (%6.0f msg/s)\n",
		repeat, bare, float64(b.messages)/bare, bareDec, float64(b.messages)/bareDec)
	fmt.Fprintf(w, "  %-44s %9s  %-22s %-20s %s\n", "restart", "ready", "ratio (no decode/decode)", "every node right", "history replayed")
	row := func(name string, r restartRun) {
		right := "yes"
		if r.wrong > 0 {
			right = fmt.Sprintf("NO: %d wrong", r.wrong)
		}
		fmt.Fprintf(w, "  %-44s %8.2fs  %5.2f / %5.2f            %-20s %d reports\n", name, r.ready.Seconds(),
			r.ready.Seconds()/bare, r.ready.Seconds()/bareDec, fmt.Sprintf("%s (%d nodes)", right, r.served), r.replayed)
	}

	// 1. No snapshot: the whole history is replayed. The exporter then
	// writes a snapshot covering it.
	r, err := b.restart(ctx, bin)
	if err != nil {
		return err
	}
	row("no snapshot (full replay of the history)", r)
	info, err := b.waitSnapshot(ctx, int64(b.messages-1))
	if err != nil {
		r.kill()
		return err
	}
	r.kill()

	// 2. A snapshot covering everything.
	r, err = b.restart(ctx, bin)
	if err != nil {
		return err
	}
	r.stop()
	row("snapshot, nothing after it", r)

	// 3. Reports arrived after the snapshot: the traffic of one 5-minute
	// snapshot interval for a fleet on a 30-minute run interval; half a
	// fleet's worth, the most a running exporter lets pass before it
	// writes the next snapshot however fast reports come (so the worst
	// case of a kill -9); and a whole fleet's worth, as after half an hour
	// with no exporter running. Each restart stops with SIGTERM, which
	// writes a snapshot covering what it replayed.
	for _, tail := range []int{max(1, sz.nodes/6), max(1, sz.nodes/2), sz.nodes} {
		pub, err := broker.NewPublisher(ctx, url, b.exchange, log)
		if err != nil {
			return err
		}
		if err := b.publishRound(ctx, pub, tail); err != nil {
			pub.Close()
			return err
		}
		pub.Close()
		r, err = b.restart(ctx, bin)
		if err != nil {
			return err
		}
		r.stop()
		row(fmt.Sprintf("snapshot + %d reports after it", tail), r)
	}

	// The datasource, from the snapshot the last exporter left at its stop
	// plus another interval's worth of reports after it.
	pub, err = broker.NewPublisher(ctx, url, b.exchange, log)
	if err != nil {
		return err
	}
	if err := b.publishRound(ctx, pub, max(1, sz.nodes/6)); err != nil {
		pub.Close()
		return err
	}
	pub.Close()
	ds, err := b.datasource(ctx)
	if err != nil {
		return fmt.Errorf("datasource: %w", err)
	}
	right := "yes"
	if ds.wrong != "" {
		right = "NO: " + ds.wrong
	}
	fmt.Fprintf(w, "  %-44s %8.2fs  %5.2f / %5.2f            %-20s %d reports; the older history loaded after %.2fs\n",
		fmt.Sprintf("datasource, snapshot + %d reports after it", max(1, sz.nodes/6)), ds.ready.Seconds(), ds.ready.Seconds()/bare,
		ds.ready.Seconds()/bareDec, right+" (by role)", ds.replayed, ds.older.Seconds())

	// The snapshot itself, read and written in this process.
	heap, loadTook, err := b.loadHeap(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  snapshot of %d nodes: %d chunks, %.1f MiB, %.0f B/node; loaded in %s in this process, restored state %.0f B/node of heap;\n"+
		"  the last exporter's go_memstats_heap_inuse_bytes once ready %.0f B/node (replay garbage included)\n",
		info.Nodes, info.Chunks, float64(info.Bytes)/(1<<20), float64(info.Bytes)/float64(info.Nodes), loadTook.Round(time.Millisecond),
		float64(heap)/float64(b.nodes), r.heapInUse/float64(b.nodes))
	return nil
}

// roundSpacing is the time between two rounds' runs (whole seconds).
const roundSpacing = 20 * time.Minute

// publishRound publishes one run for each of the first n nodes, ends a
// roundSpacing after the previous round's, and records the truth.
func (b *restartBed) publishRound(ctx context.Context, pub *broker.Publisher, n int) error {
	const batch = 20_000
	bodies := make([][]byte, 0, min(batch, n))
	for i := range n {
		end := b.base.Add(time.Duration(b.round)*roundSpacing + time.Duration(i%600)*time.Second)
		if end.After(time.Now()) {
			end = time.Now().Truncate(time.Second)
		}
		r := b.sim.NextRun(i, end, simulator.Random)
		for _, m := range r.Messages {
			bodies = append(bodies, m)
			b.bytes += int64(len(m))
		}
		b.lastEnd[r.Node.Name] = float64(r.End.Unix())
		b.success[r.Node.Name] = 1
		if r.Failed {
			b.success[r.Node.Name] = 0
		}
		if len(bodies) >= batch || i == n-1 {
			if err := pub.PublishAll(ctx, bodies, 0); err != nil {
				return err
			}
			b.messages += len(bodies)
			bodies = bodies[:0]
		}
	}
	b.round++
	return nil
}

// bareRead reads the stream from its first offset until n messages arrived.
func bareRead(ctx context.Context, url, stream string, n int, decode bool) (time.Duration, error) {
	start := time.Now()
	conn, err := amqp.Dial(url)
	if err != nil {
		return 0, err
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
		var d amqp.Delivery
		var ok bool
		select {
		case d, ok = <-dels:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if !ok {
			return 0, fmt.Errorf("bare stream consumer: channel closed after %d", i)
		}
		if decode {
			var v map[string]json.RawMessage
			_ = json.Unmarshal(d.Body, &v)
		}
		if (i+1)%250 == 0 || i == n-1 {
			if err := d.Ack(true); err != nil {
				return 0, err
			}
		}
	}
	return time.Since(start), nil
}

// restartRun is one exporter process started by restart.
type restartRun struct {
	cmd       *exec.Cmd
	done      chan struct{}
	logPath   string
	ready     time.Duration
	served    int // nodes with a last run served at ready
	wrong     int // of which not the truth, plus nodes missing
	replayed  int // history messages replayed (its log)
	heapInUse float64
}

// stop sends SIGTERM (the exporter writes a last snapshot) and waits.
func (r restartRun) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
	if os.Getenv("RUNLENS_BENCH_KEEP_LOGS") == "" {
		os.Remove(r.logPath)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (r restartRun) kill() {
	_ = r.cmd.Process.Kill()
	<-r.done
	if os.Getenv("RUNLENS_BENCH_KEEP_LOGS") == "" {
		os.Remove(r.logPath)
	}
}

var benchReplayedRE = regexp.MustCompile(`msg="history replayed".* reports=(\d+)`)

// restart starts an exporter on the bed's history and waits until it is
// ready, then checks its per-node series against the truth.
func (b *restartBed) restart(ctx context.Context, bin string) (restartRun, error) {
	addr, err := freeAddr()
	if err != nil {
		return restartRun{}, err
	}
	logf, err := os.CreateTemp("", "runlens-bench-exporter-*.log")
	if err != nil {
		return restartRun{}, err
	}
	r := restartRun{logPath: logf.Name(), done: make(chan struct{})}
	r.cmd = exec.Command(bin, "--amqp.url="+b.url, "--amqp.exchange="+b.queueExchange, "--amqp.queue="+b.queue,
		"--history.stream="+b.stream, "--web.listen-address="+addr, "--log.level=info")
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	start := time.Now()
	if err := r.cmd.Start(); err != nil {
		logf.Close()
		return r, err
	}
	logf.Close()
	go func() {
		_ = r.cmd.Wait()
		close(r.done)
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := start.Add(30 * time.Minute)
	for {
		resp, err := client.Get("http://" + addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.kill()
			return r, fmt.Errorf("exporter not ready after %s", time.Since(start).Round(time.Second))
		}
		select {
		case <-r.done:
			logs, _ := os.ReadFile(r.logPath)
			return r, fmt.Errorf("exporter exited:\n%s", logs)
		default:
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.ready = time.Since(start)
	if err := b.check(client, addr, &r); err != nil {
		r.kill()
		return r, err
	}
	logs, _ := os.ReadFile(r.logPath)
	if m := benchReplayedRE.FindSubmatch(logs); m != nil {
		r.replayed, _ = strconv.Atoi(string(m[1]))
	}
	return r, nil
}

// check scrapes the exporter once and compares every node's last run with
// the truth.
func (b *restartBed) check(client *http.Client, addr string, r *restartRun) error {
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	seen := make(map[string]bool, b.nodes)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var truth map[string]float64
		switch {
		case strings.HasPrefix(line, "runlens_last_run_timestamp_seconds{"):
			truth = b.lastEnd
		case strings.HasPrefix(line, "runlens_last_run_success{"):
			truth = b.success
		case strings.HasPrefix(line, "go_memstats_heap_inuse_bytes "):
			r.heapInUse, _ = strconv.ParseFloat(strings.TrimPrefix(line, "go_memstats_heap_inuse_bytes "), 64)
			continue
		default:
			continue
		}
		node, value, ok := nodeValue(line)
		want, known := truth[node]
		if !ok || !known || value != want {
			r.wrong++
		}
		if strings.HasPrefix(line, "runlens_last_run_timestamp_seconds{") {
			seen[node] = true
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	r.served = len(seen)
	r.wrong += b.nodes - len(seen)
	return nil
}

// nodeValue parses `name{node="n",…} value` as the FleetWriter writes it
// (node first, names from the simulator need no unescaping).
func nodeValue(line string) (string, float64, bool) {
	_, rest, ok := strings.Cut(line, `{node="`)
	if !ok {
		return "", 0, false
	}
	node, rest, ok := strings.Cut(rest, `"`)
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, ' ')
	v, err := strconv.ParseFloat(rest[i+1:], 64)
	return node, v, err == nil
}

// waitSnapshot waits for a snapshot covering offset on the bed's snapshot
// stream.
func (b *restartBed) waitSnapshot(ctx context.Context, offset int64) (snapshot.Info, error) {
	cfg := b.snapshotConfig()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		info, err := snapshot.Load(ctx, cfg, snapshot.LoadOptions{}, func(*fleet.Node) {})
		if err == nil && info.Covers >= offset {
			return info, nil
		}
		if time.Now().After(deadline) {
			return info, fmt.Errorf("no snapshot covering offset %d after 10 minutes (last: %+v, %v)", offset, info, err)
		}
		time.Sleep(time.Second)
	}
}

func (b *restartBed) snapshotConfig() snapshot.Config {
	return snapshot.Config{URL: b.url, Stream: snapshot.Stream("", b.stream), History: b.stream,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// loadHeap loads the newest snapshot into a new fleet state in this process
// and returns the heap it holds and the time the load took.
func (b *restartBed) loadHeap(ctx context.Context) (uint64, time.Duration, error) {
	before := heapInUse()
	state := fleet.New(fleet.Options{DedupWindow: 1})
	start := time.Now()
	now := time.Now()
	if _, err := snapshot.Load(ctx, b.snapshotConfig(), snapshot.LoadOptions{}, func(n *fleet.Node) { state.Import(n, now) }); err != nil {
		return 0, 0, err
	}
	took := time.Since(start)
	after := heapInUse()
	if state.Len() != b.nodes {
		return 0, 0, fmt.Errorf("snapshot holds %d nodes, want %d", state.Len(), b.nodes)
	}
	return after - min(before, after), took, nil
}

func (b *restartBed) cleanup() {
	conn, err := amqp.Dial(b.url)
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	for _, q := range []string{b.stream, b.stream + snapshot.StreamSuffix, b.queue, b.queue + ".dead"} {
		_, _ = ch.QueueDelete(q, false, false, false)
	}
	for _, e := range []string{b.exchange, b.queueExchange, b.queue + ".dlx"} {
		_ = ch.ExchangeDelete(e, false, false)
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// dsStart is what a datasource start looked like.
type dsStart struct {
	ready, older time.Duration // topology whole (caught up), older history loaded
	replayed     uint64        // history messages before caught up
	wrong        string        // the by-role topology against the truth, "" when right
}

// datasource starts a datasource instance on the bed's history (as Grafana
// would, through the plugin's factory) and waits until its replay caught up
// (its current topology whole), checks the topology by role (nodes and
// failed nodes of every role) against the truth, then waits for the older
// history.
func (b *restartBed) datasource(ctx context.Context) (dsStart, error) {
	var res dsStart
	u, err := neturl.Parse(b.url)
	if err != nil {
		return res, err
	}
	secure := map[string]string{}
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			secure["amqpPassword"] = pw
			u.User = neturl.User(u.User.Username())
		}
	}
	jd, _ := json.Marshal(map[string]any{"amqpUrl": u.String(), "exchange": b.exchange, "stream": b.stream, "replay": "24h"})
	start := time.Now()
	// Errors only: the bench sized the stream, which the plugin warns about.
	i, err := plugin.Factory(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))(ctx,
		backend.DataSourceInstanceSettings{UID: "runlens-bench", Name: "runlens-bench", JSONData: jd, DecryptedSecureJSONData: secure})
	if err != nil {
		return res, err
	}
	inst := i.(*plugin.Instance)
	defer inst.Dispose()
	deadline := start.Add(30 * time.Minute)
	for {
		n, caughtUp := inst.Replayed()
		if caughtUp {
			res.ready, res.replayed = time.Since(start), n
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("not caught up after %s", time.Since(start).Round(time.Second))
		}
		time.Sleep(10 * time.Millisecond)
	}
	raw, _ := json.Marshal(map[string]any{"queryType": "topology", "groupBy": "role"})
	resp, err := inst.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{{RefID: "A", JSON: raw,
		TimeRange: backend.TimeRange{From: time.Now().Add(-time.Hour), To: time.Now()}}}})
	if err != nil {
		return res, err
	}
	res.wrong = b.checkRoles(resp.Responses["A"])
	for inst.OlderHistoryLoading() {
		if time.Now().After(deadline) {
			return res, errors.New("older history still loading after 30 minutes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	res.older = time.Since(start)
	return res, nil
}

// checkRoles compares a by-role topology (subtitle "N nodes", mainstat "F
// failed") with the truth.
func (b *restartBed) checkRoles(r backend.DataResponse) string {
	if r.Error != nil {
		return r.Error.Error()
	}
	want := map[string][2]int{}
	for _, n := range b.sim.Nodes {
		failed := 0
		if b.success[n.Name] == 0 {
			failed = 1
		}
		for _, role := range []string{"base", n.Role} {
			c := want[role]
			want[role] = [2]int{c[0] + 1, c[1] + failed}
		}
	}
	var nodes *data.Frame
	for _, f := range r.Frames {
		if f.Name == "nodes" {
			nodes = f
		}
	}
	if nodes == nil {
		return "no nodes frame"
	}
	field := func(name string) *data.Field {
		f, _ := nodes.FieldByName(name)
		return f
	}
	id, sub, main := field("id"), field("subtitle"), field("mainstat")
	if id == nil || sub == nil || main == nil {
		return "nodes frame without id, subtitle or mainstat"
	}
	got := map[string][2]int{}
	for i := range nodes.Rows() {
		var c [2]int
		fmt.Sscanf(fmt.Sprint(sub.At(i)), "%d", &c[0])
		fmt.Sscanf(fmt.Sprint(main.At(i)), "%d", &c[1])
		got[fmt.Sprint(id.At(i))] = c
	}
	var wrong []string
	for role, w := range want {
		if got[role] != w {
			wrong = append(wrong, fmt.Sprintf("%s %v want %v (nodes, failed)", role, got[role], w))
		}
	}
	return strings.Join(wrong, "; ")
}
