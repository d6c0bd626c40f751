package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ReplayConfig configures Replay. Zero fields take defaults.
type ReplayConfig struct {
	URL     string
	History History
	// From replays messages from this time (x-stream-offset as an AMQP
	// timestamp, whole seconds); zero means from the first message retained.
	// The broker starts at the first chunk (a batch of messages written
	// together) whose timestamp is not earlier than From, so a few messages
	// slightly older than From may be delivered; messages newer than From
	// always are.
	From time.Time
	// FromOffset, when positive, replays from this stream offset instead
	// (the message after what a fleet snapshot covers, see pkg/snapshot);
	// an offset older than the stream still holds starts at its first
	// message.
	FromOffset int64
	Prefetch   int // default 1000 (stream consumers require a qos prefetch and manual ack)
	// IdleAfter: caught up once this long has passed since the last
	// delivery was handled with no further delivery received (neither
	// waiting to be handled nor arriving); default 500ms.
	IdleAfter time.Duration
	// Follow keeps following live after catching up (reconnecting, resuming
	// from the last offset seen + 1); otherwise Replay returns once caught up.
	Follow                 bool
	MinBackoff, MaxBackoff time.Duration // reconnect backoff; defaults 100ms, 30s
	ConnectionName         string        // default "runlens-replay"
	Logger                 *slog.Logger  // default slog.Default()
	// Prepare, if set, is run on each message's body before h, on several
	// messages at once (up to GOMAXPROCS goroutines) when more deliveries
	// are already waiting; its result reaches h as Message.Prepared. h
	// still sees messages one at a time, in stream order. As with
	// ConsumerConfig.Prepare, it must be safe for concurrent use and
	// without side effects: a prepared message may not reach h (an offset
	// already handed to h before a reconnect, which the stream sends
	// again, or a session that ended first).
	Prepare func(body []byte) any
	// TLS, if set, is the TLS configuration of an amqps:// URL (CA, client
	// certificate, server name), instead of the URL's cacertfile, certfile
	// and keyfile parameters. Each connection gets a clone.
	TLS *tls.Config
}

func (c ReplayConfig) defaults() ReplayConfig {
	c.History = c.History.Defaults()
	if c.Prefetch <= 0 {
		c.Prefetch = 1000
	}
	if c.IdleAfter <= 0 {
		c.IdleAfter = 500 * time.Millisecond
	}
	c.MinBackoff, c.MaxBackoff = backoffDefaults(c.MinBackoff, c.MaxBackoff)
	c.ConnectionName = orDefault(c.ConnectionName, "runlens-replay")
	c.Logger = loggerOrDefault(c.Logger)
	return c
}

// Replay declares the history stream (DeclareHistory) and consumes it from
// cfg.From, calling h for each message in stream order, on the calling
// goroutine, with Message.Offset set (and Message.Prepared, see
// ReplayConfig.Prepare). Each offset is handed to h at most
// once, also across reconnects (a reconnect resumes at the last offset seen
// + 1). onCaughtUp (may be nil) is called once, on the calling goroutine,
// the first time IdleAfter passed after h returned with no further delivery
// received: every message h was handed before is then handled.
//
// Without Follow, Replay returns nil once caught up, after handing h the
// deliveries already received and cancelling its consumer; if ctx is
// cancelled before that it returns ctx.Err(). With Follow it keeps following
// (reconnecting with backoff when the connection is lost) and returns nil
// when ctx is cancelled. Errors are returned only for mistakes retrying
// cannot fix (malformed URL, nil h, a queue of the stream's name that is not
// a stream, whose messages are then requeued untouched); these are
// *ConfigError.
func Replay(ctx context.Context, cfg ReplayConfig, h func(Message), onCaughtUp func()) error {
	cfg = cfg.defaults()
	if err := validateURL(cfg.URL); err != nil {
		return err
	}
	if h == nil {
		return &ConfigError{msg: "broker: Replay needs a handler"}
	}
	r := &replayer{
		cfg:        cfg,
		h:          h,
		onCaughtUp: onCaughtUp,
		last:       -1,
		log:        cfg.Logger.With("url", RedactURL(cfg.URL), "stream", cfg.History.Stream),
		start:      time.Now(),
	}
	bo := backoff{min: cfg.MinBackoff, max: cfg.MaxBackoff}
	for {
		done, consumedFor, err := r.session(ctx)
		if done {
			return nil
		}
		if ctx.Err() != nil {
			if cfg.Follow || r.caughtUp {
				return nil
			}
			return ctx.Err()
		}
		var ce *ConfigError
		if errors.As(err, &ce) {
			r.log.Error("cannot replay history: configuration error", "err", err)
			return err
		}
		if consumedFor >= healthySession {
			bo.reset()
		}
		delay := bo.next()
		r.log.Warn("history connection failed or lost; reconnecting", "err", err, "retry_in", delay.Round(time.Millisecond),
			"resume_offset", r.last+1)
		if !sleepCtx(ctx, delay) {
			if cfg.Follow || r.caughtUp {
				return nil
			}
			return ctx.Err()
		}
	}
}

