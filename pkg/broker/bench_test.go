package broker

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runlens/runlens/internal/rabbittest"
)

// BenchmarkConsumer measures end-to-end consumption (publish first, then
// consume and ack every message) of b.N small messages.
func BenchmarkConsumer(b *testing.B) {
	q := rabbittest.Name(b, "runlens.bench.")
	top := Topology{Exchange: q + ".ex", Queue: q}.Defaults()
	rabbittest.DeleteQueues(b, top.Queue, top.DeadLetterQueue)
	rabbittest.DeleteExchanges(b, top.Exchange, top.DeadLetterExchange)
	if err := Declare(rabbittest.Channel(b), top); err != nil {
		b.Fatal(err)
	}
	p, err := NewPublisher(context.Background(), rabbittest.URL, top.Exchange, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	if err := p.PublishAll(context.Background(), bodies("m", 0, b.N), 0); err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := NewConsumer(ConsumerConfig{URL: rabbittest.URL, Topology: top, Logger: slog.New(slog.DiscardHandler)},
		func(context.Context, Message) error {
			if n.Add(1) == int64(b.N) {
				close(done)
			}
			return nil
		})
	b.ResetTimer()
	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- c.Run(ctx) }()
	<-done
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.StopTimer()
	cancel()
	if err := <-stopped; err != nil {
		b.Fatal(err)
	}
}
