package broker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/internal/rabbittest"
)

func TestDeclare(t *testing.T) {
	top := testTopology(t)
	ch := rabbittest.Channel(t)
	if err := Declare(ch, top); err != nil {
		t.Fatalf("Declare: %v", err)
	}
	if err := Declare(ch, top); err != nil {
		t.Fatalf("second Declare: %v", err)
	}

	// Both queues are quorum queues: declaring them as classic is refused.
	for q, args := range map[string]amqp.Table{
		top.Queue: {"x-queue-type": "classic", "x-dead-letter-exchange": top.DeadLetterExchange, "x-delivery-limit": int64(20)},
		top.DeadLetterQueue: {"x-queue-type": "classic", "x-max-length": DefaultDeadLetterMaxLength,
			"x-max-length-bytes": DefaultDeadLetterMaxBytes, "x-overflow": "reject-publish"},
	} {
		ch := rabbittest.Channel(t)
		_, err := ch.QueueDeclare(q, true, false, false, false, args)
		if !isCode(err, amqp.PreconditionFailed) || !strings.Contains(err.Error(), "current is 'quorum'") {
			t.Errorf("declaring %s as classic: got %v, want 406 ... current is 'quorum'", q, err)
		}
	}
	// The queue carries the dead-letter exchange and delivery limit: a
	// redeclare with another limit is refused.
	_, err := rabbittest.Channel(t).QueueDeclare(top.Queue, true, false, false, false, amqp.Table{
		"x-queue-type": "quorum", "x-dead-letter-exchange": top.DeadLetterExchange, "x-delivery-limit": int64(3)})
	if !isCode(err, amqp.PreconditionFailed) || !strings.Contains(err.Error(), "x-delivery-limit") {
		t.Errorf("redeclare with another delivery limit: got %v", err)
	}

	// Bindings: the exchange feeds the queue, the DLX feeds the DLQ.
	rabbittest.Publish(t, top.Exchange, []byte("a"), []byte("b"))
	rabbittest.Publish(t, top.DeadLetterExchange, []byte("c"))
	rabbittest.WaitFor(t, 5*time.Second, "messages routed", func() bool {
		return rabbittest.MessageCount(t, top.Queue) == 2 && rabbittest.MessageCount(t, top.DeadLetterQueue) == 1
	})
}

func TestTopologyDefaults(t *testing.T) {
	got := Topology{}.Defaults()
	want := Topology{Exchange: "chef_reports", Queue: "runlens.exporter", DeadLetterExchange: "runlens.exporter.dlx",
		DeadLetterQueue: "runlens.exporter.dead", DeliveryLimit: 20,
		DeadLetterMaxLength: DefaultDeadLetterMaxLength, DeadLetterMaxBytes: DefaultDeadLetterMaxBytes}
	if got != want {
		t.Errorf("Defaults() = %+v, want %+v", got, want)
	}
	got = Topology{Queue: "q"}.Defaults()
	if got.DeadLetterExchange != "q.dlx" || got.DeadLetterQueue != "q.dead" {
		t.Errorf("Defaults() for queue q = %+v", got)
	}
}