type replayer struct {
	cfg        ReplayConfig
	h          func(Message)
	onCaughtUp func()
	log        *slog.Logger

	last     int64 // last offset handed to h, -1 before the first
	caughtUp bool
	handled  uint64
	start    time.Time
}

// session consumes over one connection. done is true when Replay must return
// nil because it caught up without Follow; a cancelled ctx is reported
// through ctx.
func (r *replayer) session(ctx context.Context) (done bool, consumedFor time.Duration, err error) {
	conn, err := dialTLS(ctx, r.cfg.URL, r.cfg.ConnectionName, r.cfg.TLS)
	if err != nil {
		return false, 0, err
	}
	defer conn.Close()
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))

	ch, err := DeclareHistory(conn, r.cfg.History, r.cfg.Logger)
	if err != nil {
		return false, 0, err
	}
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Qos(r.cfg.Prefetch, 0, false); err != nil {
		return false, 0, fmt.Errorf("basic.qos: %w", err)
	}
	var offset any = "first"
	switch {
	case r.last >= 0:
		offset = r.last + 1
	case r.cfg.FromOffset > 0:
		offset = r.cfg.FromOffset
	case !r.cfg.From.IsZero():
		offset = r.cfg.From
	}
	tag := fmt.Sprintf("%s-%d-%s", r.cfg.ConnectionName, os.Getpid(), randomSuffix())
	consumed, err := ch.Consume(r.cfg.History.Stream, tag, false, false, false, false, amqp.Table{"x-stream-offset": offset})
	if err != nil {
		if isCode(err, amqp.PreconditionFailed) {
			// E.g. a quorum queue: "invalid arg 'x-stream-offset' ... of queue type rabbit_quorum_queue".
			return false, 0, &ConfigError{msg: fmt.Sprintf("broker: cannot consume %q as a stream: %v", r.cfg.History.Stream, err), err: err}
		}
		return false, 0, fmt.Errorf("basic.consume: %w", err)
	}
	// As the consumer's: the pump shows what is waiting (len), for batching
	// acks and preparation. Deliveries left unread when the session ends are
	// never handed to h; the next session resumes after r.last.
	deliveries := pumpDeliveries(consumed, r.cfg.Prefetch+1)
	defer drainLater(deliveries)
	start := time.Now()
	r.log.Info("replaying history", "offset", fmt.Sprint(offset), "follow", r.cfg.Follow)

	// Acks give the stream consumer its credit back. As the consumer's,
	// they are batched (multiAck), sent every ackEvery deliveries handled
	// (or skipped) and as soon as no further delivery is waiting, so
	// idleness means "caught up" rather than "out of credit".
	var (
		acks     = multiAck{ch: ch}
		ackEvery = max(1, min(ackBatch, r.cfg.Prefetch/4))
		prep     = preparer{f: r.cfg.Prepare}
	)
	deliver := func(d amqp.Delivery, prepared any) {
		off := streamOffset(d.Headers)
		if off < 0 || off > r.last {
			r.h(Message{Body: d.Body, Headers: d.Headers, Redelivered: d.Redelivered, Timestamp: d.Timestamp, Offset: off, Prepared: prepared})
			r.handled++
			if off >= 0 {
				r.last = off
			}
		}
		acks.note(d.DeliveryTag)
	}
	// handle hands d, and with a Prepare the deliveries already waiting
	// behind it (prepared in parallel), to h in order.
	handle := func(d amqp.Delivery) error {
		batch := prep.take(d, deliveries)
		prepared := prep.prepare(batch)
		for i, d := range batch {
			deliver(d, prepared[i])
			if acks.pending >= ackEvery || (i == len(batch)-1 && len(deliveries) == 0) {
				if err := acks.flush(); err != nil {
					return err
				}
			}
		}
		return nil
	}

	idle := time.NewTimer(r.cfg.IdleAfter)
	defer idle.Stop()
	var idleC <-chan time.Time = idle.C
	if r.caughtUp {
		idleC = nil
	}
	for {
		select {
		case <-ctx.Done():
			_ = acks.flush()
			_ = ch.Cancel(tag, false)
			_ = ch.Close()
			return false, time.Since(start), ctx.Err()
		case e := <-connClosed:
			return false, time.Since(start), closedErr("connection", e)
		case e := <-chClosed:
			return false, time.Since(start), closedErr("channel", e)
		case d, ok := <-deliveries:
			if !ok {
				return false, time.Since(start), errors.New("delivery channel closed (consumer cancelled by the broker or channel closed)")
			}
			if _, ok := d.Headers["x-stream-offset"]; !ok {
				// Not a stream (DeclareHistory cannot always tell): give
				// everything back untouched.
				_ = ch.Nack(d.DeliveryTag, true, true)
				_ = ch.Close()
				return false, 0, &ConfigError{msg: fmt.Sprintf("broker: queue %q is not a stream (its deliveries carry no x-stream-offset)", r.cfg.History.Stream)}
			}
			if err := handle(d); err != nil {
				return false, time.Since(start), err
			}
			// The quiet time counts from when h is done, not from when
			// the pump received the last delivery.
			if idleC != nil {
				idle.Reset(r.cfg.IdleAfter)
			}
		case <-idleC:
			if len(deliveries) > 0 {
				// Received while the timer fired: not idle.
				idle.Reset(r.cfg.IdleAfter)
				continue
			}
			idleC = nil
			r.caughtUp = true
			r.log.Info("history caught up", "messages", r.handled, "last_offset", r.last,
				"took", time.Since(r.start).Round(time.Millisecond))
			if r.onCaughtUp != nil {
				r.onCaughtUp()
			}
			if r.cfg.Follow {
				continue
			}
			if err := ch.Cancel(tag, false); err != nil {
				// Caught up all the same; what was not acked is simply left.
				return true, time.Since(start), nil
			}
			// basic.cancel-ok closes consumed, then the pump closes
			// deliveries.
			for d := range deliveries {
				_ = handle(d)
			}
			_ = acks.flush()
			_ = ch.Close()
			return true, time.Since(start), nil
		}
	}
}

// streamOffset returns the x-stream-offset header, or -1.
func streamOffset(h amqp.Table) int64 {
	switch v := h["x-stream-offset"].(type) {
	case int64:
		return v
	case int32:
		return int64(v)
	case int:
		return int64(v)
	case int16:
		return int64(v)
	case int8:
		return int64(v)
	case uint32:
		return int64(v)
	case uint16:
		return int64(v)
	case byte:
		return int64(v)
	}
	return -1
}
