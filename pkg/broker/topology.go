package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Defaults shared by the exporter and the datasource.
const (
	DefaultExchange      = "chef_reports"
	DefaultQueue         = "runlens.exporter"
	DefaultDeliveryLimit = 20
	DefaultStream        = "runlens.history"
	DefaultMaxAge        = 7 * 24 * time.Hour
	// DefaultMaxBytes caps the history stream at 20 GB (decimal) so that a
	// burst cannot fill the broker's disk and trigger a disk alarm, which would
	// block every publisher of the fleet.
	DefaultMaxBytes int64 = 20_000_000_000
	// DefaultDeadLetterMaxLength and DefaultDeadLetterMaxBytes bound the
	// dead-letter queue, so that a flood of garbage cannot grow it until the
	// broker's disk alarm blocks every publisher.
	DefaultDeadLetterMaxLength int64 = 10_000
	DefaultDeadLetterMaxBytes  int64 = 256 << 20
)

// Header names added to messages the consumer dead-letters.
const (
	HeaderReason = "x-runlens-reason"
	HeaderQueue  = "x-runlens-queue"
)

// Topology is the exporter's side of the broker. Zero fields take defaults
// (Defaults()).
type Topology struct {
	Exchange           string // fanout, durable; default "chef_reports"
	Queue              string // durable quorum queue bound to Exchange; default "runlens.exporter"
	DeadLetterExchange string // default Queue+".dlx" (fanout, durable)
	DeadLetterQueue    string // default Queue+".dead" (durable, quorum), bound to DeadLetterExchange
	// DeliveryLimit is x-delivery-limit on the quorum queue, so a message that
	// keeps crashing consumers is dead-lettered by the broker; default 20.
	DeliveryLimit int
	// DeadLetterMaxLength and DeadLetterMaxBytes are the dead-letter queue's
	// x-max-length and x-max-length-bytes, declared with x-overflow
	// reject-publish: when it is full the broker refuses (nacks) further dead
	// letters instead of dropping the oldest, and the consumer counts them
	// (Consumer.DeadLettersDropped). 0 means the default (10,000 messages,
	// 256 MiB of bodies); a negative value leaves the argument unset, for an
	// operator who bounds the queue with a policy instead.
	DeadLetterMaxLength, DeadLetterMaxBytes int64
}

// Defaults returns t with zero fields set to their defaults.
func (t Topology) Defaults() Topology {
	t.Exchange = orDefault(t.Exchange, DefaultExchange)
	t.Queue = orDefault(t.Queue, DefaultQueue)
	t.DeadLetterExchange = orDefault(t.DeadLetterExchange, t.Queue+".dlx")
	t.DeadLetterQueue = orDefault(t.DeadLetterQueue, t.Queue+".dead")
	if t.DeliveryLimit <= 0 {
		t.DeliveryLimit = DefaultDeliveryLimit
	}
	t.DeadLetterMaxLength = orDefault(t.DeadLetterMaxLength, DefaultDeadLetterMaxLength)
	t.DeadLetterMaxBytes = orDefault(t.DeadLetterMaxBytes, DefaultDeadLetterMaxBytes)
	return t
}

// DeadLetterArguments returns the x-arguments the dead-letter queue is
// declared with (after Defaults): a quorum queue, with its length bounds
// and x-overflow reject-publish when it has any. Quorum queues support
// reject-publish (not reject-publish-dlx), and with publisher confirms the
// broker answers a refused publish with basic.nack (RabbitMQ 3.10
// site/quorum-queues.md "Queue Length Limit", site/maxlength.md "Queue
// Overflow Behaviour").
func (t Topology) DeadLetterArguments() amqp.Table {
	t = t.Defaults()
	args := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
	if t.DeadLetterMaxLength > 0 {
		args["x-max-length"] = t.DeadLetterMaxLength
	}
	if t.DeadLetterMaxBytes > 0 {
		args["x-max-length-bytes"] = t.DeadLetterMaxBytes
	}
	if len(args) > 1 {
		args["x-overflow"] = "reject-publish"
	}
	return args
}

// deadLetterLengthArgs are the arguments of the dead-letter queue that an
// older runlens (or one told to leave them to a policy) did not set. A
// dead-letter queue that differs only in them is used as it is.
var deadLetterLengthArgs = map[string]bool{"x-max-length": true, "x-max-length-bytes": true, "x-overflow": true}

// errDeadLetterLengthArgs wraps the 406 of a dead-letter queue that exists
// with other length arguments.
type errDeadLetterLengthArgs struct{ err error }

