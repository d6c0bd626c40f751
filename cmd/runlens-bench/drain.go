package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/exporter/collector"
	"github.com/runlens/runlens/exporter/ingest"
	"github.com/runlens/runlens/internal/benchutil"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

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
