package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrPublisherClosed is returned by a Publisher after Close.
var ErrPublisherClosed = errors.New("broker: publisher closed")

// redialEvery limits how often a Publisher whose connection was lost tries
// to connect again: in between, Publish fails fast with the last dial error.
const redialEvery = time.Second

// Publisher publishes to a fanout exchange with publisher confirms and
// persistent delivery mode. It is safe for concurrent use. When its
// connection is lost, the messages in flight fail and the next Publish
// connects again (at most once per second).
//
// Messages are published without the mandatory flag: a message the exchange
// routes to no queue is confirmed and dropped by the broker. The exporter's
// queue and the history stream are bound to the exchange, which is what makes
// a confirm mean "stored".
type Publisher struct {
	url, exchange string
	log           *slog.Logger

	mu      sync.Mutex
	conn    *amqp.Connection
	ch      *amqp.Channel
	closed  bool
	dialErr error
	dialAt  time.Time
}

// NewPublisher dials, declares the exchange (fanout, durable; "" means
// "chef_reports") and puts the channel in confirm mode.
func NewPublisher(ctx context.Context, url, exchange string, log *slog.Logger) (*Publisher, error) {
	if err := validateURL(url); err != nil {
		return nil, err
	}
	exchange = orDefault(exchange, DefaultExchange)
	p := &Publisher{
		url:      url,
		exchange: exchange,
		log:      loggerOrDefault(log).With("url", RedactURL(url), "exchange", exchange),
	}
	if _, err := p.channel(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// NewLazyPublisher is NewPublisher without the first dial: it connects at the
// first Publish. A server that publishes on behalf of clients (the exporter's
// HTTP ingest) must start while the broker is down and answer 503 until it is
// back, rather than refuse to start.
func NewLazyPublisher(url, exchange string, log *slog.Logger) (*Publisher, error) {
	if err := validateURL(url); err != nil {
		return nil, err
	}
	exchange = orDefault(exchange, DefaultExchange)
	return &Publisher{
		url:      url,
		exchange: exchange,
		log:      loggerOrDefault(log).With("url", RedactURL(url), "exchange", exchange),
	}, nil
}

// channel returns the open confirm-mode channel, connecting again if the
// previous connection was lost.
func (p *Publisher) channel(ctx context.Context) (*amqp.Channel, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrPublisherClosed
	}
	if p.ch != nil && !p.ch.IsClosed() && !p.conn.IsClosed() {
		return p.ch, nil
	}
	if p.dialErr != nil && time.Since(p.dialAt) < redialEvery {
		return nil, p.dialErr
	}
	if p.conn != nil {
		p.log.Warn("publisher connection lost; reconnecting")
		closeQuietly(p.conn)
		p.conn, p.ch = nil, nil
	}
	p.dialAt = time.Now()
	conn, ch, err := p.connect(ctx)
	if err != nil {
		p.dialErr = fmt.Errorf("broker: publisher: %w", err)
		return nil, p.dialErr
	}
	p.conn, p.ch, p.dialErr = conn, ch, nil
	return ch, nil
}

func (p *Publisher) connect(ctx context.Context) (*amqp.Connection, *amqp.Channel, error) {
	conn, err := dial(ctx, p.url, "runlens-publisher")
	if err != nil {
		return nil, nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.ExchangeDeclare(p.exchange, amqp.ExchangeFanout, true, false, false, false, nil)
		if err != nil {
			err = fmt.Errorf("declare exchange %q: %w", p.exchange, err)
		}
	}
	if err == nil {
		if err = ch.Confirm(false); err != nil {
			err = fmt.Errorf("confirm.select: %w", err)
		}
	}
	if err != nil {
		closeQuietly(conn)
		return nil, nil, err
	}
	return conn, ch, nil
}

func publishing(body []byte, headers amqp.Table) amqp.Publishing {
	return amqp.Publishing{
		Headers:      headers,
		ContentType:  "application/json", // every run report is JSON, as the producers label theirs
		DeliveryMode: amqp.Persistent,
		Timestamp:    time.Now(),
		Body:         body,
	}
}

// Publish sends one message and waits for the broker's confirm. It returns an
// error when the broker nacks it, when ctx is done first, or when the
// connection is or gets closed before the confirm.
func (p *Publisher) Publish(ctx context.Context, body []byte, headers amqp.Table) error {
	ch, err := p.channel(ctx)
	if err != nil {
		return err
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, p.exchange, "", false, false, publishing(body, headers))
	if err != nil {
		return fmt.Errorf("broker: publish to %q: %w", p.exchange, err)
	}
	return waitConfirm(ctx, ch, dc)
}

func waitConfirm(ctx context.Context, ch *amqp.Channel, dc *amqp.DeferredConfirmation) error {
	select {
	case <-dc.Done():
	case <-ctx.Done():
		return fmt.Errorf("broker: waiting for publisher confirm: %w", ctx.Err())
	}
	if dc.Acked() {
		return nil
	}
	if ch.IsClosed() {
		return errors.New("broker: connection closed before the broker confirmed the message")
	}
	return errors.New("broker: the broker nacked the message")
}

// PublishAll publishes bodies in order, pipelined with at most window
// (default 1000 when window <= 0) unconfirmed messages at a time, and returns
// once all are confirmed. On error some messages may have been stored: the
// error says how many were confirmed (a prefix of bodies when the broker
// confirms in order, which RabbitMQ does on one channel).
func (p *Publisher) PublishAll(ctx context.Context, bodies [][]byte, window int) error {
	if window <= 0 {
		window = 1000
	}
	ch, err := p.channel(ctx)
	if err != nil {
		return err
	}
	inflight := make([]*amqp.DeferredConfirmation, 0, min(window, len(bodies)))
	confirmed := 0
	waitOldest := func() error {
		dc := inflight[0]
		inflight[0] = nil
		inflight = inflight[1:]
		if err := waitConfirm(ctx, ch, dc); err != nil {
			return fmt.Errorf("%w (%d of %d confirmed)", err, confirmed, len(bodies))
		}
		confirmed++
		return nil
	}
	for i, body := range bodies {
		if len(inflight) >= window {
			if err := waitOldest(); err != nil {
				return err
			}
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, p.exchange, "", false, false, publishing(body, nil))
		if err != nil {
			return fmt.Errorf("broker: publish message %d to %q: %w (%d of %d confirmed)", i, p.exchange, err, confirmed, len(bodies))
		}
		inflight = append(inflight, dc)
	}
	for len(inflight) > 0 {
		if err := waitOldest(); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the channel and the connection. Publishes still waiting for
// a confirm fail. Close is idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if p.conn == nil {
		return nil
	}
	err := p.conn.Close()
	p.conn, p.ch = nil, nil
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}
