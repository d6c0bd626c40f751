package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Streams runlens keeps for itself (the fleet snapshots of pkg/snapshot),
// next to the history: reading one from an offset, reading its last
// messages, an exclusive lock, and publishing to it with confirms.

// Dial connects to the broker at url with a client-provided connection
// name, giving up when ctx is done; the error never repeats a password.
func Dial(ctx context.Context, url, connName string) (*amqp.Connection, error) {
	if err := validateURL(url); err != nil {
		return nil, err
	}
	return dial(ctx, url, connName)
}

// Stream is a stream queue of runlens' own, bound to no exchange: its
// writers publish to it through the default exchange.
type Stream struct {
	Name string
	// MaxAge is x-max-age; 0 or negative leaves it unset.
	MaxAge time.Duration
	// MaxBytes is x-max-length-bytes; 0 or negative leaves it unset.
	MaxBytes int64
	// MaxSegmentBytes is x-stream-max-segment-size-bytes; 0 or negative
	// leaves it unset (RabbitMQ's default is 500 MB). Retention removes
	// whole segments only, so a small stream needs small segments for
	// MaxBytes to mean anything.
	MaxSegmentBytes int64
}

// Arguments returns the x-arguments the stream is declared with.
func (s Stream) Arguments() amqp.Table {
	args := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeStream}
	if s.MaxAge > 0 {
		args[amqp.StreamMaxAgeArg] = FormatMaxAge(s.MaxAge)
	}
	if s.MaxBytes > 0 {
		args[amqp.StreamMaxLenBytesArg] = s.MaxBytes
	}
	if s.MaxSegmentBytes > 0 {
		args[amqp.StreamMaxSegmentSizeBytesArg] = s.MaxSegmentBytes
	}
	return args
}

// DeclareStream declares the stream (durable, s.Arguments()) on a new
// channel of conn, which it returns for the caller to use and close. As
// DeclareHistory does, it accepts an existing stream declared with other
// retention settings (with a warning naming the setting) and refuses, as a
// *ConfigError, a queue of that name that is not a stream.
func DeclareStream(conn *amqp.Connection, s Stream, log *slog.Logger) (*amqp.Channel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	return declareStream(conn, ch, s.Name, s.Arguments(), loggerOrDefault(log))
}

// declareStream declares the stream on ch, which it returns, or (after a
// PRECONDITION_FAILED, which closes ch) on a new channel of conn.
func declareStream(conn *amqp.Connection, ch *amqp.Channel, name string, args amqp.Table, log *slog.Logger) (*amqp.Channel, error) {
	var err error
	if _, declErr := ch.QueueDeclare(name, true, false, false, false, args); declErr != nil {
		closeQuietly(ch)
		if !isCode(declErr, amqp.PreconditionFailed) {
			return nil, fmt.Errorf("declare stream %q: %w", name, declErr)
		}
		setting := inequivalentArg(declErr)
		if !streamSetting[setting] {
			return nil, &ConfigError{msg: fmt.Sprintf("broker: queue %q exists but is not a stream: %v", name, declErr), err: declErr}
		}
		if ch, err = conn.Channel(); err != nil {
			return nil, fmt.Errorf("open channel: %w", err)
		}
		if _, err := ch.QueueDeclarePassive(name, true, false, false, false, nil); err != nil {
			closeQuietly(ch)
			return nil, fmt.Errorf("declare stream %q passively: %w", name, err)
		}
		log.Warn("stream exists with different settings; using it as it is",
			"stream", name, "setting", setting, "broker_reason", reasonOf(declErr))
	}
	return ch, nil
}

// ErrNoStream is returned by ReadStream for a stream that was never
// declared.
var ErrNoStream = errors.New("broker: no such stream")

// StreamExists declares the stream passively on a channel of its own: false
// when there is no queue of that name. A reader that must not create what
// only writers declare uses it.
func StreamExists(conn *amqp.Connection, name string) (bool, error) {
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	defer closeQuietly(ch)
	if _, err := ch.QueueDeclarePassive(name, true, false, false, false, nil); err != nil {
		if isCode(err, amqp.NotFound) {
			return false, nil
		}
		return false, fmt.Errorf("declare stream %q passively: %w", name, err)
	}
	return true, nil
}

// Offsets of a stream, as x-stream-offset takes them, for ReadStream.
const (
	OffsetFirst = "first"
	// OffsetLast starts at the last chunk the stream wrote (a chunk is a
	// batch of messages the broker stored together; the last message is in
	// it, and usually a few before it).
	OffsetLast = "last"
)

// ReadEnd says why ReadStream returned.
type ReadEnd int

const (
	// ReadStopped: the handler returned false.
	ReadStopped ReadEnd = iota
	// ReadQuiet: nothing arrived for the quiet time (the end of what the
	// stream holds, as far as a reader can tell).
	ReadQuiet
)

