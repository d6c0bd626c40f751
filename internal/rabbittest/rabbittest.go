// Package rabbittest holds helpers for integration tests against the real
// RabbitMQ on 127.0.0.1:5672 (guest/guest). Every test declares uniquely
// named exchanges and queues (Name) and deletes them afterwards
// (DeleteQueues, DeleteExchanges). A test never skips when the broker is
// down: it fails, saying how to start it.
package rabbittest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// URL is the test broker.
const URL = "amqp://guest:guest@127.0.0.1:5672/"

// Name returns a unique name for an exchange or queue: prefix, the test name
// (sanitised) and a random suffix.
func Name(t testing.TB, prefix string) string {
	t.Helper()
	var b strings.Builder
	for _, r := range t.Name() {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := b.String()
	if len(name) > 120 {
		name = name[:120]
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return prefix + name + "." + hex.EncodeToString(rnd[:])
}

func dial() (*amqp.Connection, error) {
	return amqp.DialConfig(URL, amqp.Config{
		Dial: amqp.DefaultDial(5 * time.Second),
		Properties: amqp.Table{
			"connection_name": "rabbittest",
		},
	})
}

func brokerDown(t testing.TB, err error) {
	t.Helper()
	t.Fatalf("rabbittest: RabbitMQ is not reachable at 127.0.0.1:5672 as guest: %v\n"+
		"Start it with `rabbitmq-server -detached && rabbitmqctl await_startup` (or .ci/run).", err)
}

// Dial connects to the test broker and closes the connection when the test
// ends. It fails the test (never skips) if the broker is down.
func Dial(t testing.TB) *amqp.Connection {
	t.Helper()
	conn, err := dial()
	if err != nil {
		brokerDown(t, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Channel opens a channel on a new connection (see Dial).
func Channel(t testing.TB) *amqp.Channel {
	t.Helper()
	ch, err := Dial(t).Channel()
	if err != nil {
		t.Fatalf("rabbittest: open channel: %v", err)
	}
	return ch
}

// DeleteQueues registers a cleanup deleting these queues (streams included);
// a queue that does not exist is fine.
func DeleteQueues(t testing.TB, names ...string) {
	t.Helper()
	t.Cleanup(func() {
		cleanup(t, names, func(ch *amqp.Channel, name string) error {
			_, err := ch.QueueDelete(name, false, false, false)
			return err
		})
	})
}

// DeleteExchanges registers a cleanup deleting these exchanges; an exchange
// that does not exist is fine.
func DeleteExchanges(t testing.TB, names ...string) {
	t.Helper()
	t.Cleanup(func() {
		cleanup(t, names, func(ch *amqp.Channel, name string) error {
			return ch.ExchangeDelete(name, false, false)
		})
	})
}

// cleanup deletes each name, retrying a few times: deleting a stream can
// fail with INTERNAL_ERROR "coordinator_unavailable" while RabbitMQ's stream
// coordinator is busy (seen under load), and that error closes the whole
// connection, so each retry dials again.
func cleanup(t testing.TB, names []string, del func(*amqp.Channel, string) error) {
	for _, name := range names {
		var err error
		for attempt := range 6 {
			if attempt > 0 {
				time.Sleep(time.Duration(attempt) * 500 * time.Millisecond)
			}
			if err = deleteOnce(name, del); err == nil || isNotFound(err) {
				err = nil
				break
			}
		}
		if err != nil {
			t.Errorf("rabbittest: cleanup: delete %q: %v", name, err)
		}
	}
}

func deleteOnce(name string, del func(*amqp.Channel, string) error) error {
	conn, err := dial()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	return del(ch, name)
}

func isNotFound(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == amqp.NotFound
}

// Get fetches up to n messages from a queue with basic.get (auto-ack) and
// returns them; it stops early when the queue is empty.
func Get(t testing.TB, queue string, n int) []amqp.Delivery {
	t.Helper()
	conn, err := dial()
	if err != nil {
		brokerDown(t, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("rabbittest: open channel: %v", err)
	}
	var out []amqp.Delivery
	for len(out) < n {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("rabbittest: basic.get from %q: %v", queue, err)
		}
		if !ok {
			break
		}
		out = append(out, d)
	}
	return out
}

// MessageCount returns the number of ready messages in a queue (passive
// declare). Streams always report 0.
func MessageCount(t testing.TB, queue string) int {
	t.Helper()
	conn, err := dial()
	if err != nil {
		brokerDown(t, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("rabbittest: open channel: %v", err)
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("rabbittest: passive declare %q: %v", queue, err)
	}
	return q.Messages
}

// Publish publishes bodies to an exchange (persistent, with publisher
// confirms) and waits until the broker confirmed them all.
func Publish(t testing.TB, exchange string, bodies ...[]byte) {
	t.Helper()
	PublishWithHeaders(t, exchange, nil, bodies...)
}

// PublishWithHeaders is Publish with headers on every message.
func PublishWithHeaders(t testing.TB, exchange string, headers amqp.Table, bodies ...[]byte) {
	t.Helper()
	conn, err := dial()
	if err != nil {
		brokerDown(t, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("rabbittest: open channel: %v", err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("rabbittest: confirm.select: %v", err)
	}
	dcs := make([]*amqp.DeferredConfirmation, 0, len(bodies))
	for _, b := range bodies {
		dc, err := ch.PublishWithDeferredConfirm(exchange, "", false, false, amqp.Publishing{
			Headers: headers, DeliveryMode: amqp.Persistent, Timestamp: time.Now(), Body: b,
		})
		if err != nil {
			t.Fatalf("rabbittest: publish to %q: %v", exchange, err)
		}
		dcs = append(dcs, dc)
	}
	for i, dc := range dcs {
		if !dc.Wait() {
			t.Fatalf("rabbittest: message %d to %q not confirmed", i, exchange)
		}
	}
}

// WaitFor polls cond every 10ms until it holds, failing the test with msg
// after timeout.
func WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// abort closes c with a TCP RST, like a network failure.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
