package rabbittest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Broker is the address the proxy forwards to.
const Broker = "127.0.0.1:5672"

// Proxy is a loopback TCP proxy in front of the broker so tests can cut
// connections abruptly (like a network failure or a broker restart) without
// touching the real broker.
type Proxy struct {
	ln net.Listener

	mu       sync.Mutex
	pairs    map[*pair]struct{}
	paused   bool
	closed   bool
	accepted int
	wg       sync.WaitGroup
}

type pair struct {
	client, server net.Conn
	cut            bool
}

// NewProxy listens on a random loopback port; the test's cleanup closes it
// and every connection through it.
func NewProxy(t testing.TB) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("rabbittest: proxy listen: %v", err)
	}
	p := &Proxy{ln: ln, pairs: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// URL is the amqp URL (guest/guest) through the proxy.
func (p *Proxy) URL() string { return "amqp://guest:guest@" + p.Addr() + "/" }

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// CutAll abruptly closes (TCP RST) every proxied connection, both sides.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pr := range p.pairs {
		p.cutLocked(pr)
	}
}

// Pause makes the proxy refuse new connections: it accepts them and resets
// them at once, as a broker that is down would. Existing connections stay.
func (p *Proxy) Pause() {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
}

// Resume accepts new connections again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
}

// Accepted is how many connections were forwarded so far (refused ones
// while paused not counted).
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Open is how many proxied connections are currently open.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pairs)
}

func (p *Proxy) cutLocked(pr *pair) {
	if pr.cut {
		return
	}
	pr.cut = true
	abort(pr.client)
	if pr.server != nil {
		abort(pr.server)
	}
	delete(p.pairs, pr)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.paused || p.closed {
			p.mu.Unlock()
			abort(c)
			continue
		}
		pr := &pair{client: c}
		p.pairs[pr] = struct{}{}
		p.accepted++
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(pr)
	}
}

func (p *Proxy) serve(pr *pair) {
	defer p.wg.Done()
	s, err := net.DialTimeout("tcp", Broker, 5*time.Second)
	p.mu.Lock()
	if err != nil || pr.cut {
		p.cutLocked(pr)
		p.mu.Unlock()
		if s != nil {
			abort(s)
		}
		return
	}
	pr.server = s
	p.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		// Either side ending ends the pair; gracefully, so what was already
		// written (a connection.close-ok) still reaches the other side.
		p.mu.Lock()
		if !pr.cut {
			pr.cut = true
			_ = pr.client.Close()
			_ = s.Close()
			delete(p.pairs, pr)
		}
		p.mu.Unlock()
	}
	go pipe(s, pr.client)
	go pipe(pr.client, s)
	wg.Wait()
}

func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.CutAll()
	p.wg.Wait()
}