func TestConsumerInOrder(t *testing.T) {
	top := testTopology(t)
	declare(t, top)
	const n = 500
	rabbittest.Publish(t, top.Exchange, bodies("m", 0, n/2)...)

	log, _ := testLogger(t)
	var rec recorder
	r := startConsumer(t, ConsumerConfig{URL: rabbittest.URL, Topology: top, Prefetch: 64, Logger: log},
		func(_ context.Context, m Message) error { rec.add(m); return nil })
	rabbittest.WaitFor(t, 10*time.Second, "consumer to consume", r.c.Consuming)
	if !r.c.Connected() {
		t.Error("Connected() = false while consuming")
	}
	rabbittest.Publish(t, top.Exchange, bodies("m", n/2, n/2)...)
	rabbittest.WaitFor(t, 20*time.Second, "all messages", func() bool { return rec.len() >= n })
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if r.c.Connected() || r.c.Consuming() {
		t.Errorf("after Run returned: Connected %v, Consuming %v", r.c.Connected(), r.c.Consuming())
	}

	got := rec.snapshot()
	if len(got) != n {
		t.Fatalf("handled %d messages, want %d (each exactly once)", len(got), n)
	}
	for i, m := range got {
		if want := fmt.Sprintf("m-%04d", i); string(m.Body) != want || m.Redelivered || m.Offset != -1 || m.Timestamp.IsZero() {
			t.Fatalf("message %d = %q (redelivered %v, offset %d, timestamp %v), want %q, not redelivered, offset -1, timestamp set",
				i, m.Body, m.Redelivered, m.Offset, m.Timestamp, want)
		}
	}
	if c := rabbittest.MessageCount(t, top.Queue); c != 0 {
		t.Errorf("queue holds %d messages after consuming everything, want 0", c)
	}
	if r.c.Reconnects() != 0 {
		t.Errorf("Reconnects() = %d, want 0", r.c.Reconnects())
	}
}

func TestConsumerDeadLetter(t *testing.T) {
	top := testTopology(t)
	declare(t, top)
	poison := []byte("{\"not\": valid json \xff\xfe\x00 \r\n")
	msgs := [][]byte{[]byte("ok-1"), poison, []byte("ok-2")}
	rabbittest.PublishWithHeaders(t, top.Exchange, amqp.Table{"x-origin": "node-7", "x-n": int32(42)}, msgs...)

	log, logs := testLogger(t)
	var rec recorder
	r := startConsumer(t, ConsumerConfig{URL: rabbittest.URL, Topology: top, Logger: log},
		func(_ context.Context, m Message) error {
			rec.add(m)
			if string(m.Body) == string(poison) {
				return fmt.Errorf("decode: %w", DeadLetter("invalid JSON"))
			}
			return nil
		})
	rabbittest.WaitFor(t, 10*time.Second, "3 messages", func() bool { return rec.len() >= 3 })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := rec.bodies(); len(got) != 3 {
		t.Fatalf("handled %q, want each of the 3 once", got)
	}
	if c := rabbittest.MessageCount(t, top.Queue); c != 0 {
		t.Errorf("main queue holds %d messages, want 0", c)
	}
	dead := rabbittest.Get(t, top.DeadLetterQueue, 10)
	if len(dead) != 1 {
		t.Fatalf("dead-letter queue holds %d messages, want 1", len(dead))
	}
	d := dead[0]
	if string(d.Body) != string(poison) {
		t.Errorf("dead-lettered body %q, want %q byte-for-byte", d.Body, poison)
	}
	if d.Headers[HeaderReason] != "invalid JSON" || d.Headers[HeaderQueue] != top.Queue {
		t.Errorf("headers %v: want %s=invalid JSON and %s=%s", d.Headers, HeaderReason, HeaderQueue, top.Queue)
	}
	if d.Headers["x-origin"] != "node-7" || d.Headers["x-n"] != int32(42) {
		t.Errorf("original headers not kept: %v", d.Headers)
	}
	if d.DeliveryMode != amqp.Persistent || d.Timestamp.IsZero() {
		t.Errorf("dead-lettered copy: delivery mode %d, timestamp %v; want persistent and the original timestamp", d.DeliveryMode, d.Timestamp)
	}
	if n := strings.Count(logs.String(), "message dead-lettered"); n != 1 {
		t.Errorf("dead-lettering logged %d times, want once", n)
	}
}