// ReadStream consumes stream from offset (an int64 offset, OffsetFirst,
// OffsetLast, or a time.Time) on a channel of its own, handing each message
// to h in stream order, with Message.Offset set, until h returns false or
// nothing arrives for quiet. It acks in batches so the broker keeps
// sending, and cancels its consumer before returning. An offset past the
// end waits for that offset to be written.
func ReadStream(ctx context.Context, conn *amqp.Connection, stream string, offset any, prefetch int, quiet time.Duration, h func(Message) bool) (ReadEnd, error) {
	if prefetch <= 0 {
		prefetch = 100
	}
	ch, err := conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("open channel: %w", err)
	}
	defer closeQuietly(ch)
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return 0, fmt.Errorf("basic.qos: %w", err)
	}
	tag := fmt.Sprintf("runlens-read-%d-%s", os.Getpid(), randomSuffix())
	consumed, err := ch.Consume(stream, tag, false, false, false, false, amqp.Table{"x-stream-offset": offset})
	if err != nil {
		if isCode(err, amqp.NotFound) {
			return 0, fmt.Errorf("%w: %q", ErrNoStream, stream)
		}
		return 0, fmt.Errorf("basic.consume %q: %w", stream, err)
	}
	deliveries := pumpDeliveries(consumed, prefetch+1)
	defer drainLater(deliveries)
	ackEvery := max(1, prefetch/4)
	acks := multiAck{ch: ch}
	idle := time.NewTimer(quiet)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case e := <-chClosed:
			return 0, closedErr("channel", e)
		case <-idle.C:
			if len(deliveries) > 0 {
				idle.Reset(quiet)
				continue
			}
			_ = acks.flush()
			_ = ch.Cancel(tag, false)
			return ReadQuiet, nil
		case d, ok := <-deliveries:
			if !ok {
				return 0, errors.New("delivery channel closed (consumer cancelled by the broker or channel closed)")
			}
			off := streamOffset(d.Headers)
			if off < 0 {
				_ = ch.Nack(d.DeliveryTag, true, true)
				return 0, &ConfigError{msg: fmt.Sprintf("broker: queue %q is not a stream (its deliveries carry no x-stream-offset)", stream)}
			}
			more := h(Message{Body: d.Body, Headers: d.Headers, Redelivered: d.Redelivered, Timestamp: d.Timestamp, Offset: off})
			acks.note(d.DeliveryTag)
			if !more {
				_ = acks.flush()
				_ = ch.Cancel(tag, false)
				return ReadStopped, nil
			}
			if acks.pending >= ackEvery || len(deliveries) == 0 {
				if err := acks.flush(); err != nil {
					return 0, err
				}
			}
			idle.Reset(quiet)
		}
	}
}

// LastOffset returns the offset of the last message stream holds: it reads
// the stream's last chunk (see OffsetLast) until nothing more arrives for
// quiet, until a message stamped after the call arrives (published since:
// AMQP timestamps have whole seconds, so a later second is later), or until
// ctx is done (then it returns the highest offset read by then, if any). ok
// is false for an empty stream. On a stream that keeps growing it is the end
// as of about when it was called, never earlier.
func LastOffset(ctx context.Context, conn *amqp.Connection, stream string, quiet time.Duration) (offset int64, ok bool, err error) {
	offset = -1
	called := time.Now()
	_, err = ReadStream(ctx, conn, stream, OffsetLast, 1000, quiet, func(m Message) bool {
		if m.Timestamp.After(called) {
			// Everything before it was written before it, at about
			// the call or earlier.
			offset = max(offset, m.Offset-1)
			return false
		}
		offset = max(offset, m.Offset)
		return true
	})
	if err != nil && offset >= 0 && errors.Is(err, ctx.Err()) {
		err = nil
	}
	return offset, offset >= 0, err
}

// TryLock declares an exclusive, auto-deleted queue named name on conn: at
// most one connection of the whole broker (or cluster) holds it at a time,
// and the broker deletes it when that connection closes, also when its
// process dies. ok is false when another connection holds it (RabbitMQ
// answers 405 RESOURCE_LOCKED). The lock is released by closing conn.
func TryLock(conn *amqp.Connection, name string) (ok bool, err error) {
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	defer closeQuietly(ch)
	if _, err := ch.QueueDeclare(name, false, true, true, false, nil); err != nil {
		if isCode(err, amqp.ResourceLocked) {
			return false, nil
		}
		return false, fmt.Errorf("declare lock queue %q: %w", name, err)
	}
	return true, nil
}

// StreamWriter publishes persistent messages straight to a stream (through
// the default exchange) with publisher confirms, pipelined: Write returns
// once the message is sent, Flush once every message is confirmed. It is not
// safe for concurrent use.
type StreamWriter struct {
	ch       *amqp.Channel
	stream   string
	window   int
	inflight []*amqp.DeferredConfirmation
}

// NewStreamWriter opens a confirm-mode channel on conn for stream. window
// (default 64 when <= 0) bounds the unconfirmed messages.
func NewStreamWriter(conn *amqp.Connection, stream string, window int) (*StreamWriter, error) {
	if window <= 0 {
		window = 64
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		closeQuietly(ch)
		return nil, fmt.Errorf("confirm.select: %w", err)
	}
	return &StreamWriter{ch: ch, stream: stream, window: window}, nil
}

// Write sends body (which may be reused once Write returns: the client has
// written it to the connection by then).
func (w *StreamWriter) Write(ctx context.Context, body []byte, headers amqp.Table) error {
	if len(w.inflight) >= w.window {
		if err := w.waitOldest(ctx); err != nil {
			return err
		}
	}
	dc, err := w.ch.PublishWithDeferredConfirmWithContext(ctx, "", w.stream, false, false, publishing(body, headers))
	if err != nil {
		return fmt.Errorf("broker: publish to stream %q: %w", w.stream, err)
	}
	w.inflight = append(w.inflight, dc)
	return nil
}

func (w *StreamWriter) waitOldest(ctx context.Context) error {
	dc := w.inflight[0]
	w.inflight[0] = nil
	w.inflight = w.inflight[1:]
	return waitConfirm(ctx, w.ch, dc)
}

// Flush waits until the broker confirmed every message written.
func (w *StreamWriter) Flush(ctx context.Context) error {
	for len(w.inflight) > 0 {
		if err := w.waitOldest(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the writer's channel; unconfirmed messages may or may not
// have been stored.
func (w *StreamWriter) Close() error { return w.ch.Close() }
