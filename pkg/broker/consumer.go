package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Message is one delivery as the handler sees it.
type Message struct {
	Body        []byte
	Headers     amqp.Table
	Redelivered bool
	Timestamp   time.Time // AMQP timestamp property, zero if unset
	Offset      int64     // stream offset (x-stream-offset header) for history deliveries, -1 otherwise
	// Prepared is what ConsumerConfig.Prepare (ReplayConfig.Prepare for
	// Replay) returned for this message, nil without a Prepare.
	Prepared any
}

// Handler decides a message's fate:
//   - nil: the message is acked;
//   - an error made by DeadLetter(reason) (possibly wrapped): the message is
//     re-published, body byte-for-byte, to the dead-letter exchange with its
//     original headers plus "x-runlens-reason" (the reason) and
//     "x-runlens-queue" (the queue it came from); once the broker confirmed
//     that copy the original is acked. The consumer logs it at Debug level
//     only: the handler knows what the message was and logs the rejection;
//   - any other error: a transient failure. The message is nacked with
//     requeue after a short pause that grows with consecutive failures (capped
//     at 1s), and the error is logged, rate-limited. The broker counts these
//     returns and dead-letters the message after Topology.DeliveryLimit.
//
// The context passed to the handler is not cancelled when Run's context is,
// so that the messages already received can be finished during a graceful
// stop; a handler must therefore not block indefinitely.
type Handler func(ctx context.Context, m Message) error

type deadLetterError struct{ reason string }

func (e *deadLetterError) Error() string { return "dead-letter: " + e.reason }

// DeadLetter returns an error telling the consumer to dead-letter the message
// with the given reason.
func DeadLetter(reason string) error { return &deadLetterError{reason: reason} }

// IsDeadLetter reports whether err (or an error it wraps) was made by
// DeadLetter, and its reason.
func IsDeadLetter(err error) (reason string, ok bool) {
	var dl *deadLetterError
	if errors.As(err, &dl) {
		return dl.reason, true
	}
	return "", false
}

// Consumer defaults, also the exporter's flag defaults.
const (
	// DefaultPrefetch is basic.qos's prefetch count.
	DefaultPrefetch = 1000
	// DefaultMaxInflightBytes is ConsumerConfig.MaxInflightBytes' default
	// in the exporter: enough for the prefetch's worth of typical reports.
	DefaultMaxInflightBytes = 64 << 20
)

// ConsumerConfig configures a Consumer. Zero fields take defaults.
type ConsumerConfig struct {
	URL            string // amqp:// or amqps://; contains the password: only RedactURL(URL) is ever logged
	Topology       Topology
	Prefetch       int           // basic.qos; default DefaultPrefetch
	MinBackoff     time.Duration // reconnect backoff, default 100ms, doubled per failure with jitter, capped at MaxBackoff
	MaxBackoff     time.Duration // default 30s
	ConnectionName string        // client property connection_name, default "runlens"
	Logger         *slog.Logger  // default slog.Default()
	// Prepare, if set, is run on each message's body before the handler,
	// on several messages at once (up to GOMAXPROCS goroutines) when more
	// deliveries are already waiting; its result reaches the handler as
	// Message.Prepared. The handler still sees messages one at a time, in
	// delivery order. This lets a pure, CPU-heavy step such as decoding use
	// every core while applying stays ordered. Prepare must be safe for
	// concurrent use and must not have side effects: a prepared message may
	// still be redelivered and prepared again.
	Prepare func(body []byte) any
	// PrepareBytes bounds the bodies prepared at the same time: bodies are
	// prepared in parallel only while they add up to at most this many
	// bytes, and a larger body is prepared alone, so a burst of large
	// messages costs one large decode at a time. 0: no bound.
	PrepareBytes int
	// MaxInflightBytes bounds the bytes of deliveries the consumer holds:
	// while the bodies received and not yet handled add up to this many
	// bytes, the connection reads nothing more from the broker, which keeps
	// further deliveries queued (see inflight). Memory held by deliveries
	// stays under MaxInflightBytes plus one message (the one being read
	// when the budget ran out). 0: no bound but the prefetch.
	MaxInflightBytes int64
	// NoDeclare consumes Topology.Queue as it exists, without declaring the
	// topology (the queue, and the dead-letter exchange messages are
	// dead-lettered to, must exist): for brokers where runlens may not
	// configure, and for benchmarks on other queue types.
	NoDeclare bool
}

