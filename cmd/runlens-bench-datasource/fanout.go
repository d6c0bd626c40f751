package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/runlens/runlens/datasource/plugin"
	"github.com/runlens/runlens/internal/benchutil"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/simulator"
)

const (
	// fanoutNodes report round robin, fanoutRate reports a second: every
	// interval changes the fleet, so every interval is due a generation.
	fanoutNodes = 200
	fanoutRate  = 100
)

// countingSender is a RunStream's StreamPacketSender that counts.
type countingSender struct{ packets, bytes atomic.Int64 }

func (c *countingSender) Send(p *backend.StreamPacket) error {
	c.packets.Add(1)
	c.bytes.Add(int64(len(p.Data)))
	return nil
}

func benchFanout(ctx context.Context, w io.Writer, cfg config, names *names) error {
	exchange, stream := names.add("fanout")
	fmt.Fprintf(w, "== 3. fan-out: one live view (unfiltered, by node) followed by %d RunStreams on each of its two channels while %d nodes\n"+
		"   change (%d reports/s, round robin) for %s, liveInterval %s. Counted by the plugin (plugin.LiveStats): generations\n"+
		"   built (each one frame pair from one snapshot), frames JSON-encoded, packets handed to the subscribers' senders\n",
		cfg.subscribers, fanoutNodes, fanoutRate, cfg.fanoutDuration, cfg.liveInterval)
	if err := declareHistory(cfg.url, exchange, stream); err != nil {
		return err
	}
	inst, err := newInstanceWith(ctx, cfg, newLogHook(), exchange, stream, "1h", map[string]any{"groupByRoleAbove": 2 * fanoutNodes})
	if err != nil {
		return err
	}
	defer inst.Dispose()
	if _, err := waitReplayed(inst, 0, 15*time.Second); err != nil {
		return err
	}
	nodesPath, edgesPath, err := viewPaths(ctx, inst, map[string]any{"queryType": "topology"})
	if err != nil {
		return err
	}
	streamCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	var streamErr atomic.Value
	senders := make([]*countingSender, 0, 2*cfg.subscribers)
	for _, path := range []string{nodesPath, edgesPath} {
		for range cfg.subscribers {
			s := &countingSender{}
			senders = append(senders, s)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := inst.RunStream(streamCtx, &backend.RunStreamRequest{Path: path}, backend.NewStreamSender(s)); err != nil {
					streamErr.Store(err)
				}
			}()
		}
	}
	// Every subscriber has its first packet (the view's latest frame).
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range senders {
		for s.packets.Load() == 0 {
			if time.Now().After(deadline) {
				return fmt.Errorf("a subscriber got no first packet")
			}
			time.Sleep(time.Millisecond)
		}
	}
	first := make([]int64, len(senders))
	for i, s := range senders {
		first[i] = s.packets.Load()
	}

	sim := simulator.New(simulator.Config{Nodes: fanoutNodes, Seed: 11, Environments: environments(fanoutNodes),
		Formats: []report.Format{report.FormatChefHandler}})
	total := int(math.Round(cfg.fanoutDuration.Seconds() * fanoutRate))
	bodies := make([][]byte, total)
	base := time.Now()
	for seq := range bodies {
		bodies[seq] = sim.NextRun(seq%fanoutNodes, base.Add(time.Duration(seq)*time.Second/fanoutRate), simulator.Random).Messages[0]
	}
	pub, err := broker.NewPublisher(ctx, cfg.url, exchange, nil)
	if err != nil {
		return err
	}
	before, t0 := plugin.LiveStats(), time.Now()
	_, err = benchutil.PublishPaced(ctx, pub, bodies, fanoutRate, make([]atomic.Int64, total))
	pub.Close()
	if err != nil {
		return err
	}
	after, elapsed := plugin.LiveStats(), time.Since(t0)
	stop()
	wg.Wait()
	if err, ok := streamErr.Load().(error); ok {
		return fmt.Errorf("RunStream: %w", err)
	}
	intervals := elapsed.Seconds() / cfg.liveInterval.Seconds()
	builds, encodes, sends := after.Builds-before.Builds, after.Encodes-before.Encodes, after.Sends-before.Sends
	minGot, maxGot := int64(math.MaxInt64), int64(0)
	var bytes int64
	for i, s := range senders {
		got := s.packets.Load() - first[i]
		minGot, maxGot = min(minGot, got), max(maxGot, got)
		bytes += s.bytes.Load()
	}
	fmt.Fprintf(w, "%.1f intervals: %d generations built (%.2f per interval), %d frames encoded (%.2f per generation), %d packets sent "+
		"(%.1f per generation; each of the %d subscribers got %d to %d)\n",
		intervals, builds, float64(builds)/intervals, encodes, float64(encodes)/float64(max(builds, 1)), sends,
		float64(sends)/float64(max(builds, 1)), len(senders), minGot, maxGot)
	ok := float64(builds) <= math.Ceil(intervals)+1 && encodes <= 2*builds && builds > 0
	fmt.Fprintf(w, "target: one frame pair per interval per filter, whatever the subscribers (≤ 1 generation an interval, ≤ 2 frames encoded a generation): %s\n\n",
		verdict(ok))
	return nil
}
