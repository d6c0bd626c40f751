//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/pkg/broker"
)

// TestThreeNodeCluster runs three extra RabbitMQ nodes clustered together
// and stops the node leading the exporter's quorum queue and the history
// stream while reports are published:
//
//   - a first exporter, pointed at the third node, declares the quorum queue
//     and the stream (leaders are placed on the declaring client's node) and
//     stops; the node that leads the queue is the victim;
//   - a second exporter consumes through one of the other nodes, the
//     publisher (32 concurrent publishes with confirms, one run per distinct
//     node, retried until confirmed) goes through the last one;
//   - at ~30% confirmed, `rabbitmqctl stop_app` on the victim; publishing
//     goes on while the queue and the stream elect new leaders.
//
// Assertions: every confirmed report is counted by the exporter exactly
// once, nothing is rejected or dead-lettered, the queue is empty; a stream
// reader (broker.Replay from the first message) on a surviving node sees
// every confirmed node; after start_app the cluster has three running nodes
// again, the queue and the stream have all three members online, and a
// stream reader on the restarted node sees every confirmed node too.
func TestThreeNodeCluster(t *testing.T) {
	const total = 20_000
	const workers = 32
	home := erlangHome(t)
	conf := "listeners.tcp.default = 127.0.0.1:%PORT%\n"
	nodes := startRabbitNodes(t, home, "rl", conf, conf, conf)
	clusterStart := time.Now()
	for _, n := range nodes[1:] {
		n.joinCluster(nodes[0])
	}
	waitFor(t, 60*time.Second, 200*time.Millisecond, "three running nodes", func() (bool, string) {
		running, err := nodes[0].runningNodes()
		if err != nil {
			return false, err.Error()
		}
		return len(running) == 3, fmt.Sprintf("running: %v", running)
	})
	t.Logf("cluster of 3 formed in %s", time.Since(clusterStart).Round(time.Millisecond))

	n := names{exchange: "faults.cluster.ex", queue: "faults.cluster.q", dlq: "faults.cluster.q.dead", stream: "faults.cluster.hist"}

	// Declare through the third node: it leads the queue and the stream.
	decl := startExporter(t, "declarer", n.args(nodes[2].url())...)
	decl.stop()
	qs, err := nodes[0].queues()
	if err != nil {
		t.Fatal(err)
	}
	q, s := qs[n.queue], qs[n.stream]
	t.Logf("quorum queue %s: leader %s, members %v; stream %s: leader %s, members %v",
		q.Name, q.Leader, q.Members, s.Name, s.Leader, s.Members)
	if len(q.Members) != 3 || len(s.Members) != 3 || q.Type != "quorum" || s.Type != "stream" {
		t.Fatalf("want a quorum queue and a stream with 3 members each, got %+v and %+v", q, s)
	}
	var victim *rabbitNode
	var others []*rabbitNode
	for _, x := range nodes {
		if x.name == q.Leader {
			victim = x
		} else {
			others = append(others, x)
		}
	}
	if victim == nil {
		t.Fatalf("queue leader %q is none of the test's nodes", q.Leader)
	}
	consumeNode, publishNode := others[0], others[1]
	t.Logf("victim %s (leads the queue; the stream leader is %s); exporter on %s, publisher on %s",
		victim.name, s.Leader, consumeNode.name, publishNode.name)

	e := startExporter(t, "exporter", n.args(consumeNode.url(), "--history.replay=0")...)

	// Watch runlens_amqp_up throughout.
	var downSamples, upSamples atomic.Int64
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if s, err := e.scrape("runlens_amqp_up"); err == nil && s.has("runlens_amqp_up") {
				if s.sum("runlens_amqp_up") == 1 {
					upSamples.Add(1)
				} else {
					downSamples.Add(1)
				}
			}
		}
	}()
	defer func() {
		select {
		case <-stopWatch:
		default:
			close(stopWatch)
		}
		<-watchDone
	}()

	pub, err := broker.NewPublisher(context.Background(), publishNode.url(), n.exchange, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	// Publishers: one run per node, retried until confirmed.
	nodeName := func(i int) string { return fmt.Sprintf("cl-%05d", i) }
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	var next, confirmedN, retries atomic.Int64
	confirmed := make([]bool, total)
	var latMu sync.Mutex
	var maxLatency time.Duration
	stopPub := make(chan struct{})
	var stopOnce sync.Once
	stopPublishing := func() { stopOnce.Do(func() { close(stopPub) }) }
	defer stopPublishing()
	var pubWG sync.WaitGroup
	pubStart := time.Now()
	for range workers {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				body := handlerReport(nodeName(i), "prod", fmt.Sprintf("run-%05d", i), end)
				start := time.Now()
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err := pub.Publish(ctx, body, nil)
					cancel()
					if err == nil {
						break
					}
					retries.Add(1)
					select {
					case <-stopPub:
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
				lat := time.Since(start)
				latMu.Lock()
				maxLatency = max(maxLatency, lat)
				latMu.Unlock()
				confirmed[i] = true // each index is written by one goroutine, read after pubWG.Wait
				confirmedN.Add(1)
			}
		}()
	}
	// Longest time with no confirm.
	var stallMu sync.Mutex
	var longestStall time.Duration
	var stallFrom time.Time
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		last, lastAt := int64(-1), time.Now()
		for confirmedN.Load() < total {
			select {
			case <-stopPub:
				return
			case <-time.After(20 * time.Millisecond):
			}
			c := confirmedN.Load()
			if c != last {
				last, lastAt = c, time.Now()
				continue
			}
			stallMu.Lock()
			if d := time.Since(lastAt); d > longestStall {
				longestStall, stallFrom = d, lastAt
			}
			stallMu.Unlock()
		}
	}()

	waitFor(t, 2*time.Minute, 20*time.Millisecond, "30% of the reports confirmed", func() (bool, string) {
		c := confirmedN.Load()
		return c >= total*3/10, fmt.Sprintf("%d confirmed", c)
	})
	stopAt := time.Now()
	atStop := confirmedN.Load()
	victim.mustCtl("stop_app")
	stopped := time.Now()
	t.Logf("stop_app on %s at %d confirmed (%s after the first publish); stop_app took %s",
		victim.name, atStop, stopAt.Sub(pubStart).Round(time.Millisecond), stopped.Sub(stopAt).Round(time.Millisecond))

	// New leaders, as a surviving node sees them.
	waitFor(t, 60*time.Second, 100*time.Millisecond, "new leaders for the queue and the stream", func() (bool, string) {
		qs, err := consumeNode.queues()
		if err != nil {
			return false, err.Error()
		}
		q, s := qs[n.queue], qs[n.stream]
		ok := q.Leader != "" && q.Leader != victim.name && s.Leader != "" && s.Leader != victim.name
		return ok, fmt.Sprintf("queue leader %q, stream leader %q", q.Leader, s.Leader)
	})
	qs, _ = consumeNode.queues()
	t.Logf("new leaders seen %s after stop_app began: queue %s, stream %s; %d confirmed by then",
		time.Since(stopAt).Round(time.Millisecond), qs[n.queue].Leader, qs[n.stream].Leader, confirmedN.Load())

	done := make(chan struct{})
	go func() { pubWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		stopPublishing()
		t.Fatalf("publishing stuck at %d of %d confirmed", confirmedN.Load(), total)
	}
	pubTook := time.Since(pubStart)
	<-samplerDone
	stallMu.Lock()
	t.Logf("published and confirmed %d reports in %s (%.0f/s, %d workers); %d failed publishes retried; "+
		"longest publish %s; longest time without a confirm %s (from %s after stop_app began)",
		total, pubTook.Round(time.Millisecond), float64(total)/pubTook.Seconds(), workers, retries.Load(),
		maxLatency.Round(time.Millisecond), longestStall.Round(time.Millisecond), stallFrom.Sub(stopAt).Round(time.Millisecond))
	stallMu.Unlock()
	var notConfirmed []string
	for i, ok := range confirmed {
		if !ok {
			notConfirmed = append(notConfirmed, nodeName(i))
		}
	}
	if len(notConfirmed) > 0 {
		t.Fatalf("%d reports never confirmed: %s", len(notConfirmed), firstFew(notConfirmed))
	}

	// Every confirmed report counted by the exporter.
	drainStart := time.Now()
	var runs map[string]float64
	waitFor(t, 90*time.Second, 250*time.Millisecond, "the exporter to count every node", func() (bool, string) {
		s, err := e.scrape("runlens_runs_total")
		if err != nil {
			return false, err.Error()
		}
		runs = s.byNode("runlens_runs_total")
		missing := 0
		for i := range total {
			if runs[nodeName(i)] < 1 {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d of %d nodes not counted", missing, total)
	})
	t.Logf("exporter counted all %d nodes %s after the last confirm", total, time.Since(drainStart).Round(time.Millisecond))
	var twice []string
	for i := range total {
		if r := runs[nodeName(i)]; r != 1 {
			twice = append(twice, fmt.Sprintf("%s(%v)", nodeName(i), r))
		}
	}
	if len(twice) > 0 {
		t.Errorf("%d nodes counted more than once: %s", len(twice), firstFew(twice))
	}
	if extra := len(runs) - total; extra != 0 {
		t.Errorf("exporter counted %d unexpected nodes", extra)
	}
	sm := e.mustScrape("runlens_reports_total")
	t.Logf("exporter: %.0f processed, %.0f duplicates (redeliveries and stored retries); runlens_amqp_up samples: %d at 1, %d at 0",
		sm.reports("processed"), sm.reports("duplicate"), upSamples.Load(), downSamples.Load())
	if r := sm.reports("rejected"); r != 0 {
		t.Errorf("%v reports rejected", r)
	}
	close(stopWatch)
	<-watchDone
	e.stop()
	for _, q := range []string{n.queue, n.dlq} {
		if c, err := messageCount(consumeNode.url(), q); err != nil {
			t.Error(err)
		} else if c != 0 {
			t.Errorf("%d messages left in %s", c, q)
		}
	}

	// The stream, read from the first message on a surviving node.
	seen, msgs, took, err := readStream(publishNode.url(), n)
	if err != nil {
		t.Fatalf("replay from %s: %v", publishNode.name, err)
	}
	t.Logf("stream on %s: %d messages, %d distinct nodes, read in %s", publishNode.name, msgs, len(seen), took.Round(time.Millisecond))
	if missing := missingNodes(seen, total, nodeName); len(missing) > 0 {
		t.Errorf("%d confirmed reports not in the stream: %s", len(missing), firstFew(missing))
	}

	// Restart the victim; the cluster converges.
	restart := time.Now()
	victim.mustCtl("start_app")
	victim.mustCtl("await_startup")
	appUp := time.Since(restart)
	waitFor(t, 60*time.Second, 200*time.Millisecond, "three running nodes and every member online", func() (bool, string) {
		running, err := nodes[0].runningNodes()
		if err != nil {
			return false, err.Error()
		}
		qs, err := nodes[0].queues()
		if err != nil {
			return false, err.Error()
		}
		q, s := qs[n.queue], qs[n.stream]
		ok := len(running) == 3 && len(q.Online) == 3 && len(s.Online) == 3 && slices.Contains(q.Online, victim.name) && slices.Contains(s.Online, victim.name)
		return ok, fmt.Sprintf("running %v; queue online %v; stream online %v", running, q.Online, s.Online)
	})
	t.Logf("%s: start_app + await_startup took %s; cluster converged (3 running, all members online) %s after start_app began",
		victim.name, appUp.Round(time.Millisecond), time.Since(restart).Round(time.Millisecond))

	// The restarted node's stream replica caught up.
	waitFor(t, 60*time.Second, 0, "the restarted node's stream replica to hold every report", func() (bool, string) {
		seen, msgs, _, err := readStream(victim.url(), n)
		if err != nil {
			return false, err.Error()
		}
		missing := missingNodes(seen, total, nodeName)
		return len(missing) == 0, fmt.Sprintf("%d messages, %d nodes missing: %s", msgs, len(missing), firstFew(missing))
	})
	t.Logf("stream replay through the restarted node complete %s after start_app began", time.Since(restart).Round(time.Millisecond))
}

// readStream reads the history stream from its first message through url
// (broker.Replay) and returns the nodes seen, the message count and the
// time taken.
func readStream(url string, n names) (map[string]int, int, time.Duration, error) {
	seen := map[string]int{}
	msgs := 0
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := broker.Replay(ctx, broker.ReplayConfig{
		URL: url, History: broker.History{Stream: n.stream, Exchange: n.exchange},
		IdleAfter: time.Second, Logger: slog.New(slog.DiscardHandler),
	}, func(m broker.Message) {
		msgs++
		var r struct {
			Node string `json:"node_name"`
		}
		if err := json.Unmarshal(m.Body, &r); err == nil {
			seen[r.Node]++
		}
	}, nil)
	return seen, msgs, time.Since(start), err
}

func missingNodes(seen map[string]int, total int, name func(int) string) []string {
	var missing []string
	for i := range total {
		if seen[name(i)] == 0 {
			missing = append(missing, name(i))
		}
	}
	return missing
}

// messageCount is the number of ready messages in queue on the broker at url.
func messageCount(url, queue string) (int, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return 0, fmt.Errorf("queue %s: %w", queue, err)
	}
	return q.Messages, nil
}