func (c ConsumerConfig) defaults() ConsumerConfig {
	c.Topology = c.Topology.Defaults()
	if c.Prefetch <= 0 {
		c.Prefetch = DefaultPrefetch
	}
	c.MinBackoff, c.MaxBackoff = backoffDefaults(c.MinBackoff, c.MaxBackoff)
	c.ConnectionName = orDefault(c.ConnectionName, "runlens")
	c.Logger = loggerOrDefault(c.Logger)
	return c
}

const (
	// confirmTimeout bounds the wait for the broker to confirm a dead-lettered copy.
	confirmTimeout = 30 * time.Second
	// stopTimeout bounds a graceful stop against a broker that stopped answering.
	stopTimeout = 30 * time.Second
	// healthySession is how long a session must have consumed for the next
	// reconnect to start again from MinBackoff.
	healthySession  = time.Second
	maxRequeuePause = time.Second
)

// Consumer consumes the exporter's queue; see Run.
type Consumer struct {
	cfg ConsumerConfig
	h   Handler
	log *slog.Logger

	running    atomic.Bool
	connected  atomic.Bool
	consuming  atomic.Bool
	reconnects atomic.Uint64
	budget     atomic.Pointer[inflight] // the current session's
	// Dead letters the dead-letter queue refused (full); see handle.
	deadLettersDropped atomic.Uint64

	// Used only by the Run goroutine.
	transientRun int
	transientLog rateLimiter
	dropLog      rateLimiter
}

// NewConsumer returns a consumer calling h for each message; see Run.
func NewConsumer(cfg ConsumerConfig, h Handler) *Consumer {
	cfg = cfg.defaults()
	return &Consumer{
		cfg:          cfg,
		h:            h,
		log:          cfg.Logger.With("url", RedactURL(cfg.URL), "queue", cfg.Topology.Queue),
		transientLog: rateLimiter{every: 10 * time.Second},
		dropLog:      rateLimiter{every: 10 * time.Second},
	}
}

// Connected reports whether the AMQP connection is open (runlens_amqp_up).
func (c *Consumer) Connected() bool { return c.connected.Load() }

// Consuming reports whether the consumer is registered and receiving
// (readiness).
func (c *Consumer) Consuming() bool { return c.consuming.Load() }

// DeadLettersDropped returns how many messages the handler dead-lettered
// that the dead-letter queue refused because it was full
// (runlens_dead_letters_dropped_total).
func (c *Consumer) DeadLettersDropped() uint64 { return c.deadLettersDropped.Load() }

// heldBytes is the bytes of deliveries received and not yet handled.
func (c *Consumer) heldBytes() int64 {
	if b := c.budget.Load(); b != nil {
		return b.held.Load()
	}
	return 0
}

// Reconnects returns how many times the consumer connected again after having
// been connected once.
func (c *Consumer) Reconnects() uint64 { return c.reconnects.Load() }

// Run connects, declares the topology, consumes with manual ack and calls the
// handler for each delivery in order, on the calling goroutine. When the
// connection or channel goes away it reconnects with capped exponential
// backoff (with jitter) and resumes; a context cancel during backoff returns
// promptly.
//
// When ctx is cancelled Run stops gracefully and returns nil: basic.cancel,
// then handle and ack every delivery already received (prefetched), then
// close channel and connection. Unacked messages of a connection that was
// lost return to the queue and are redelivered (Redelivered true).
//
// Run returns an error only for mistakes that retrying cannot fix: a
// malformed URL, a nil handler, a second concurrent Run, and an exchange or
// queue that already exists with other arguments (406 PRECONDITION_FAILED on
// declare, e.g. a classic queue named like ours); these are *ConfigError.
// Everything else is retried, including ACCESS_REFUSED (bad credentials or
// missing permissions) and unknown vhosts: an operator can fix those on the
// broker without restarting runlens. They are logged at Error level on each
// attempt, which the backoff paces.
func (c *Consumer) Run(ctx context.Context) error {
	if err := validateURL(c.cfg.URL); err != nil {
		return err
	}
	if c.h == nil {
		return &ConfigError{msg: "broker: Consumer has no handler"}
	}
	if !c.running.CompareAndSwap(false, true) {
		return &ConfigError{msg: "broker: Consumer.Run is already running"}
	}
	defer c.running.Store(false)

	bo := backoff{min: c.cfg.MinBackoff, max: c.cfg.MaxBackoff}
	everConnected := false
	for {
		if ctx.Err() != nil {
			return nil
		}
		consumedFor, err := c.session(ctx, &everConnected)
		if ctx.Err() != nil {
			return nil
		}
		var ce *ConfigError
		if errors.As(err, &ce) {
			c.log.Error("cannot consume: configuration error", "err", err)
			return err
		}
		if consumedFor >= healthySession {
			bo.reset()
		}
		delay := bo.next()
		level := slog.LevelWarn
		if isCode(err, amqp.AccessRefused) || isCode(err, amqp.NotAllowed) || errors.Is(err, amqp.ErrCredentials) {
			level = slog.LevelError
		}
		c.log.Log(ctx, level, "AMQP connection failed or lost; reconnecting", "err", err, "retry_in", delay.Round(time.Millisecond))
		if !sleepCtx(ctx, delay) {
			return nil
		}
	}
}

