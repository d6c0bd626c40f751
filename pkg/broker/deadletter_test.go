package broker

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/internal/rabbittest"
)

// rejectAll runs a consumer on top whose handler dead-letters every message,
// and returns it with the count of messages handled.
func rejectAll(t *testing.T, top Topology) (*running, *atomic.Int64) {
	t.Helper()
	log, _ := testLogger(t)
	var handled atomic.Int64
	r := startConsumer(t, ConsumerConfig{URL: rabbittest.URL, Topology: top, Prefetch: 16, Logger: log},
		func(_ context.Context, m Message) error { handled.Add(1); return DeadLetter("garbage") })
	rabbittest.WaitFor(t, 10*time.Second, "consumer to consume", r.c.Consuming)
	return r, &handled
}

// flood publishes n messages to top's exchange and waits until the consumer
// handled them all and the queue is empty: whatever the dead-letter queue
// did, the main queue never blocks.
func flood(t *testing.T, top Topology, handled *atomic.Int64, n int, body string) {
	t.Helper()
	want := handled.Load() + int64(n)
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = []byte(body)
	}
	rabbittest.Publish(t, top.Exchange, msgs...)
	rabbittest.WaitFor(t, 60*time.Second, "every message handled and the queue empty", func() bool {
		return handled.Load() >= want && rabbittest.MessageCount(t, top.Queue) == 0
	})
}

// assertStopsGrowing floods the queue twice and checks that the dead-letter
// queue holds at most limit+slack after the first flood, not one more after
// the second, and that every message is either there or counted as dropped.
// A quorum queue may overshoot its limit by the messages in flight when it
// fills (RabbitMQ 3.10 site/quorum-queues.md, "Queue Length Limit"); the
// consumer has one dead letter in flight at a time.
func assertStopsGrowing(t *testing.T, top Topology, r *running, handled *atomic.Int64, limit int, body string) {
	t.Helper()
	const slack = 1
	flood(t, top, handled, 3*limit, body)
	held := rabbittest.MessageCount(t, top.DeadLetterQueue)
	if held < limit || held > limit+slack {
		t.Errorf("dead-letter queue holds %d after a flood of %d, want %d (+%d)", held, 3*limit, limit, slack)
	}
	flood(t, top, handled, 2*limit, body)
	if again := rabbittest.MessageCount(t, top.DeadLetterQueue); again != held {
		t.Errorf("dead-letter queue grew from %d to %d at its limit", held, again)
	}
	if dropped := r.c.DeadLettersDropped(); int(dropped)+held != 5*limit {
		t.Errorf("dropped %d + held %d != %d dead-lettered", dropped, held, 5*limit)
	}
}

func TestDeadLetterQueueBoundedByLength(t *testing.T) {
	top := testTopology(t)
	top.DeadLetterMaxLength = 10
	r, handled := rejectAll(t, top)
	assertStopsGrowing(t, top, r, handled, 10, "not a report")
	// What it holds is the first dead letters, with their reason.
	d := rabbittest.Get(t, top.DeadLetterQueue, 1)
	if len(d) != 1 || d[0].Headers[HeaderReason] != "garbage" {
		t.Errorf("dead letter: %+v", d)
	}
}

func TestDeadLetterQueueBoundedByBytes(t *testing.T) {
	top := testTopology(t)
	top.DeadLetterMaxBytes = 1000 // bodies of 100 bytes: 10 fit
	r, handled := rejectAll(t, top)
	assertStopsGrowing(t, top, r, handled, 10, strings.Repeat("x", 100))
}

