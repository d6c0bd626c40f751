package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
)

// ---------------------------------------------------------------- 2. sustained

type sustainResult struct {
	published, consumed float64 // per second over the window
	depths              []int   // ready messages, sampled every second
	end                 int     // ready messages at the end of the window
	heldBack            float64 // share of the window the publishers spent waiting for the backlog to shrink
}

// sustain publishes and consumes at the same time for cfg.sustainDuration,
// once with the exporter's pipeline and once with the bare consumer.
func sustain(ctx context.Context, w io.Writer, cfg config, log *slog.Logger) error {
	bodies, tokens, size := simReports(cfg.sustainReports, cfg.nodes)
	fmt.Fprintf(w, "== 2. sustained throughput: %d publishers with confirms for %s, consumer running at the same time\n",
		cfg.sustainPublishers, cfg.sustainDuration)
	fmt.Fprintf(w, "   %d publishers (one connection each) publish in a loop with broker.Publisher.PublishAll, %d reports a call\n"+
		"   (at most 1000 unconfirmed), cycling through %d simulated reports (%d nodes, %.1f KiB average, formats mixed)\n"+
		"   whose run ids are rewritten each cycle, so every report is a new run (none is dropped as a duplicate).\n"+
		"   Sustained throughput is the rate publish and consume keep up together indefinitely: a publisher waits before its\n"+
		"   next call while more than %d reports are published but not yet consumed, so the queue cannot grow without bound\n"+
		"   (publishing flat out, the publishers outrun either consumer on this machine and the queue only grows). published/s\n"+
		"   = reports confirmed within the window / window; consumed/s = reports handled and acked within it; depth = ready\n"+
		"   messages, sampled every second; held back = share of the window the publishers waited for the consumer (near 0:\n"+
		"   the publishers or the broker are the limit, not the consumer). Publishers, broker and consumer share the CPUs.\n",
		cfg.sustainPublishers, cfg.sustainChunk, len(bodies), cfg.nodes, float64(size)/float64(len(bodies))/1024, cfg.sustainBacklog)
	exp, err := sustainOnce(ctx, cfg, bodies, tokens, true, log)
	if err != nil {
		return fmt.Errorf("exporter: %w", err)
	}
	printSustain(w, "exporter", exp)
	bare, err := sustainOnce(ctx, cfg, bodies, tokens, false, log)
	if err != nil {
		return fmt.Errorf("bare: %w", err)
	}
	printSustain(w, "bare    ", bare)
	fmt.Fprintf(w, "sustained consumed/s   bare consumer %8.0f msg/s   exporter %8.0f msg/s   ratio %.2f  (published/s ratio %.2f)\n\n",
		bare.consumed, exp.consumed, exp.consumed/bare.consumed, exp.published/bare.published)
	return nil
}

func printSustain(w io.Writer, name string, r sustainResult) {
	verdict := "bounded"
	half := r.depths[:len(r.depths)/2]
	if len(half) > 0 && r.end > 1000 && r.end > 2*slices.Max(half) {
		verdict = "GROWING"
	}
	var every []string
	step := max(1, len(r.depths)/10)
	for i := step - 1; i < len(r.depths); i += step {
		every = append(every, strconv.Itoa(r.depths[i]))
	}
	fmt.Fprintf(w, "  %s  published %8.0f msg/s   consumed %8.0f msg/s   held back %3.0f%%   queue depth at the end %6d, max %6d (%s); every %ds: %s\n",
		name, r.published, r.consumed, 100*r.heldBack, r.end, slices.Max(append([]int{r.end}, r.depths...)), verdict, step, strings.Join(every, " "))
}