// session runs one connection until it fails or ctx is cancelled. It returns
// how long it consumed and why it ended.
func (c *Consumer) session(ctx context.Context, everConnected *bool) (time.Duration, error) {
	budget := newInflight(c.cfg.MaxInflightBytes)
	c.budget.Store(budget)
	var wrap func(net.Conn) net.Conn
	if budget.limit > 0 {
		wrap = gate(budget)
	}
	conn, err := dialWrapped(ctx, c.cfg.URL, c.cfg.ConnectionName, wrap)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	// Runs before the close: the close needs the broker's reply read.
	defer budget.open()
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	if *everConnected {
		c.reconnects.Add(1)
	}
	*everConnected = true
	c.connected.Store(true)
	defer c.connected.Store(false)

	var ch *amqp.Channel
	if c.cfg.NoDeclare {
		if ch, err = conn.Channel(); err != nil {
			return 0, fmt.Errorf("open channel: %w", err)
		}
	} else if ch, err = declareTopology(conn, c.cfg.Topology, c.log); err != nil {
		if isCode(err, amqp.PreconditionFailed) {
			return 0, &ConfigError{msg: fmt.Sprintf("broker: %v (an entity of that name exists with other settings: delete it or configure another name)", err), err: err}
		}
		return 0, err
	}
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		return 0, fmt.Errorf("basic.qos: %w", err)
	}
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))

	// Dead-lettered copies go through their own confirm-mode channel, on a
	// connection of their own when the consumer's waits for the inflight
	// budget: the confirm must not wait behind deliveries.
	pconn := conn
	pconnClosed := make(<-chan *amqp.Error)
	if budget.limit > 0 {
		if pconn, err = dial(ctx, c.cfg.URL, c.cfg.ConnectionName+"-dead-letter"); err != nil {
			return 0, err
		}
		defer pconn.Close()
		pconnClosed = pconn.NotifyClose(make(chan *amqp.Error, 1))
	}
	pch, err := pconn.Channel()
	if err != nil {
		return 0, fmt.Errorf("open channel: %w", err)
	}
	if err := pch.Confirm(false); err != nil {
		return 0, fmt.Errorf("confirm.select: %w", err)
	}
	pchClosed := pch.NotifyClose(make(chan *amqp.Error, 1))
	returns := pch.NotifyReturn(make(chan amqp.Return, 16))

	tag := fmt.Sprintf("%s-%d-%s", c.cfg.ConnectionName, os.Getpid(), randomSuffix())
	consumed, err := ch.Consume(c.cfg.Topology.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return 0, fmt.Errorf("basic.consume: %w", err)
	}
	// A pump makes the waiting deliveries visible to len() (see pumpDeliveries).
	deliveries := pumpCounted(consumed, c.cfg.Prefetch+1, budget)
	// Whatever the session leaves unread returns to the queue unacked.
	defer drainLater(deliveries)
	c.consuming.Store(true)
	defer c.consuming.Store(false)
	start := time.Now()
	c.log.Info("consuming", "prefetch", c.cfg.Prefetch, "reconnects", c.reconnects.Load())

	s := &consumerSession{c: c, conn: conn, ch: ch, pch: pch, returns: returns, ctx: ctx, hctx: context.WithoutCancel(ctx),
		acks: multiAck{ch: ch}, prep: preparer{f: c.cfg.Prepare, maxBytes: c.cfg.PrepareBytes}, budget: budget}
	for {
		select {
		case <-ctx.Done():
			c.consuming.Store(false)
			s.stop(tag, deliveries)
			return time.Since(start), nil
		case e := <-connClosed:
			return time.Since(start), closedErr("connection", e)
		case e := <-chClosed:
			return time.Since(start), closedErr("channel", e)
		case e := <-pchClosed:
			// The consuming channel still works: settle what was handled.
			_ = s.acks.flush()
			return time.Since(start), closedErr("publishing channel", e)
		case e := <-pconnClosed:
			_ = s.acks.flush()
			return time.Since(start), closedErr("dead-letter connection", e)
		case d, ok := <-deliveries:
			if !ok {
				return time.Since(start), errors.New("delivery channel closed (consumer cancelled by the broker or channel closed)")
			}
			batch := s.prep.take(d, deliveries)
			prepared := s.prep.prepare(batch)
			for i, d := range batch {
				if err := s.handle(d, prepared[i], i < len(batch)-1 || len(deliveries) > 0); err != nil {
					return time.Since(start), err
				}
			}
			// Handled bodies are garbage now: drop the batch's references.
			clear(batch)
			clear(prepared)
		}
	}
}

