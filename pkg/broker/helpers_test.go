package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/internal/testlog"
)

func testLogger(t *testing.T) (*slog.Logger, *testlog.Buffer) {
	buf := &testlog.Buffer{}
	w := io.MultiWriter(t.Output(), buf)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// testTopology returns a unique topology and deletes it after the test.
func testTopology(t *testing.T) Topology {
	t.Helper()
	q := rabbittest.Name(t, "runlens.test.")
	top := Topology{Exchange: q + ".ex", Queue: q}.Defaults()
	rabbittest.DeleteQueues(t, top.Queue, top.DeadLetterQueue)
	rabbittest.DeleteExchanges(t, top.Exchange, top.DeadLetterExchange)
	return top
}

// declare declares top on the real broker.
func declare(t *testing.T, top Topology) {
	t.Helper()
	if err := Declare(rabbittest.Channel(t), top); err != nil {
		t.Fatalf("Declare: %v", err)
	}
}

// declareHistory declares h (the stream, bound to its exchange) on the real
// broker.
func declareHistory(t *testing.T, h History, log *slog.Logger) {
	t.Helper()
	ch, err := DeclareHistory(rabbittest.Dial(t), h, log)
	if err != nil {
		t.Fatalf("DeclareHistory: %v", err)
	}
	ch.Close()
}

func bodies(prefix string, from, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "%s-%04d", prefix, from+i)
	}
	return out
}

type running struct {
	c      *Consumer
	cancel context.CancelFunc
	done   chan error
}

// startConsumer runs a consumer until the test ends (or stop).
func startConsumer(t *testing.T, cfg ConsumerConfig, h Handler) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: NewConsumer(cfg, h), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- r.c.Run(ctx) }()
	t.Cleanup(func() { _ = r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("Consumer.Run did not return within 15s of cancel")
		return nil
	}
}

// recorder records handled messages in order.
type recorder struct {
	mu   sync.Mutex
	msgs []Message
}

func (r *recorder) add(m Message) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	return len(r.msgs)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func (r *recorder) bodies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = string(m.Body)
	}
	return out
}

func (r *recorder) snapshot() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

func (r *recorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, m := range r.msgs {
		seen[string(m.Body)] = true
	}
	return len(seen)
}
