package rabbittest

import (
	"regexp"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestName(t *testing.T) {
	t.Run("odd/name with spaces:*", func(t *testing.T) {
		a, b := Name(t, "p."), Name(t, "p.")
		if a == b {
			t.Errorf("Name twice = %q", a)
		}
		if !regexp.MustCompile(`^p\.TestName-odd-name_with_spaces--\.[0-9a-f]{8}$`).MatchString(a) {
			t.Errorf("Name = %q", a)
		}
	})
}

func TestQueueHelpers(t *testing.T) {
	q := Name(t, "rabbittest.")
	ex := q + ".ex"
	DeleteQueues(t, q, q+".never-declared")
	DeleteExchanges(t, ex, ex+".never-declared")
	ch := Channel(t)
	if err := ch.ExchangeDeclare(ex, "fanout", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q, "", ex, false, nil); err != nil {
		t.Fatal(err)
	}
	PublishWithHeaders(t, ex, amqp.Table{"h": "v"}, []byte("a"), []byte("b"), []byte("c"))
	if n := MessageCount(t, q); n != 3 {
		t.Fatalf("MessageCount = %d, want 3", n)
	}
	got := Get(t, q, 2)
	if len(got) != 2 || string(got[0].Body) != "a" || string(got[1].Body) != "b" || got[0].Headers["h"] != "v" {
		t.Fatalf("Get(2) = %v", got)
	}
	if got := Get(t, q, 5); len(got) != 1 {
		t.Fatalf("Get(5) on one message = %d", len(got))
	}
}

func TestCleanupDeletes(t *testing.T) {
	q := Name(t, "rabbittest.")
	t.Run("declare", func(t *testing.T) {
		DeleteQueues(t, q)
		if _, err := Channel(t).QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	})
	_, err := Channel(t).QueueDeclarePassive(q, true, false, false, false, nil)
	if !isNotFound(err) {
		t.Errorf("queue still there after the subtest's cleanup: %v", err)
	}
}

func TestProxy(t *testing.T) {
	p := NewProxy(t)
	if !strings.HasPrefix(p.URL(), "amqp://guest:guest@127.0.0.1:") {
		t.Fatalf("URL = %q", p.URL())
	}
	conn, err := amqp.Dial(p.URL())
	if err != nil {
		t.Fatalf("dial through proxy: %v", err)
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	if _, err := conn.Channel(); err != nil {
		t.Fatal(err)
	}
	if p.Open() != 1 || p.Accepted() != 1 {
		t.Errorf("Open %d, Accepted %d; want 1, 1", p.Open(), p.Accepted())
	}

	p.CutAll()
	select {
	case e := <-closed:
		if e == nil {
			t.Error("connection closed gracefully, want an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client did not notice the cut")
	}

	p.Pause()
	if c, err := amqp.Dial(p.URL()); err == nil {
		c.Close()
		t.Fatal("dial while paused succeeded")
	}
	p.Resume()
	c, err := amqp.Dial(p.URL())
	if err != nil {
		t.Fatalf("dial after resume: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("graceful close through the proxy: %v", err)
	}
	WaitFor(t, 5*time.Second, "proxied connection to end", func() bool { return p.Open() == 0 })
}