func closedErr(what string, e *amqp.Error) error {
	if e == nil {
		return fmt.Errorf("%s closed", what)
	}
	return fmt.Errorf("%s closed: %w", what, e)
}

type consumerSession struct {
	c       *Consumer
	conn    *amqp.Connection
	ch      *amqp.Channel
	pch     *amqp.Channel
	returns chan amqp.Return
	ctx     context.Context // Run's context
	hctx    context.Context // the handler's: not cancelled with ctx

	// Acks are batched (multiAck): a delivery is still acked only after
	// its handler returned, and the batch is flushed as soon as no further
	// delivery is waiting, so an idle consumer holds nothing unacked.
	acks multiAck

	prep   preparer
	budget *inflight
}

// prepareBatch bounds how many waiting deliveries are prepared together.
const prepareBatch = 32

// pumpDeliveries returns a channel of capacity size fed from consumed, and
// closed after it. amqp091-go hands deliveries over an unbuffered channel,
// so whether more are waiting cannot be seen on it; on the returned channel
// len() tells, which is what batching acks and preparation relies on. size
// should exceed the prefetch (the broker has no more outstanding, give or
// take a stream chunk); a fuller buffer only makes the pump wait. The reader
// must keep reading until the channel closes (see drainLater), so the pump
// never blocks for good.
func pumpDeliveries(consumed <-chan amqp.Delivery, size int) chan amqp.Delivery {
	return pumpCounted(consumed, size, nil)
}

// pumpCounted is pumpDeliveries counting each delivery against budget (nil:
// none) as soon as it arrives; the consumer's handle releases it.
func pumpCounted(consumed <-chan amqp.Delivery, size int, budget *inflight) chan amqp.Delivery {
	deliveries := make(chan amqp.Delivery, size)
	go func() {
		defer close(deliveries)
		for d := range consumed {
			if budget != nil {
				budget.add(len(d.Body))
			}
			deliveries <- d
		}
	}()
	return deliveries
}

// drainLater discards, on another goroutine, whatever the pump still brings
// until its channel closes (with the AMQP channel or connection); those
// deliveries are never acked and return to the queue, or are read again
// from the stream.
func drainLater(deliveries <-chan amqp.Delivery) {
	go func() {
		for range deliveries {
		}
	}()
}

// preparer runs a Prepare function (ConsumerConfig.Prepare,
// ReplayConfig.Prepare) on batches of waiting deliveries in parallel. It is
// used by the one goroutine that receives from the pump.
type preparer struct {
	f        func(body []byte) any // nil: no preparation, batches of one
	maxBytes int                   // bodies prepared at once add up to at most this (0: any)
	batch    []amqp.Delivery
	prepared []any
}

// take returns d followed, if there is a Prepare, by the deliveries already
// waiting in deliveries, up to prepareBatch in all; it never blocks. The
// slice is reused by the next call. A closed channel is left for the
// caller's next receive to notice: a zero Delivery must never enter a batch
// (tag 0 with multiple=true would ack everything outstanding).
func (p *preparer) take(d amqp.Delivery, deliveries <-chan amqp.Delivery) []amqp.Delivery {
	batch := append(p.batch[:0], d)
	if p.f != nil {
		// Only the caller receives, so a waiting delivery is there to
		// take without blocking.
		for len(batch) < prepareBatch && len(deliveries) > 0 {
			next, ok := <-deliveries
			if !ok {
				break
			}
			batch = append(batch, next)
		}
	}
	p.batch = batch
	return batch
}