func sustainOnce(ctx context.Context, cfg config, bodies [][]byte, tokens []string, exporter bool, log *slog.Logger) (sustainResult, error) {
	var res sustainResult
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	exchange := "runlens.bench.sustain." + suffix
	topo := broker.Topology{Exchange: exchange, Queue: "runlens.bench.sustain." + suffix}.Defaults()
	conn, err := amqp.Dial(cfg.url)
	if err != nil {
		return res, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return res, err
	}
	if err := broker.Declare(ch, topo); err != nil {
		return res, err
	}
	defer deleteTopology(conn, exchange, []broker.Topology{topo})

	var consumed atomic.Int64
	cctx, stopConsumer := context.WithCancel(ctx)
	defer stopConsumer()
	errc := make(chan error, 1)
	if exporter {
		c := exporterConsumer(cfg.url, topo, cfg.prefetch, fleet.New(fleet.Options{}), prometheus.NewRegistry(), log, func() { consumed.Add(1) })
		go func() { errc <- c.Run(cctx) }()
		for deadline := time.Now().Add(15 * time.Second); !c.Consuming(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				return res, errors.New("exporter consumer did not start")
			}
		}
	} else {
		dels, err := bareConsume(cctx, cfg.url, topo.Queue, cfg.prefetch)
		if err != nil {
			return res, err
		}
		go func() {
			for d := range dels {
				var v map[string]json.RawMessage
				_ = json.Unmarshal(d.Body, &v)
				if err := d.Ack(false); err != nil {
					if cctx.Err() != nil {
						err = nil // stopping: the connection closed under the ack
					}
					errc <- err
					return
				}
				consumed.Add(1)
			}
			errc <- nil
		}()
	}

	var published, claimed, waitedNs atomic.Int64
	var stop atomic.Bool
	var next atomic.Int64 // chunk sequence, shared by the publishers
	var wg sync.WaitGroup
	pubErr := make(chan error, cfg.sustainPublishers)
	for range cfg.sustainPublishers {
		pub, err := broker.NewPublisher(ctx, cfg.url, exchange, log)
		if err != nil {
			return res, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pub.Close()
			chunk := make([][]byte, cfg.sustainChunk)
			for !stop.Load() {
				if claimed.Load()-consumed.Load() > int64(cfg.sustainBacklog) {
					t := time.Now()
					for claimed.Load()-consumed.Load() > int64(cfg.sustainBacklog) && !stop.Load() {
						time.Sleep(time.Millisecond)
					}
					waitedNs.Add(int64(time.Since(t)))
					continue
				}
				claimed.Add(int64(cfg.sustainChunk))
				k := int(next.Add(1) - 1)
				for j := range chunk {
					seq := k*cfg.sustainChunk + j
					chunk[j] = newRun(bodies[seq%len(bodies)], tokens[seq%len(tokens)], seq/len(bodies))
				}
				if err := pub.PublishAll(ctx, chunk, 1000); err != nil {
					pubErr <- err
					return
				}
				published.Add(int64(len(chunk)))
			}
		}()
	}

	depthCh, err := conn.Channel()
	if err != nil {
		return res, err
	}
	depth := func() int {
		q, err := depthCh.QueueDeclarePassive(topo.Queue, true, false, false, false, nil)
		if err != nil {
			return -1
		}
		return q.Messages
	}
	start := time.Now()
	tick := time.NewTicker(time.Second)
	end := time.After(cfg.sustainDuration)
	var failure error
loop:
	for {
		select {
		case <-tick.C:
			res.depths = append(res.depths, depth())
		case <-end:
			break loop
		case err := <-pubErr:
			failure = fmt.Errorf("publisher: %w", err)
			break loop
		case err := <-errc:
			failure = fmt.Errorf("consumer stopped: %v", err)
			break loop
		}
	}
	tick.Stop()
	window := time.Since(start).Seconds()
	p, c, waited := published.Load(), consumed.Load(), waitedNs.Load()
	res.end = depth()
	stop.Store(true)
	wg.Wait()
	stopConsumer()
	if failure == nil {
		if err := <-errc; err != nil {
			failure = fmt.Errorf("consumer: %w", err)
		}
	}
	if failure != nil {
		return res, failure
	}
	res.published, res.consumed = float64(p)/window, float64(c)/window
	res.heldBack = float64(waited) / 1e9 / window / float64(cfg.sustainPublishers)
	if len(res.depths) == 0 {
		res.depths = []int{res.end}
	}
	return res, nil
}

// newRun is body with its run identity rewritten for cycle (cycle 0 is the
// body itself): the first 8 characters of the run_id (a UUID) or jid (digits)
// become the cycle number, so the report is a new run.
func newRun(body []byte, token string, cycle int) []byte {
	if cycle == 0 || len(token) < 8 {
		return body
	}
	return bytes.ReplaceAll(body, []byte(token), []byte(fmt.Sprintf("%08d", cycle%100_000_000)+token[8:]))
}

// bareConsume starts a bare amqp091-go consumer; its deliveries channel
// closes when ctx is done.
func bareConsume(ctx context.Context, url, queue string, prefetch int) (<-chan amqp.Delivery, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Qos(prefetch, 0, false)
	}
	var dels <-chan amqp.Delivery
	if err == nil {
		dels, err = ch.Consume(queue, "", false, false, false, false, nil)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	return dels, nil
}