func TestConsumerTransientErrorRequeues(t *testing.T) {
	top := testTopology(t)
	declare(t, top)
	rabbittest.Publish(t, top.Exchange, []byte("a"), []byte("flaky"), []byte("c"))

	log, logs := testLogger(t)
	var rec recorder
	var failures atomic.Int32
	r := startConsumer(t, ConsumerConfig{URL: rabbittest.URL, Topology: top, MinBackoff: 20 * time.Millisecond, Logger: log},
		func(_ context.Context, m Message) error {
			rec.add(m)
			if string(m.Body) == "flaky" && failures.Add(1) <= 2 {
				return errors.New("downstream unavailable")
			}
			return nil
		})
	rabbittest.WaitFor(t, 10*time.Second, "5 deliveries", func() bool { return rec.len() >= 5 })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	var flaky []Message
	for _, m := range rec.snapshot() {
		if string(m.Body) == "flaky" {
			flaky = append(flaky, m)
		}
	}
	if len(flaky) != 3 || flaky[0].Redelivered || !flaky[1].Redelivered || !flaky[2].Redelivered {
		t.Fatalf("flaky deliveries: %+v; want 3, the 2nd and 3rd redelivered", flaky)
	}
	if got := rec.len(); got != 5 {
		t.Errorf("handled %d deliveries, want 5: %q", got, rec.bodies())
	}
	if c := rabbittest.MessageCount(t, top.Queue); c != 0 {
		t.Errorf("queue holds %d messages, want 0", c)
	}
	if len(rabbittest.Get(t, top.DeadLetterQueue, 1)) != 0 {
		t.Error("a transient failure dead-lettered the message")
	}
	if !strings.Contains(logs.String(), "downstream unavailable") {
		t.Error("transient failure not logged")
	}
}

// A message whose handling keeps failing is dead-lettered by the broker once
// it exceeds the delivery limit.
func TestConsumerDeliveryLimit(t *testing.T) {
	top := testTopology(t)
	top.DeliveryLimit = 2
	declare(t, top)
	rabbittest.Publish(t, top.Exchange, []byte("always-fails"), []byte("fine"))

	log, _ := testLogger(t)
	var rec recorder
	r := startConsumer(t, ConsumerConfig{URL: rabbittest.URL, Topology: top, MinBackoff: 10 * time.Millisecond, Logger: log},
		func(_ context.Context, m Message) error {
			rec.add(m)
			if string(m.Body) == "always-fails" {
				return errors.New("boom")
			}
			return nil
		})
	var dead []amqp.Delivery
	rabbittest.WaitFor(t, 15*time.Second, "broker to dead-letter the message", func() bool {
		dead = append(dead, rabbittest.Get(t, top.DeadLetterQueue, 1)...)
		return len(dead) == 1
	})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if string(dead[0].Body) != "always-fails" {
		t.Errorf("dead-lettered %q", dead[0].Body)
	}
	attempts := 0
	for _, b := range rec.bodies() {
		if b == "always-fails" {
			attempts++
		}
	}
	if attempts != 3 {
		t.Errorf("handler saw the failing message %d times, want 3 (delivery limit 2)", attempts)
	}
	if c := rabbittest.MessageCount(t, top.Queue); c != 0 {
		t.Errorf("queue holds %d messages, want 0", c)
	}
}