func (e *errDeadLetterLengthArgs) Error() string { return e.err.Error() }
func (e *errDeadLetterLengthArgs) Unwrap() error { return e.err }

// Declare declares (with defaults applied) the fanout exchange, the durable
// quorum queue bound to it (x-queue-type quorum, x-dead-letter-exchange,
// x-delivery-limit), the dead-letter exchange (fanout) and the dead-letter
// quorum queue bound to it (DeadLetterArguments). It is idempotent. If an
// entity already exists with other arguments the broker answers 406
// PRECONDITION_FAILED, which closes ch; the returned error then wraps an
// *amqp091.Error with that code. The consumer declares through
// declareTopology, which accepts a dead-letter queue of other length bounds.
func Declare(ch *amqp.Channel, t Topology) error {
	return declareOn(ch, t, false)
}

// declareOn is Declare; with existingDLQ the dead-letter queue is declared
// passively (it must exist, with whatever arguments it has).
func declareOn(ch *amqp.Channel, t Topology, existingDLQ bool) error {
	t = t.Defaults()
	for _, ex := range []string{t.Exchange, t.DeadLetterExchange} {
		if err := ch.ExchangeDeclare(ex, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %q: %w", ex, err)
		}
	}
	if existingDLQ {
		if _, err := ch.QueueDeclarePassive(t.DeadLetterQueue, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare dead-letter queue %q passively: %w", t.DeadLetterQueue, err)
		}
	} else if _, err := ch.QueueDeclare(t.DeadLetterQueue, true, false, false, false, t.DeadLetterArguments()); err != nil {
		err = fmt.Errorf("declare dead-letter queue %q: %w", t.DeadLetterQueue, err)
		if isCode(err, amqp.PreconditionFailed) && deadLetterLengthArgs[inequivalentArg(err)] {
			return &errDeadLetterLengthArgs{err: err}
		}
		return err
	}
	if err := ch.QueueBind(t.DeadLetterQueue, "", t.DeadLetterExchange, false, nil); err != nil {
		return fmt.Errorf("bind queue %q to exchange %q: %w", t.DeadLetterQueue, t.DeadLetterExchange, err)
	}
	if _, err := ch.QueueDeclare(t.Queue, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
		"x-dead-letter-exchange": t.DeadLetterExchange,
		"x-delivery-limit":       int64(t.DeliveryLimit),
	}); err != nil {
		return fmt.Errorf("declare queue %q: %w", t.Queue, err)
	}
	if err := ch.QueueBind(t.Queue, "", t.Exchange, false, nil); err != nil {
		return fmt.Errorf("bind queue %q to exchange %q: %w", t.Queue, t.Exchange, err)
	}
	return nil
}

// declareTopology opens a channel on conn and declares t on it. A dead-letter
// queue that exists with other length arguments (declared by a runlens
// before the bounds, or bounded by a policy with the flags at 0) cannot be
// redeclared (406 PRECONDITION_FAILED, which closes the channel), and
// refusing to start over it would break every upgrade: it is then used as it
// is, on a new channel, with a warning that says how to bound it. It returns
// the channel to keep using.
func declareTopology(conn *amqp.Connection, t Topology, log *slog.Logger) (*amqp.Channel, error) {
	t = t.Defaults()
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	err = declareOn(ch, t, false)
	var lengthErr *errDeadLetterLengthArgs
	if !errors.As(err, &lengthErr) {
		if err != nil {
			closeQuietly(ch)
			return nil, err
		}
		return ch, nil
	}
	closeQuietly(ch)
	if ch, err = conn.Channel(); err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := declareOn(ch, t, true); err != nil {
		closeQuietly(ch)
		return nil, err
	}
	loggerOrDefault(log).Warn("dead-letter queue exists with other length bounds than configured; using it as it is. "+
		"Unless a policy bounds it, bound it with rabbitmqctl set_policy (max-length, max-length-bytes, overflow reject-publish) "+
		"and set --amqp.dead-letter-max-length=0 --amqp.dead-letter-max-bytes=0, or delete it while empty so that runlens declares it bounded (README, \"Security and bounds\")",
		"queue", t.DeadLetterQueue, "setting", inequivalentArg(lengthErr), "wanted", fmt.Sprint(t.DeadLetterArguments()),
		"broker_reason", reasonOf(lengthErr))
	return ch, nil
}