// The queue is declared with x-max-length, x-max-length-bytes and
// x-overflow reject-publish, and a redeclare without them is refused: the
// bounds are the broker's, not only ours.
func TestDeadLetterQueueArguments(t *testing.T) {
	top := testTopology(t)
	declare(t, top)
	_, err := rabbittest.Channel(t).QueueDeclare(top.DeadLetterQueue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	if !isCode(err, amqp.PreconditionFailed) || !strings.Contains(err.Error(), "x-max-length") {
		t.Errorf("redeclare without bounds: %v, want 406 naming x-max-length", err)
	}
	args := top.DeadLetterArguments()
	if args["x-max-length"] != DefaultDeadLetterMaxLength || args["x-max-length-bytes"] != DefaultDeadLetterMaxBytes || args["x-overflow"] != "reject-publish" {
		t.Errorf("default arguments %v", args)
	}
	top.DeadLetterMaxLength, top.DeadLetterMaxBytes = -1, -1
	if args := top.DeadLetterArguments(); len(args) != 1 {
		t.Errorf("with both bounds unset: %v, want x-queue-type alone", args)
	}
}

// Upgrading over a dead-letter queue declared before the bounds (quorum, no
// length arguments): the consumer starts anyway, warns with the migration,
// and dead-letters to the existing queue; the operator's policy then bounds
// it, and a flood stops growing it at the policy's limit.
func TestDeadLetterQueueDeclaredTheOldWay(t *testing.T) {
	top := testTopology(t)
	ch := rabbittest.Channel(t)
	if _, err := ch.QueueDeclare(top.DeadLetterQueue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	log, logs := testLogger(t)
	var handled atomic.Int64
	r := startConsumer(t, ConsumerConfig{URL: rabbittest.URL, Topology: top, Prefetch: 16, Logger: log},
		func(_ context.Context, m Message) error { handled.Add(1); return DeadLetter("garbage") })
	rabbittest.WaitFor(t, 10*time.Second, "consumer to consume over the old queue", r.c.Consuming)
	if !strings.Contains(logs.String(), "dead-letter queue exists with other length bounds") || !strings.Contains(logs.String(), "set_policy") {
		t.Errorf("no migration warning:\n%s", logs)
	}
	flood(t, top, &handled, 30, "x")
	if n := rabbittest.MessageCount(t, top.DeadLetterQueue); n != 30 {
		t.Fatalf("old, unbounded queue holds %d dead letters, want all 30", n)
	}

	// The policy of the README, on this queue's exact name.
	policy := rabbittest.Name(t, "runlens-test-dlq-")
	pattern := "^" + regexp.QuoteMeta(top.DeadLetterQueue) + "$"
	rabbitctl(t, "set_policy", "--apply-to", "queues", "--priority", "10", policy, pattern, `{"max-length":40,"overflow":"reject-publish"}`)
	t.Cleanup(func() { _ = exec.Command("rabbitmqctl", "-q", "clear_policy", policy).Run() })
	rabbittest.WaitFor(t, 30*time.Second, "policy applied to the queue", func() bool {
		out, err := exec.Command("rabbitmqctl", "-q", "list_queues", "name", "policy").CombinedOutput()
		return err == nil && strings.Contains(string(out), top.DeadLetterQueue+"\t"+policy)
	})
	// 30 held: with a limit of 40 the next flood fills it and stops.
	flood(t, top, &handled, 40, "x")
	held := rabbittest.MessageCount(t, top.DeadLetterQueue)
	flood(t, top, &handled, 40, "x")
	if again := rabbittest.MessageCount(t, top.DeadLetterQueue); again != held || held > 41 {
		t.Errorf("under the policy the queue held %d, then %d (limit 40)", held, again)
	}
	if dropped := r.c.DeadLettersDropped(); int(dropped)+held != 110 {
		t.Errorf("dropped %d + held %d != 110 dead-lettered", dropped, held)
	}

	// With the bounds left to the policy (the flags at 0), the old queue
	// matches the declaration: no warning.
	_ = r.stop(t)
	top.DeadLetterMaxLength, top.DeadLetterMaxBytes = -1, -1
	log2, logs2 := testLogger(t)
	r2 := startConsumer(t, ConsumerConfig{URL: rabbittest.URL, Topology: top, Logger: log2},
		func(_ context.Context, m Message) error { return nil })
	rabbittest.WaitFor(t, 10*time.Second, "consumer with the bounds left to the policy", r2.c.Consuming)
	if strings.Contains(logs2.String(), "other length bounds") {
		t.Errorf("warning although the declaration matches:\n%s", logs2)
	}
}

func rabbitctl(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
	}
}
