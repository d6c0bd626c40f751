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
	return t
}

// Declare declares (with defaults applied) the fanout exchange, the durable
// quorum queue bound to it (x-queue-type quorum, x-dead-letter-exchange,
// x-delivery-limit), the dead-letter exchange (fanout) and the dead-letter
// quorum queue bound to it. It is idempotent. If an entity already exists with
// other arguments the broker answers 406 PRECONDITION_FAILED, which closes ch;
// the returned error then wraps an *amqp091.Error with that code.
func Declare(ch *amqp.Channel, t Topology) error {
	t = t.Defaults()
	for _, ex := range []string{t.Exchange, t.DeadLetterExchange} {
		if err := ch.ExchangeDeclare(ex, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %q: %w", ex, err)
		}
	}
	if _, err := ch.QueueDeclare(t.DeadLetterQueue, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg: amqp.QueueTypeQuorum,
	}); err != nil {
		return fmt.Errorf("declare dead-letter queue %q: %w", t.DeadLetterQueue, err)
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