// History is the shared stream of every report, declared by whichever program
// comes first, with the same arguments.
type History struct {
	Stream   string // default "runlens.history"
	Exchange string // bound to it; default "chef_reports"
	// MaxAge is the x-max-age retention; 0 means 7 days, a negative value
	// means no age limit. It is sent in the broker's own notation with the
	// largest exact unit ("7D", "36h", "90m", "45s"; RabbitMQ 3.10 accepts the
	// units Y M D h m s and rejects anything else, e.g. "7d" or "P7D").
	MaxAge time.Duration
	// MaxBytes is x-max-length-bytes; 0 means 20 GB (DefaultMaxBytes), a
	// negative value leaves it unset (retention by age only).
	MaxBytes int64
}

// Defaults returns h with zero fields set to their defaults.
func (h History) Defaults() History {
	h.Stream = orDefault(h.Stream, DefaultStream)
	h.Exchange = orDefault(h.Exchange, DefaultExchange)
	h.MaxAge = orDefault(h.MaxAge, DefaultMaxAge)
	h.MaxBytes = orDefault(h.MaxBytes, DefaultMaxBytes)
	return h
}

// Arguments returns the x-arguments the stream is declared with (after
// Defaults).
func (h History) Arguments() amqp.Table {
	h = h.Defaults()
	args := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeStream}
	if h.MaxAge > 0 {
		args[amqp.StreamMaxAgeArg] = FormatMaxAge(h.MaxAge)
	}
	if h.MaxBytes > 0 {
		args[amqp.StreamMaxLenBytesArg] = h.MaxBytes
	}
	return args
}

// FormatMaxAge encodes d as RabbitMQ expects x-max-age: an integer and the
// largest unit among D, h, m, s that represents d exactly (sub-second parts
// round up to the next second).
func FormatMaxAge(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dD", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", (d+time.Second-1)/time.Second)
}

// streamSetting lists what may legitimately differ between two declarations
// of a stream. The broker names the first differing setting, checking
// x-queue-type only after the other arguments, so anything else (durable,
// x-message-ttl, x-queue-type, ...) proves the existing queue is not a stream;
// these do not, and Replay checks deliveries for stream offsets as well.
var streamSetting = map[string]bool{
	amqp.StreamMaxAgeArg:              true,
	amqp.StreamMaxLenBytesArg:         true,
	amqp.StreamMaxSegmentSizeBytesArg: true,
	"x-queue-leader-locator":          true,
	"x-initial-cluster-size":          true,
}

var inequivalentArgRE = regexp.MustCompile(`inequivalent arg '([^']+)'`)

// inequivalentArg extracts the argument name from a 406 PRECONDITION_FAILED
// reason such as "inequivalent arg 'x-max-age' for queue ...".
func inequivalentArg(err error) string {
	var ae *amqp.Error
	if errors.As(err, &ae) {
		if m := inequivalentArgRE.FindStringSubmatch(ae.Reason); m != nil {
			return m[1]
		}
	}
	return "unknown"
}

// DeclareHistory declares the fanout exchange and the stream (x-queue-type
// stream, x-max-age, x-max-length-bytes) and binds the stream to the exchange.
//
// If the stream already exists with different arguments (the broker answers
// 406 PRECONDITION_FAILED, which closes the channel) it opens a new channel,
// declares the stream passively, logs a warning naming the differing setting
// and carries on with the existing stream. A queue of that name that is
// recognisably not a stream (another x-queue-type, not durable, arguments a
// stream cannot have) is a *ConfigError. It returns the channel to keep using; the caller
// closes it.
func DeclareHistory(conn *amqp.Connection, h History, log *slog.Logger) (*amqp.Channel, error) {
	h = h.Defaults()
	log = loggerOrDefault(log)
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.ExchangeDeclare(h.Exchange, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		closeQuietly(ch)
		if isCode(err, amqp.PreconditionFailed) {
			return nil, &ConfigError{msg: fmt.Sprintf("broker: exchange %q exists with other settings: %v", h.Exchange, err), err: err}
		}
		return nil, fmt.Errorf("declare exchange %q: %w", h.Exchange, err)
	}
	if ch, err = declareStream(conn, ch, h.Stream, h.Arguments(), log); err != nil {
		return nil, err
	}
	if err := ch.QueueBind(h.Stream, "", h.Exchange, false, nil); err != nil {
		closeQuietly(ch)
		return nil, fmt.Errorf("bind stream %q to exchange %q: %w", h.Stream, h.Exchange, err)
	}
	return ch, nil
}

func reasonOf(err error) string {
	var ae *amqp.Error
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return err.Error()
}
