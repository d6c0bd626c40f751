package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/internal/rabbittest"
)

// testExchangeQueue declares a fanout exchange with a classic queue bound to
// it, both deleted after the test.
func testExchangeQueue(t *testing.T) (exchange, queue string) {
	t.Helper()
	queue = rabbittest.Name(t, "runlens.test.pub.")
	exchange = queue + ".ex"
	rabbittest.DeleteQueues(t, queue)
	rabbittest.DeleteExchanges(t, exchange)
	ch := rabbittest.Channel(t)
	if err := ch.ExchangeDeclare(exchange, "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(queue, "", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	return exchange, queue
}

func TestPublisherPublishAll(t *testing.T) {
	exchange, queue := testExchangeQueue(t)
	log, _ := testLogger(t)
	p, err := NewPublisher(context.Background(), rabbittest.URL, exchange, log)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 5000
	start := time.Now()
	if err := p.PublishAll(context.Background(), bodies("m", 0, n), 0); err != nil {
		t.Fatalf("PublishAll: %v", err)
	}
	t.Logf("PublishAll of %d messages confirmed in %s", n, time.Since(start))
	if got := rabbittest.MessageCount(t, queue); got != n {
		t.Fatalf("queue holds %d messages, want %d", got, n)
	}
	got := rabbittest.Get(t, queue, 3)
	for i, d := range got {
		if string(d.Body) != string(bodies("m", i, 1)[0]) || d.DeliveryMode != amqp.Persistent || d.Timestamp.IsZero() {
			t.Errorf("message %d: %s, delivery mode %d, timestamp %v", i, d.Body, d.DeliveryMode, d.Timestamp)
		}
	}
	// A small window works too.
	if err := p.PublishAll(context.Background(), bodies("w", 0, 50), 3); err != nil {
		t.Fatalf("PublishAll with window 3: %v", err)
	}
}

func TestPublisherPublish(t *testing.T) {
	exchange, queue := testExchangeQueue(t)
	log, _ := testLogger(t)
	ctx := context.Background()
	p, err := NewPublisher(ctx, rabbittest.URL, exchange, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, []byte("one"), amqp.Table{"x-source": "test"}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	got := rabbittest.Get(t, queue, 2)
	if len(got) != 1 || string(got[0].Body) != "one" || got[0].Headers["x-source"] != "test" ||
		got[0].DeliveryMode != amqp.Persistent || got[0].Timestamp.IsZero() {
		t.Fatalf("got %+v", got)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := p.Publish(cancelled, []byte("x"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with a cancelled context: %v", err)
	}

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := p.Publish(ctx, []byte("late"), nil); !errors.Is(err, ErrPublisherClosed) {
		t.Errorf("Publish after Close: %v, want ErrPublisherClosed", err)
	}
	if err := p.PublishAll(ctx, bodies("late", 0, 2), 0); !errors.Is(err, ErrPublisherClosed) {
		t.Errorf("PublishAll after Close: %v, want ErrPublisherClosed", err)
	}
}

// A lost connection fails publishing; once the broker is back the publisher
// connects again by itself.
func TestPublisherConnectionLost(t *testing.T) {
	t.Parallel()
	exchange, queue := testExchangeQueue(t)
	log, _ := testLogger(t)
	proxy := rabbittest.NewProxy(t)
	ctx := context.Background()
	p, err := NewPublisher(ctx, proxy.URL(), exchange, log)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Publish(ctx, []byte("before"), nil); err != nil {
		t.Fatal(err)
	}
	proxy.Pause()
	proxy.CutAll()
	if err := p.Publish(ctx, []byte("during"), nil); err == nil {
		t.Fatal("Publish over a cut connection with the broker unreachable: nil error")
	} else {
		t.Logf("Publish while cut: %v", err)
	}
	proxy.Resume()
	rabbittest.WaitFor(t, 5*time.Second, "Publish to succeed again", func() bool {
		return p.Publish(ctx, []byte("after"), nil) == nil
	})
	var bodies []string
	for _, d := range rabbittest.Get(t, queue, 10) {
		bodies = append(bodies, string(d.Body))
	}
	if len(bodies) != 2 || bodies[0] != "before" || bodies[1] != "after" {
		t.Errorf("queue holds %q, want [before after]", bodies)
	}
}

func TestNewPublisherErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var ce *ConfigError
	if _, err := NewPublisher(ctx, "amqp://u:p@h:x/", "e", nil); !errors.As(err, &ce) {
		t.Errorf("malformed URL: %v", err)
	}
	proxy := rabbittest.NewProxy(t)
	proxy.Pause()
	if _, err := NewPublisher(ctx, proxy.URL(), "e", nil); err == nil {
		t.Error("unreachable broker: nil error")
	}
}