// prepare returns the Prepare results for batch, in its order (all nil
// without a Prepare), computed on up to GOMAXPROCS goroutines. The slice is
// reused by the next call.
func (p *preparer) prepare(batch []amqp.Delivery) []any {
	p.prepared = slices.Grow(p.prepared[:0], len(batch))[:len(batch)]
	clear(p.prepared)
	f := p.f
	if f == nil {
		return p.prepared
	}
	// Waves of consecutive bodies adding up to at most maxBytes (a larger
	// body alone), each prepared in parallel.
	for from := 0; from < len(batch); {
		to, size := from+1, len(batch[from].Body)
		for to < len(batch) && (p.maxBytes <= 0 || size+len(batch[to].Body) <= p.maxBytes) {
			size += len(batch[to].Body)
			to++
		}
		p.prepareWave(batch[from:to], p.prepared[from:to])
		from = to
	}
	return p.prepared
}

// prepareWave prepares batch into out on up to GOMAXPROCS goroutines.
func (p *preparer) prepareWave(batch []amqp.Delivery, out []any) {
	workers := min(len(batch), runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i, d := range batch {
			out[i] = p.f(d.Body)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(batch); i += workers {
				out[i] = p.f(batch[i].Body)
			}
		}()
	}
	wg.Wait()
}

// stop cancels the consumer, then handles and acks every delivery already
// received. If the broker does not answer within stopTimeout the connection is
// closed and the unacked deliveries return to the queue.
func (s *consumerSession) stop(tag string, deliveries <-chan amqp.Delivery) {
	t := time.AfterFunc(stopTimeout, func() { _ = s.conn.CloseDeadline(time.Now().Add(time.Second)) })
	defer t.Stop()
	if err := s.acks.flush(); err != nil {
		s.c.log.Warn("stopping: cannot ack handled deliveries; they return to the queue", "err", err)
		return
	}
	// The cancel's reply may wait behind deliveries (the inflight budget),
	// so deliveries are handled while it is under way; the pump's channel
	// closes once the broker confirmed the cancel (or the channel closed).
	cancelled := make(chan error, 1)
	go func() { cancelled <- s.ch.Cancel(tag, false) }()
	n := 0
	for d := range deliveries {
		var prepared any
		if s.c.cfg.Prepare != nil {
			prepared = s.c.cfg.Prepare(d.Body)
		}
		if err := s.handle(d, prepared, false); err != nil {
			s.c.log.Warn("stopping: cannot settle a delivery; unacked messages return to the queue", "err", err)
			return
		}
		n++
	}
	if err := <-cancelled; err != nil {
		s.c.log.Warn("basic.cancel failed; unacked messages return to the queue", "err", err)
		return
	}
	_ = s.pch.Close()
	_ = s.ch.Close()
	s.c.log.Info("consumer stopped", "drained", n)
}