func TestConsumerReconnect(t *testing.T) {
	t.Parallel()
	top := testTopology(t)
	declare(t, top)
	proxy := rabbittest.NewProxy(t)
	log, logs := testLogger(t)

	const n = 600
	var rec recorder
	r := startConsumer(t, ConsumerConfig{
		URL: proxy.URL(), Topology: top, Prefetch: 20,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond, Logger: log,
	}, func(_ context.Context, m Message) error {
		time.Sleep(2 * time.Millisecond)
		rec.add(m)
		return nil
	})
	rabbittest.WaitFor(t, 10*time.Second, "consumer to consume", r.c.Consuming)

	// Publish directly to the broker, in a steady stream.
	pub, err := NewPublisher(context.Background(), rabbittest.URL, top.Exchange, log)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	pubDone := make(chan error, 1)
	go func() {
		for i := 0; i < n; i += 20 {
			if err := pub.PublishAll(context.Background(), bodies("m", i, 20), 0); err != nil {
				pubDone <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		pubDone <- nil
	}()

	var cutAt []int
	cut := func() {
		rec.mu.Lock()
		cutAt = append(cutAt, len(rec.msgs))
		proxy.CutAll()
		rec.mu.Unlock()
	}

	rabbittest.WaitFor(t, 20*time.Second, "first third", func() bool { return rec.len() >= n/3 })
	cut()
	rabbittest.WaitFor(t, 10*time.Second, "reconnect after cut", func() bool { return r.c.Reconnects() >= 1 && r.c.Consuming() })

	rabbittest.WaitFor(t, 20*time.Second, "second third", func() bool { return rec.len() >= 2*n/3 })
	proxy.Pause()
	cut()
	rabbittest.WaitFor(t, 5*time.Second, "Connected() false", func() bool { return !r.c.Connected() })
	time.Sleep(time.Second)
	if r.c.Connected() || r.c.Consuming() {
		t.Fatal("connected while the proxy refuses connections")
	}
	proxy.Resume()
	rabbittest.WaitFor(t, 10*time.Second, "reconnect after pause", func() bool {
		return r.c.Reconnects() >= 2 && r.c.Connected() && r.c.Consuming()
	})

	if err := <-pubDone; err != nil {
		t.Fatalf("publishing: %v", err)
	}
	rabbittest.WaitFor(t, 30*time.Second, "every message", func() bool { return rec.distinct() == n })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if c := rabbittest.MessageCount(t, top.Queue); c != 0 {
		t.Errorf("queue holds %d messages after the test, want 0", c)
	}

	// Only messages handled shortly before a cut may come twice: acks are
	// batched (at most ackBatch handled deliveries wait for one multiple
	// ack), so up to a batch of acks can be lost with the connection.
	const slack = ackBatch + 5
	first := map[string]int{}
	for i, m := range rec.snapshot() {
		b := string(m.Body)
		pos, dup := first[b]
		if !dup {
			first[b] = i
			continue
		}
		if !m.Redelivered {
			t.Errorf("%s handled again at %d without the redelivered flag", b, i)
		}
		near := false
		for _, k := range cutAt {
			near = near || (pos >= k-slack && pos <= k+slack)
		}
		if !near {
			t.Errorf("%s was handled at %d (cuts at %v) and redelivered: its ack was lost", b, pos, cutAt)
		}
	}
	t.Logf("handled %d deliveries for %d messages, cuts at %v, reconnects %d", rec.len(), n, cutAt, r.c.Reconnects())
	if strings.Contains(logs.String(), "guest:guest@") {
		t.Error("the password appears in the logs")
	}
}

// A queue deleted under the consumer (the broker cancels the consumer) is
// declared again and consumption resumes.
func TestConsumerQueueDeleted(t *testing.T) {
	t.Parallel()
	top := testTopology(t)
	log, _ := testLogger(t)
	var rec recorder
	r := startConsumer(t, ConsumerConfig{URL: rabbittest.URL, Topology: top, MinBackoff: 20 * time.Millisecond, Logger: log},
		func(_ context.Context, m Message) error { rec.add(m); return nil })
	rabbittest.WaitFor(t, 10*time.Second, "consuming", r.c.Consuming)
	if _, err := rabbittest.Channel(t).QueueDelete(top.Queue, false, false, false); err != nil {
		t.Fatal(err)
	}
	rabbittest.WaitFor(t, 10*time.Second, "consuming again", func() bool { return r.c.Reconnects() >= 1 && r.c.Consuming() })
	rabbittest.Publish(t, top.Exchange, []byte("after"))
	rabbittest.WaitFor(t, 10*time.Second, "message after redeclare", func() bool { return rec.len() == 1 })
}

func TestConsumerGracefulStop(t *testing.T) {
	top := testTopology(t)
	declare(t, top)
	const n = 300
	rabbittest.Publish(t, top.Exchange, bodies("m", 0, n)...)
	log, logs := testLogger(t)

	// Let the helper connections' goroutines finish before counting.
	time.Sleep(200 * time.Millisecond)
	before := runtime.NumGoroutine()

	var rec recorder
	c := NewConsumer(ConsumerConfig{URL: rabbittest.URL, Topology: top, Prefetch: 50, Logger: log},
		func(_ context.Context, m Message) error {
			time.Sleep(3 * time.Millisecond)
			rec.add(m)
			return nil
		})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	rabbittest.WaitFor(t, 10*time.Second, "30 messages", func() bool { return rec.len() >= 30 })
	cancel()
	atCancel := rec.len()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	handled := rec.bodies()
	t.Logf("handled %d at cancel, %d in all", atCancel, len(handled))
	if len(handled) <= atCancel {
		t.Errorf("nothing prefetched was handled after cancel (%d at cancel, %d in all)", atCancel, len(handled))
	}
	for i, b := range handled {
		if want := fmt.Sprintf("m-%04d", i); b != want {
			t.Fatalf("handled[%d] = %s, want %s", i, b, want)
		}
	}
	if got := rabbittest.MessageCount(t, top.Queue); got != n-len(handled) {
		t.Errorf("queue holds %d messages, want %d (handled ones acked, the others kept)", got, n-len(handled))
	}
	// What was not handled is still there. (A delivery the broker sends
	// while basic.cancel is in flight reaches no consumer; it returns to the
	// queue, flagged redelivered, when the channel closes.)
	rest := map[string]bool{}
	for _, d := range rabbittest.Get(t, top.Queue, n) {
		rest[string(d.Body)] = true
	}
	for i := len(handled); i < n; i++ {
		if b := fmt.Sprintf("m-%04d", i); !rest[b] {
			t.Errorf("%s neither handled nor in the queue", b)
		}
	}
	if !strings.Contains(logs.String(), "consumer stopped") {
		t.Error("no graceful stop logged")
	}

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before Run, %d after it returned\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

func TestConsumerStopDuringBackoff(t *testing.T) {
	proxy := rabbittest.NewProxy(t)
	proxy.Pause()
	top := testTopology(t)
	log, _ := testLogger(t)
	c := NewConsumer(ConsumerConfig{URL: proxy.URL(), Topology: top, MinBackoff: 5 * time.Second, Logger: log},
		func(context.Context, Message) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := c.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run took %s to return after its context ended during backoff", d)
	}
}

func TestConsumerConfigErrors(t *testing.T) {
	h := func(context.Context, Message) error { return nil }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, url := range []string{"", "http://guest:s3cret@host/", "amqp://guest:s3cret@host:port/", "amqp://guest:s3c ret@host/"} {
		err := NewConsumer(ConsumerConfig{URL: url}, h).Run(ctx)
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("Run with URL %q: %v, want a *ConfigError", url, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3c") {
			t.Errorf("error repeats the password: %v", err)
		}
	}
	if err := NewConsumer(ConsumerConfig{URL: rabbittest.URL}, nil).Run(ctx); err == nil {
		t.Error("Run without handler: nil error")
	}

	// A classic queue of our name exists: retrying cannot fix that.
	top := testTopology(t)
	if _, err := rabbittest.Channel(t).QueueDeclare(top.Queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	log, _ := testLogger(t)
	err := NewConsumer(ConsumerConfig{URL: rabbittest.URL, Topology: top, Logger: log}, h).Run(ctx)
	var ce *ConfigError
	if !errors.As(err, &ce) || !isCode(err, amqp.PreconditionFailed) {
		t.Errorf("Run over an existing classic queue: %v, want a *ConfigError wrapping 406", err)
	}
}

// Refused logins and unknown vhosts are retried (an operator can fix them on
// the broker), logged at Error level with the URL redacted.
func TestConsumerAccessRefusedIsRetriedAndRedacted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url, secret string
		wait              time.Duration
	}{
		// RabbitMQ answers a bad password after about 3s.
		{"bad password", "amqp://guest:wr0ng-s3cret@127.0.0.1:5672/", "wr0ng-s3cret", 3500 * time.Millisecond},
		{"unknown vhost", "amqp://guest:guest@127.0.0.1:5672/no-such-vhost", "guest:guest", time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			log, logs := testLogger(t)
			c := NewConsumer(ConsumerConfig{
				URL: tc.url, Topology: testTopology(t),
				MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: log,
			}, func(context.Context, Message) error { return nil })
			ctx, cancel := context.WithTimeout(context.Background(), tc.wait)
			defer cancel()
			if err := c.Run(ctx); err != nil {
				t.Fatalf("Run: %v, want nil (retried until cancelled)", err)
			}
			out := logs.String()
			if strings.Contains(out, tc.secret) {
				t.Errorf("password in logs:\n%s", out)
			}
			if !strings.Contains(out, "guest:xxxxx@127.0.0.1:5672") || !strings.Contains(out, "level=ERROR") {
				t.Errorf("want an Error-level line with the redacted URL:\n%s", out)
			}
		})
	}
}

func TestDeadLetterError(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", DeadLetter("too large"))
	if reason, ok := IsDeadLetter(err); !ok || reason != "too large" {
		t.Errorf("IsDeadLetter(wrapped) = %q, %v", reason, ok)
	}
	if _, ok := IsDeadLetter(errors.New("other")); ok {
		t.Error("IsDeadLetter(other) = true")
	}
	if _, ok := IsDeadLetter(nil); ok {
		t.Error("IsDeadLetter(nil) = true")
	}
}

// Prepare runs on several waiting deliveries at once, while the handler
// still sees every message once, in order, with its own prepared value.
func TestConsumerPrepareInParallelHandleInOrder(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Fatal("this test needs GOMAXPROCS >= 2 to see Prepare run in parallel")
	}
	top := testTopology(t)
	declare(t, top)
	const n = 2000
	rabbittest.Publish(t, top.Exchange, bodies("p", 0, n)...) // preloaded: deliveries wait

	var running, maxRunning atomic.Int64
	prepare := func(body []byte) any {
		now := running.Add(1)
		for {
			m := maxRunning.Load()
			if now <= m || maxRunning.CompareAndSwap(m, now) {
				break
			}
		}
		time.Sleep(200 * time.Microsecond) // a decode's worth of work
		running.Add(-1)
		return "prepared:" + string(body)
	}
	log, _ := testLogger(t)
	var rec recorder
	var mismatched atomic.Int64
	r := startConsumer(t, ConsumerConfig{URL: rabbittest.URL, Topology: top, Prefetch: 256, Logger: log, Prepare: prepare},
		func(_ context.Context, m Message) error {
			if m.Prepared != "prepared:"+string(m.Body) {
				mismatched.Add(1)
			}
			rec.add(m)
			return nil
		})
	rabbittest.WaitFor(t, 30*time.Second, "all messages", func() bool { return rec.len() >= n })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	for i, b := range rec.bodies() {
		if want := fmt.Sprintf("p-%04d", i); b != want {
			t.Fatalf("message %d = %q, want %q: order lost", i, b, want)
		}
	}
	if mismatched.Load() != 0 {
		t.Errorf("%d messages reached the handler with another message's prepared value", mismatched.Load())
	}
	if maxRunning.Load() < 2 {
		t.Errorf("Prepare never ran on two messages at once (max %d)", maxRunning.Load())
	}
	if c := rabbittest.MessageCount(t, top.Queue); c != 0 {
		t.Errorf("queue holds %d messages, want 0: batched acks lost some", c)
	}
}
