package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/exporter/collector"
	"github.com/runlens/runlens/exporter/ingest"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

// bareAckEvery is how many deliveries a bare consumer acks at once (one
// basic.ack with multiple=true), as the exporter acks at most 64 at once.
const bareAckEvery = 64

// decodeMap is what a competent engineer's consumer does with a report:
// encoding/json into a map.
func decodeMap(b []byte) {
	var m map[string]any
	_ = json.Unmarshal(b, &m)
}

// decodeRunlens is the exporter's decode alone: the bare consumer with it
// isolates the cost of the rest of the exporter's pipeline.
func decodeRunlens(b []byte) { _, _ = report.Decode(b) }

// drainBare is a bare amqp091-go consumer: qos, consume, decode (if decode
// is not nil) and ack every bareAckEvery deliveries with multiple, on one
// goroutine. It returns n / (last handled − first delivery).
func drainBare(url, queue string, n, prefetch int, decode func([]byte)) (float64, error) {
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
	dels, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	var start time.Time
	for i := range n {
		d, ok := <-dels
		if !ok {
			return 0, fmt.Errorf("bare consumer: channel closed after %d", i)
		}
		if i == 0 {
			start = time.Now()
		}
		if decode != nil {
			decode(d.Body)
		}
		if (i+1)%bareAckEvery == 0 || i == n-1 {
			if err := d.Ack(true); err != nil {
				return 0, err
			}
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// exporterOpts is how a benchmark wires the exporter: as serve does with its
// flag defaults, but for these.
type exporterOpts struct {
	prefetch  int
	noDeclare bool // consume a queue declared beforehand (a classic one)
	first     func()
}

// exporterConsumer is the exporter's consumer and pipeline, as serve wires
// them, with a hook called after each handled message.
func exporterConsumer(url string, topo broker.Topology, prefetch int, state *fleet.State, reg prometheus.Registerer, log *slog.Logger, after func()) *broker.Consumer {
	return newExporterConsumer(url, topo, exporterOpts{prefetch: prefetch}, state, reg, log, after)
}

func newExporterConsumer(url string, topo broker.Topology, o exporterOpts, state *fleet.State, reg prometheus.Registerer, log *slog.Logger, after func()) *broker.Consumer {
	metrics := collector.NewIngestMetrics(reg, 100, collector.DefaultMaxEnvironments)
	p := ingest.New(report.Decoder{MaxBytes: report.DefaultMaxBytes}, state, metrics, log, nil)
	prepare := p.Prepare
	if o.first != nil {
		prepare = func(b []byte) any {
			o.first()
			return p.Prepare(b)
		}
	}
	return broker.NewConsumer(broker.ConsumerConfig{
		URL: url, Topology: topo, Prefetch: o.prefetch, Logger: log, NoDeclare: o.noDeclare,
		Prepare: prepare, PrepareBytes: report.DefaultMaxBytes, MaxInflightBytes: broker.DefaultMaxInflightBytes,
	}, func(ctx context.Context, m broker.Message) error {
		err := p.Handle(ctx, m)
		after()
		return err
	})
}

// drainExporter runs the exporter's own consumer and pipeline over n
// preloaded reports: n / (last handled − first decode started).
func drainExporter(url string, topo broker.Topology, n int, o exporterOpts, log *slog.Logger) (float64, error) {
	var done, first atomic.Int64
	finished := make(chan time.Time, 1)
	o.first = func() { first.CompareAndSwap(0, time.Now().UnixNano()) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newExporterConsumer(url, topo, o, fleet.New(fleet.Options{}), prometheus.NewRegistry(), log, func() {
		if done.Add(1) == int64(n) {
			finished <- time.Now()
		}
	})
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	var end time.Time
	select {
	case end = <-finished:
	case err := <-errc:
		return 0, fmt.Errorf("exporter consumer stopped: %v", err)
	case <-time.After(10 * time.Minute):
		return 0, fmt.Errorf("exporter drained only %d of %d", done.Load(), n)
	}
	cancel()
	if err := <-errc; err != nil {
		return 0, err
	}
	return float64(n) / end.Sub(time.Unix(0, first.Load())).Seconds(), nil
}
