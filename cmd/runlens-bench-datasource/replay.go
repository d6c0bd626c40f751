package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/datasource/plugin"
	"github.com/runlens/runlens/internal/benchutil"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/simulator"
)

func benchReplay(ctx context.Context, w io.Writer, cfg config, names *names) error {
	exchange, stream := names.add("replay")
	fmt.Fprintf(w, "== 4. history replay: %d reports preloaded into a stream, read %d times by each reader, interleaved\n",
		cfg.replayReports, cfg.replayRepeat)
	fmt.Fprintf(w, "   bare: amqp091-go stream consumer, x-stream-offset \"first\", the best of qos prefetch %v, acks batched (one\n"+
		"   multiple ack per 64 messages, or sooner when none is waiting), until %d messages; \"map\" JSON-decodes each message's\n"+
		"   top level (encoding/json into map[string]json.RawMessage), \"decoder\" decodes it as the plugin does\n"+
		"   (report.Decoder: the same decode work, without applying the run)\n"+
		"   plugin: a new datasource instance (replay 24h) until its fleet has applied them: the first time Instance.Replayed()\n"+
		"   (polled every %s) counts all %d handled, each decoded and applied to the fleet and the runs; it must then report\n"+
		"   caught up, which it does once its idle wait (%s) passed after the last message handled with none received, with the\n"+
		"   same count (a pass without that is an error). Both readers are timed from before connecting\n",
		bareReplayPrefetch, cfg.replayReports, pollEvery, cfg.replayReports, replayIdleAfter)

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

	var bareMap, bareDec, plug []float64
	for i := range cfg.replayRepeat {
		var bm, bd, p float64
		var pr replayed
		for attempt := 1; ; attempt++ {
			// Run order alternates between passes.
			if i%2 == 0 {
				if bm, err = replayBareBest(cfg.url, stream, cfg.replayReports, false); err == nil {
					bd, err = replayBareBest(cfg.url, stream, cfg.replayReports, true)
				}
				if err == nil {
					p, pr, err = replayPlugin(ctx, cfg, exchange, stream)
				}
			} else {
				if p, pr, err = replayPlugin(ctx, cfg, exchange, stream); err == nil {
					bd, err = replayBareBest(cfg.url, stream, cfg.replayReports, true)
				}
				if err == nil {
					bm, err = replayBareBest(cfg.url, stream, cfg.replayReports, false)
				}
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
		bareMap, bareDec, plug = append(bareMap, bm), append(bareDec, bd), append(plug, p)
		fmt.Fprintf(w, "  pass %d: bare map %8.0f msg/s   bare decoder %8.0f msg/s   plugin %8.0f msg/s (all handled after %s; caught up %s later)\n",
			i+1, bm, bd, p, pr.handled.Round(time.Millisecond), (pr.caughtUp - pr.handled).Round(time.Millisecond))
	}
	bm, bd, p := benchutil.Median(bareMap), benchutil.Median(bareDec), benchutil.Median(plug)
	fmt.Fprintf(w, "replay rate (median of %d)  bare map %8.0f msg/s   bare decoder %8.0f msg/s   plugin %8.0f msg/s   ratio %.2f (vs map) / %.2f (vs decoder)\n",
		cfg.replayRepeat, bm, bd, p, p/bm, p/bd)
	fmt.Fprintf(w, "target: replay ≥ 0.8 of the bare rate with the same decoding: %.2f  %s\n\n", p/bd, verdict(p/bd >= 0.8))
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

// bareReplayPrefetch are the prefetch counts the bare reader tries; the
// best counts.
var bareReplayPrefetch = []int{1000, 2000}

// replayBareBest is the bare reader's best rate over bareReplayPrefetch.
func replayBareBest(url, stream string, n int, decode bool) (float64, error) {
	best := 0.0
	for _, prefetch := range bareReplayPrefetch {
		r, err := replayBare(url, stream, n, prefetch, decode)
		if err != nil {
			return 0, err
		}
		best = max(best, r)
	}
	return best, nil
}

// replayBare is the broker-bound baseline. It returns messages per second.
func replayBare(url, stream string, n, prefetch int, decode bool) (float64, error) {
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
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return 0, err
	}
	dels, err := ch.Consume(stream, "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
	if err != nil {
		return 0, err
	}
	dec := report.Decoder{MaxBytes: report.DefaultMaxBytes}
	pending := 0
	for i := range n {
		d, ok := <-dels
		if !ok {
			return 0, fmt.Errorf("%w: bare consumer's channel closed after %d messages", errDisturbed, i)
		}
		if decode {
			_, _ = dec.Decode(d.Body)
		} else {
			var v map[string]json.RawMessage
			_ = json.Unmarshal(d.Body, &v)
		}
		if pending++; pending == 64 || len(dels) == 0 || i == n-1 {
			if err := d.Ack(true); err != nil {
				return 0, err
			}
			pending = 0
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
