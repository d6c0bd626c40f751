package broker

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// inflight bounds the bytes of deliveries a consumer holds. AMQP's prefetch
// counts messages, not bytes (RabbitMQ does not implement basic.qos's
// prefetch-size), and amqp091-go reads every delivery the broker sends into
// memory at once, so a prefetch of 256 lets 256 messages of the broker's
// largest size in. Instead the consumer's connection stops reading its
// socket while the bodies of deliveries received and not yet handled add up
// to the limit: TCP flow control then keeps further deliveries at the
// broker, queued, until handled ones free the budget. A delivery is always
// read once the consumer holds nothing, so one message larger than the
// limit still gets through (and is rejected if it is over the report size
// limit).
//
// Everything else on the gated connection waits too, so the consumer never
// waits for a broker reply on it while it holds deliveries: dead-lettered
// copies go out on a connection of their own, and a graceful stop cancels
// the consumer while it goes on handling deliveries (see consumerSession).
type inflight struct {
	limit int64 // ≤ 0: no limit
	held  atomic.Int64

	mu     sync.Mutex
	freed  *sync.Cond
	opened bool // the session is ending: never wait again
}

func newInflight(limit int64) *inflight {
	f := &inflight{limit: limit}
	f.freed = sync.NewCond(&f.mu)
	return f
}

// add counts a delivery received.
func (f *inflight) add(n int) { f.held.Add(int64(n)) }

// release counts a delivery handled (or given back), waking a waiting read.
func (f *inflight) release(n int) {
	if n == 0 {
		return
	}
	if f.held.Add(-int64(n)) < f.limit {
		f.mu.Lock()
		f.freed.Broadcast()
		f.mu.Unlock()
	}
}

// open ends every wait for good: once the session ends nothing releases
// deliveries any more, and closing the connection needs its replies read.
func (f *inflight) open() {
	f.mu.Lock()
	f.opened = true
	f.freed.Broadcast()
	f.mu.Unlock()
}

func (f *inflight) full() bool { return f.limit > 0 && f.held.Load() >= f.limit }

// wait blocks while the budget is spent; it reports whether it waited.
func (f *inflight) wait() bool {
	if !f.full() {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	waited := false
	for !f.opened && f.full() {
		f.freed.Wait()
		waited = true
	}
	return waited
}

// gatedConn is the consumer's TCP connection: a read waits for the
// inflight budget first.
type gatedConn struct {
	net.Conn
	budget *inflight

	mu sync.Mutex
	// The read deadline amqp091-go last set and when: it re-arms three
	// heartbeats ahead after each frame it reads. Time spent waiting for the
	// budget is the consumer's, not the broker's silence, so after a wait
	// the same span is re-armed from now.
	deadline, armed time.Time
}

func gate(budget *inflight) func(net.Conn) net.Conn {
	return func(c net.Conn) net.Conn { return &gatedConn{Conn: c, budget: budget} }
}

func (c *gatedConn) Read(p []byte) (int, error) {
	if c.budget.wait() {
		c.mu.Lock()
		if !c.deadline.IsZero() {
			_ = c.Conn.SetReadDeadline(time.Now().Add(c.deadline.Sub(c.armed)))
		}
		c.mu.Unlock()
	}
	return c.Conn.Read(p)
}

func (c *gatedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline, c.armed = t, time.Now()
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *gatedConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline, c.armed = t, time.Now()
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}
