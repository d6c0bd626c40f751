package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/internal/benchutil"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/simulator"
)

func benchLatency(ctx context.Context, w io.Writer, cfg config, names *names) error {
	exchange, stream := names.add("live")
	total := int(math.Round(cfg.latencyDuration.Seconds() * float64(cfg.rate)))
	fmt.Fprintf(w, "== 2. publish → frame latency: %d reports/s for %s (%d reports over %d nodes, round robin), liveInterval %s\n",
		cfg.rate, cfg.latencyDuration, total, cfg.latencyNodes, cfg.liveInterval)
	fmt.Fprintf(w, "   latency of a report = arrival of the first frame whose row for the report's node shows that run or a later one\n"+
		"   (each report's run lasts 1 s + its sequence number in ms, shown in the live frame's detail__duration)\n"+
		"   − the time just before the report was handed to broker.Publisher. A frame arrives when RunStream hands it,\n"+
		"   built and JSON-encoded, to the StreamSender (Grafana itself is not in the loop). Publishing waits for confirms,\n"+
		"   in batches every 10 ms.\n")

	if err := declareHistory(cfg.url, exchange, stream); err != nil {
		return err
	}
	bodies, nodeIndex := latencyReports(cfg, total)

	hook := newLogHook()
	// By node whatever the fleet's size.
	inst, err := newInstanceWith(ctx, cfg, hook, exchange, stream, "1h", map[string]any{"groupByRoleAbove": 2 * cfg.latencyNodes})
	if err != nil {
		return err
	}
	defer inst.Dispose()
	if _, err := waitReplayed(inst, 0, 15*time.Second); err != nil {
		return err
	}

	// RunStream on the unfiltered view's nodes channel, by node.
	rec := &recorder{packets: make(chan packet, 1024)}
	path, _, err := viewPaths(ctx, inst, map[string]any{"queryType": "topology", "groupBy": "node"})
	if err != nil {
		return err
	}
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
// run (unique run_id, so none is a duplicate) lasting markerBase + its
// sequence number in milliseconds. nodeIndex maps node names to their
// index.
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
		m["run_elapsed_time"] = (markerBase + time.Duration(seq)*time.Millisecond).Seconds()
		b, err := json.Marshal(m)
		if err != nil {
			panic(err)
		}
		bodies[seq] = b
	}
	return bodies, nodeIndex
}

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
	ids, durations := field(&f, "id"), field(&f, "detail__duration")
	if ids == nil || durations == nil {
		l.badFrames++
		return
	}
	l.lastRows = f.Rows()
	for row := range ids.Len() {
		name, _ := ids.ConcreteAt(row)
		res, _ := durations.ConcreteAt(row)
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

// markerSeq reads a report's sequence number back from its run's
// duration as the frame shows it.
func markerSeq(s string) (int, bool) {
	d, err := time.ParseDuration(s)
	if err != nil || d < markerBase {
		return 0, false
	}
	return int((d - markerBase) / time.Millisecond), true
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
