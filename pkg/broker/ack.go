package broker

import (
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ackBatch bounds how many handled deliveries wait for one multiple ack.
const ackBatch = 64

// multiAck batches acknowledgements: one basic.ack with multiple=true
// settles every delivery noted since the last one sent. Each ack is a socket
// write; batching them while more deliveries are waiting saves most of those
// writes, and for a stream consumer each ack is also credit back. Its users
// note a delivery only once it is handled (or skipped), and flush as soon as
// no further delivery is waiting, so that an idle reader holds nothing
// unacked and a multiple ack never covers a delivery not yet handled.
type multiAck struct {
	ch      *amqp.Channel
	tag     uint64 // the last delivery noted
	pending int    // deliveries noted since the last ack
}

// note records the delivery tag as handled (or skipped).
func (a *multiAck) note(tag uint64) {
	a.tag = tag
	a.pending++
}

// flush sends the pending multiple ack, if any.
func (a *multiAck) flush() error {
	if a.pending == 0 {
		return nil
	}
	a.pending = 0
	if err := a.ch.Ack(a.tag, true); err != nil {
		return fmt.Errorf("basic.ack: %w", err)
	}
	return nil
}
