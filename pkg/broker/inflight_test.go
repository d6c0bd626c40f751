package broker

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/internal/rabbittest"
)

// bigBodies makes n distinct bodies of size bytes.
func bigBodies(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		b := bytes.Repeat([]byte{'x'}, size)
		copy(b, fmt.Sprintf("big-%04d-", i))
		out[i] = b
	}
	return out
}

// TestConsumerInflightBudget holds the consumer to its byte budget against
// the real broker: with a prefetch that would let every message in, a
// blocked handler stops the consumer reading at the budget plus one
// message, and once the handler goes on every message is handled and acked.
func TestConsumerInflightBudget(t *testing.T) {
	top := testTopology(t)
	declare(t, top)
	const n, size, limit = 20, 1 << 20, 3 << 20
	rabbittest.Publish(t, top.Exchange, bigBodies(n, size)...)

	log, _ := testLogger(t)
	release := make(chan struct{})
	var handled atomic.Int64
	r := startConsumer(t, ConsumerConfig{URL: rabbittest.URL, Topology: top, Prefetch: 100, Logger: log, MaxInflightBytes: limit},
		func(context.Context, Message) error {
			<-release
			handled.Add(1)
			return nil
		})
	rabbittest.WaitFor(t, 30*time.Second, "the budget to fill", func() bool { return r.c.heldBytes() >= limit })
	// The handler is blocked: whatever the consumer reads now stays held.
	var peak int64
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		peak = max(peak, r.c.heldBytes())
	}
	if peak > limit+size {
		t.Errorf("consumer held %d bytes of deliveries, budget %d plus one %d-byte message", peak, limit, size)
	}
	close(release)
	rabbittest.WaitFor(t, 30*time.Second, "every message handled", func() bool { return handled.Load() == n })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if c := rabbittest.MessageCount(t, top.Queue); c != 0 {
		t.Errorf("queue holds %d messages after the drain, want 0", c)
	}
}

// TestConsumerInflightBudgetDeadLetters dead-letters every message while the
// budget is full: the copies' confirms must not wait behind deliveries.
func TestConsumerInflightBudgetDeadLetters(t *testing.T) {
	top := testTopology(t)
	declare(t, top)
	const n, size = 12, 1 << 20
	rabbittest.Publish(t, top.Exchange, bigBodies(n, size)...)
	log, _ := testLogger(t)
	var rejected atomic.Int64
	r := startConsumer(t, ConsumerConfig{URL: rabbittest.URL, Topology: top, Prefetch: 100, Logger: log, MaxInflightBytes: 2 << 20},
		func(context.Context, Message) error {
			rejected.Add(1)
			return DeadLetter("too big for the test")
		})
	rabbittest.WaitFor(t, 30*time.Second, "every message dead-lettered", func() bool {
		return rabbittest.MessageCount(t, top.DeadLetterQueue) == n
	})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if c := rabbittest.MessageCount(t, top.Queue); c != 0 {
		t.Errorf("queue holds %d messages, want 0", c)
	}
}

// TestConsumerStopWithFullBudget stops a consumer whose budget is spent: the
// cancel's reply waits behind the held deliveries, which are handled while
// it is under way, as a graceful stop promises.
func TestConsumerStopWithFullBudget(t *testing.T) {
	top := testTopology(t)
	declare(t, top)
	const n, size, limit = 20, 1 << 20, 2 << 20
	rabbittest.Publish(t, top.Exchange, bigBodies(n, size)...)
	log, _ := testLogger(t)
	var handled atomic.Int64
	gate := make(chan struct{})
	var once sync.Once
	r := startConsumer(t, ConsumerConfig{URL: rabbittest.URL, Topology: top, Prefetch: 100, Logger: log, MaxInflightBytes: limit},
		func(context.Context, Message) error {
			<-gate
			handled.Add(1)
			return nil
		})
	rabbittest.WaitFor(t, 30*time.Second, "the budget to fill", func() bool { return r.c.heldBytes() >= limit })
	r.cancel()
	once.Do(func() { close(gate) })
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel with a full budget")
	}
	// Handled messages were acked; the rest are back in the queue.
	rabbittest.WaitFor(t, 10*time.Second, "unhandled messages back in the queue", func() bool {
		return rabbittest.MessageCount(t, top.Queue) == n-int(handled.Load())
	})
	if handled.Load() == 0 {
		t.Error("the stop handled none of the deliveries it held")
	}
}

// TestPrepareBytes checks the waves the preparer makes: bodies prepared at
// the same time add up to at most PrepareBytes, a larger body alone.
func TestPrepareBytes(t *testing.T) {
	var running, peak atomic.Int64
	var mu sync.Mutex
	var order []int
	p := preparer{maxBytes: 10, f: func(b []byte) any {
		now := running.Add(int64(len(b)))
		for m := peak.Load(); now > m && !peak.CompareAndSwap(m, now); m = peak.Load() {
		}
		time.Sleep(2 * time.Millisecond)
		running.Add(-int64(len(b)))
		mu.Lock()
		order = append(order, len(b))
		mu.Unlock()
		return len(b)
	}}
	var batch []amqp.Delivery
	for _, n := range []int{4, 4, 4, 20, 1, 1, 9, 2} {
		batch = append(batch, amqp.Delivery{Body: make([]byte, n)})
	}
	got := p.prepare(batch)
	for i, d := range batch {
		if got[i] != len(d.Body) {
			t.Fatalf("prepared[%d] = %v, want %d", i, got[i], len(d.Body))
		}
	}
	if peak.Load() > 20 {
		t.Errorf("bodies of %d bytes were prepared at once, want at most 20 (the largest body alone)", peak.Load())
	}
	if len(order) != len(batch) {
		t.Errorf("prepared %d bodies, want %d", len(order), len(batch))
	}
}