// handle calls the handler and settles d; more says further deliveries are
// already waiting, so a successful ack may wait for the batch. An error
// means the channel is unusable and the session must end.
func (s *consumerSession) handle(d amqp.Delivery, prepared any, more bool) error {
	defer s.budget.release(len(d.Body))
	c := s.c
	m := Message{Body: d.Body, Headers: d.Headers, Redelivered: d.Redelivered, Timestamp: d.Timestamp, Offset: -1, Prepared: prepared}
	herr := c.h(s.hctx, m)
	if herr == nil {
		c.transientRun = 0
		s.acks.note(d.DeliveryTag)
		if more && s.acks.pending < ackBatch {
			return nil
		}
		return s.acks.flush()
	}
	// Settle the batch before this delivery gets its own ack or nack: a
	// multiple ack must never cover a delivery that is to be requeued.
	if err := s.acks.flush(); err != nil {
		return err
	}
	if reason, ok := IsDeadLetter(herr); ok {
		c.transientRun = 0
		err := s.deadLetter(d, reason)
		if errors.Is(err, errDeadLetterRefused) {
			// The dead-letter queue is full (x-overflow reject-publish).
			// Its bound exists so that rejects cannot grow it without end;
			// requeueing would block the queue behind them instead. The
			// message is dropped, and counted.
			c.deadLettersDropped.Add(1)
			if ok, suppressed := c.dropLog.allow(time.Now()); ok {
				c.log.Warn("dead-letter queue full: rejected message dropped", "reason", reason,
					"dead_letter_queue", c.cfg.Topology.DeadLetterQueue, "dropped_total", c.deadLettersDropped.Load(), "suppressed_logs", suppressed)
			}
			err = nil
		}
		if err != nil {
			c.log.Error("cannot dead-letter message; requeueing it", "reason", reason, "err", err)
			if nerr := s.ch.Nack(d.DeliveryTag, false, true); nerr != nil {
				return fmt.Errorf("basic.nack: %w", nerr)
			}
			// End the session: the reconnect (with backoff) declares the
			// topology again, which restores a deleted dead-letter queue,
			// instead of spinning on redeliveries of the same message.
			return fmt.Errorf("dead-lettering failed: %w", err)
		}
		// Debug only: the handler knows what the message was and logs the
		// rejection itself (rate-limited); one line per message is enough.
		c.log.Debug("message dead-lettered", "reason", reason, "dead_letter_exchange", c.cfg.Topology.DeadLetterExchange,
			"bytes", len(d.Body), "redelivered", d.Redelivered)
		if err := s.ch.Ack(d.DeliveryTag, false); err != nil {
			return fmt.Errorf("basic.ack: %w", err)
		}
		return nil
	}

	c.transientRun++
	if ok, suppressed := c.transientLog.allow(time.Now()); ok {
		c.log.Warn("handler failed; requeueing message", "err", herr, "redelivered", d.Redelivered,
			"consecutive_failures", c.transientRun, "suppressed_logs", suppressed)
	}
	// Pause so that a failing dependency is not hammered by immediate redeliveries.
	pause := c.cfg.MinBackoff << min(c.transientRun-1, 20)
	if pause > maxRequeuePause || pause <= 0 {
		pause = maxRequeuePause
	}
	sleepCtx(s.ctx, pause)
	if err := s.ch.Nack(d.DeliveryTag, false, true); err != nil {
		return fmt.Errorf("basic.nack: %w", err)
	}
	return nil
}

// errDeadLetterRefused: the broker nacked a dead-lettered copy. A quorum
// queue nacks a publish when it is at its length limit with x-overflow
// reject-publish (RabbitMQ 3.10 site/maxlength.md, "Queue Overflow
// Behaviour"; a nack for an internal error is indistinguishable on the wire
// and is treated the same).
var errDeadLetterRefused = errors.New("broker nacked the dead-lettered copy")

// deadLetter publishes a copy of d to the dead-letter exchange and waits for
// the broker's confirm.
func (s *consumerSession) deadLetter(d amqp.Delivery, reason string) error {
	t := s.c.cfg.Topology
	headers := make(amqp.Table, len(d.Headers)+2)
	for k, v := range d.Headers {
		headers[k] = v
	}
	headers[HeaderReason] = reason
	headers[HeaderQueue] = t.Queue
	// UserId is left out: the broker rejects a user_id other than ours, and
	// Expiration too, so the copy does not expire in the dead-letter queue.
	msg := amqp.Publishing{
		Headers:         headers,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    amqp.Persistent,
		Priority:        d.Priority,
		CorrelationId:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		AppId:           d.AppId,
		Body:            d.Body,
	}
	dc, err := s.pch.PublishWithDeferredConfirm(t.DeadLetterExchange, d.RoutingKey, true, false, msg)
	if err != nil {
		return fmt.Errorf("publish to %q: %w", t.DeadLetterExchange, err)
	}
	timer := time.NewTimer(confirmTimeout)
	defer timer.Stop()
	select {
	case <-dc.Done():
	case <-timer.C:
		// A stuck broker: end the session; the message is redelivered later.
		_ = s.pch.Close()
		return fmt.Errorf("no publisher confirm from the broker within %s", confirmTimeout)
	}
	if !dc.Acked() {
		if s.pch.IsClosed() {
			return errors.New("channel closed before the broker confirmed the dead-lettered copy")
		}
		return errDeadLetterRefused
	}
	// A mandatory message that no queue took is returned before its ack.
	select {
	case r, ok := <-s.returns:
		if !ok {
			return errors.New("channel closed after the broker confirmed the dead-lettered copy")
		}
		return fmt.Errorf("dead-letter exchange %q routed the copy to no queue (%d %s)", t.DeadLetterExchange, r.ReplyCode, r.ReplyText)
	default:
	}
	return nil
}
