package broker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/internal/rabbittest"
)

// testHistory returns a unique history stream and deletes it after the test.
func testHistory(t *testing.T) History {
	t.Helper()
	name := rabbittest.Name(t, "runlens.test.history.")
	h := History{Stream: name, Exchange: name + ".ex", MaxAge: time.Hour}
	rabbittest.DeleteQueues(t, h.Stream)
	rabbittest.DeleteExchanges(t, h.Exchange)
	return h
}

func TestHistoryDefaults(t *testing.T) {
	h := History{}.Defaults()
	if h.Stream != "runlens.history" || h.Exchange != "chef_reports" || h.MaxAge != 7*24*time.Hour || h.MaxBytes != 20_000_000_000 {
		t.Errorf("History{}.Defaults() = %+v", h)
	}
	args := History{}.Arguments()
	if args["x-queue-type"] != "stream" || args["x-max-age"] != "7D" || args["x-max-length-bytes"] != int64(20_000_000_000) {
		t.Errorf("Arguments() = %v", args)
	}
	args = History{MaxAge: -1, MaxBytes: -1}.Arguments()
	if _, ok := args["x-max-age"]; ok {
		t.Errorf("negative MaxAge still sets x-max-age: %v", args)
	}
	if _, ok := args["x-max-length-bytes"]; ok {
		t.Errorf("negative MaxBytes still sets x-max-length-bytes: %v", args)
	}
}

func TestFormatMaxAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		7 * 24 * time.Hour:                           "7D",
		36 * time.Hour:                               "36h",
		90 * time.Minute:                             "90m",
		45 * time.Second:                             "45s",
		1500 * time.Millisecond:                      "2s",
		24*time.Hour + time.Second:                   "86401s",
		365 * 24 * time.Hour:                         "365D",
		2*time.Hour + 30*time.Minute + 0*time.Second: "150m",
	} {
		if got := FormatMaxAge(d); got != want {
			t.Errorf("FormatMaxAge(%s) = %q, want %q", d, got, want)
		}
	}
}

// Every encoding FormatMaxAge produces is accepted by the broker.
func TestFormatMaxAgeAcceptedByBroker(t *testing.T) {
	conn := rabbittest.Dial(t)
	for _, d := range []time.Duration{7 * 24 * time.Hour, 36 * time.Hour, 90 * time.Minute, 45 * time.Second} {
		h := testHistory(t)
		h.MaxAge = d
		ch, err := DeclareHistory(conn, h, nil)
		if err != nil {
			t.Fatalf("DeclareHistory with MaxAge %s (%s): %v", d, FormatMaxAge(d), err)
		}
		ch.Close()
	}
}

func TestDeclareHistory(t *testing.T) {
	h := testHistory(t)
	conn := rabbittest.Dial(t)
	log, logs := testLogger(t)
	for i := 0; i < 2; i++ {
		ch, err := DeclareHistory(conn, h, log)
		if err != nil {
			t.Fatalf("DeclareHistory #%d: %v", i+1, err)
		}
		ch.Close()
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("warning for identical settings:\n%s", logs)
	}

	other := h
	other.MaxAge = 2 * time.Hour
	ch, err := DeclareHistory(conn, other, log)
	if err != nil {
		t.Fatalf("DeclareHistory with another MaxAge: %v", err)
	}
	if !strings.Contains(logs.String(), "setting=x-max-age") {
		t.Errorf("no warning naming x-max-age:\n%s", logs)
	}
	// The returned channel works and the stream is still bound.
	if _, err := ch.QueueDeclarePassive(h.Stream, true, false, false, false, nil); err != nil {
		t.Errorf("returned channel unusable: %v", err)
	}
	ch.Close()
	rabbittest.Publish(t, h.Exchange, []byte("x"))
	var got []Message
	err = Replay(context.Background(), ReplayConfig{URL: rabbittest.URL, History: other, IdleAfter: 200 * time.Millisecond, Logger: log},
		func(m Message) { got = append(got, m) }, nil)
	if err != nil || len(got) != 1 || string(got[0].Body) != "x" || got[0].Offset != 0 {
		t.Errorf("replay after mismatched declare: %v, %+v", err, got)
	}

	// A queue of that name that is not a stream cannot be used.
	for _, args := range []amqp.Table{{"x-message-ttl": int64(60000)}, {"x-queue-type": "quorum"}, nil} {
		q := rabbittest.Name(t, "runlens.test.notastream.")
		rabbittest.DeleteQueues(t, q)
		if _, err := rabbittest.Channel(t).QueueDeclare(q, true, false, false, false, args); err != nil {
			t.Fatal(err)
		}
		var ce *ConfigError
		notStream := History{Stream: q, Exchange: h.Exchange}
		ch, err := DeclareHistory(conn, notStream, log)
		if err == nil {
			// A plain classic queue differs from a stream first in
			// x-max-length-bytes: DeclareHistory cannot tell, Replay can.
			ch.Close()
			rabbittest.Publish(t, h.Exchange, []byte("keep me"))
			err = Replay(context.Background(), ReplayConfig{URL: rabbittest.URL, History: notStream, Logger: log},
				func(m Message) { t.Errorf("handed %q from a classic queue", m.Body) }, nil)
			if got := rabbittest.Get(t, q, 10); len(got) != 1 || string(got[0].Body) != "keep me" {
				t.Errorf("messages of the classic queue not kept: %v", got)
			}
		}
		if !errors.As(err, &ce) {
			t.Errorf("history over a queue with %v: %v, want *ConfigError", args, err)
		}
	}
}

func TestReplayFrom(t *testing.T) {
	t.Parallel()
	h := testHistory(t)
	log, _ := testLogger(t)
	declareHistory(t, h, log)

	pub, err := NewPublisher(context.Background(), rabbittest.URL, h.Exchange, log)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx := context.Background()
	if err := pub.PublishAll(ctx, bodies("early", 0, 50), 0); err != nil {
		t.Fatal(err)
	}
	// x-stream-offset timestamps have whole-second precision.
	time.Sleep(1100 * time.Millisecond)
	mark := time.Now()
	time.Sleep(1100 * time.Millisecond)
	late := bodies("late", 0, 50)
	if err := pub.PublishAll(ctx, late, 0); err != nil {
		t.Fatal(err)
	}

	var got []Message
	var caughtUp atomic.Int32
	err = Replay(ctx, ReplayConfig{URL: rabbittest.URL, History: h, From: mark, IdleAfter: 300 * time.Millisecond, Logger: log},
		func(m Message) { got = append(got, m) }, func() { caughtUp.Add(1) })
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if caughtUp.Load() != 1 {
		t.Errorf("onCaughtUp called %d times, want 1", caughtUp.Load())
	}
	early := 0
	for _, m := range got {
		if strings.HasPrefix(string(m.Body), "early") {
			early++
		}
	}
	t.Logf("replay from %s: %d messages, %d of them earlier (same chunk)", mark.Format(time.RFC3339Nano), len(got), early)
	if len(got) < len(late) {
		t.Fatalf("got %d messages, want at least the %d later ones", len(got), len(late))
	}
	tail := got[len(got)-len(late):]
	for i, m := range tail {
		if string(m.Body) != string(late[i]) {
			t.Fatalf("message %d from the end = %s, want %s (the later ones, in order)", len(late)-i, m.Body, late[i])
		}
	}
	for i := 1; i < len(got); i++ {
		if got[i].Offset <= got[i-1].Offset {
			t.Fatalf("offsets not increasing: %d then %d", got[i-1].Offset, got[i].Offset)
		}
	}
	if tail[len(tail)-1].Offset != 99 {
		t.Errorf("last offset %d, want 99", tail[len(tail)-1].Offset)
	}

	// From the beginning: all 100, offsets 0..99.
	got = nil
	err = Replay(ctx, ReplayConfig{URL: rabbittest.URL, History: h, IdleAfter: 300 * time.Millisecond, Logger: log},
		func(m Message) { got = append(got, m) }, nil)
	if err != nil || len(got) != 100 {
		t.Fatalf("Replay from first: %v, %d messages", err, len(got))
	}
	for i, m := range got {
		if m.Offset != int64(i) || m.Timestamp.IsZero() {
			t.Fatalf("message %d: offset %d, timestamp %v", i, m.Offset, m.Timestamp)
		}
	}
}

// TestReplayFollow cuts the connection twice: mid-replay (with Prepare
// batching deliveries and acks) and while following live. Each offset still
// reaches the handler exactly once, in order.
func TestReplayFollow(t *testing.T) {
	t.Parallel()
	h := testHistory(t)
	log, _ := testLogger(t)
	proxy := rabbittest.NewProxy(t)
	declareHistory(t, h, log)
	const old = 2000
	rabbittest.Publish(t, h.Exchange, bodies("old", 0, old)...)

	var rec recorder
	var mismatched atomic.Int64
	caught := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Replay(ctx, ReplayConfig{
			URL: proxy.URL(), History: h, Follow: true, IdleAfter: 200 * time.Millisecond,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: log,
			Prefetch: 200, Prepare: func(b []byte) any { return "prepared:" + string(b) },
		}, func(m Message) {
			if m.Prepared != "prepared:"+string(m.Body) {
				mismatched.Add(1)
			}
			if rec.add(m) == old/3 {
				// Mid-replay: later deliveries of this session are
				// already on their way, some of them prepared; none may
				// reach the handler twice.
				proxy.CutAll()
			}
		}, func() { close(caught) })
	}()
	select {
	case <-caught:
	case <-time.After(20 * time.Second):
		t.Fatal("never caught up")
	}
	if n := rec.len(); n != old {
		t.Errorf("caught up after %d messages, want %d", n, old)
	}
	if proxy.Accepted() < 2 {
		t.Errorf("proxy saw %d connections, want a reconnect mid-replay", proxy.Accepted())
	}
	accepted := proxy.Accepted()

	rabbittest.Publish(t, h.Exchange, []byte("live-1"))
	rabbittest.WaitFor(t, 5*time.Second, "live message", func() bool { return rec.len() == old+1 })

	// Cut the connection: Replay reconnects and resumes after the last offset.
	proxy.CutAll()
	rabbittest.Publish(t, h.Exchange, []byte("live-2"), []byte("live-3"))
	rabbittest.WaitFor(t, 10*time.Second, "messages after reconnect", func() bool { return rec.len() >= old+3 })
	if proxy.Accepted() <= accepted {
		t.Errorf("proxy saw %d connections, want a reconnect while following", proxy.Accepted())
	}
	time.Sleep(300 * time.Millisecond) // time for a duplicate to show

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Replay returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Replay did not return after cancel")
	}
	want := append(bodies("old", 0, old), []byte("live-1"), []byte("live-2"), []byte("live-3"))
	got := rec.snapshot()
	if len(got) != len(want) {
		t.Errorf("got %d messages, want %d", len(got), len(want))
	}
	for i, m := range got[:min(len(got), len(want))] {
		if string(m.Body) != string(want[i]) || m.Offset != int64(i) {
			t.Fatalf("message %d = %s at offset %d, want %s at %d", i, m.Body, m.Offset, want[i], i)
		}
	}
	if mismatched.Load() != 0 {
		t.Errorf("%d messages reached the handler with another message's prepared value", mismatched.Load())
	}
}

// Prepare runs on several waiting stream deliveries at once, while the
// handler still sees every offset once, in order, with its own prepared
// value; acks are batched yet the replay catches up.
func TestReplayPrepareInParallelHandleInOrder(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Fatal("this test needs GOMAXPROCS >= 2 to see Prepare run in parallel")
	}
	t.Parallel()
	h := testHistory(t)
	log, _ := testLogger(t)
	ch, err := DeclareHistory(rabbittest.Dial(t), h, log)
	if err != nil {
		t.Fatal(err)
	}
	ch.Close()
	const n = 2000
	rabbittest.Publish(t, h.Exchange, bodies("p", 0, n)...)

	var running, maxRunning, prepared atomic.Int64
	prepare := func(body []byte) any {
		prepared.Add(1)
		now := running.Add(1)
		for {
			m := maxRunning.Load()
			if now <= m || maxRunning.CompareAndSwap(m, now) {
				break
			}
		}
		time.Sleep(200 * time.Microsecond) // a decode's worth of work
		running.Add(-1)
		return "prepared:" + string(body)
	}
	var got []Message
	var mismatched int
	caughtUp := 0
	err = Replay(context.Background(), ReplayConfig{URL: rabbittest.URL, History: h, IdleAfter: 300 * time.Millisecond, Logger: log, Prepare: prepare},
		func(m Message) {
			if m.Prepared != "prepared:"+string(m.Body) {
				mismatched++
			}
			got = append(got, m)
		}, func() { caughtUp++ })
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if caughtUp != 1 {
		t.Errorf("onCaughtUp called %d times, want 1", caughtUp)
	}
	if len(got) != n {
		t.Errorf("handled %d messages, want %d", len(got), n)
	}
	for i, m := range got {
		if want := fmt.Sprintf("p-%04d", i); string(m.Body) != want || m.Offset != int64(i) {
			t.Fatalf("message %d = %q at offset %d, want %q at %d: order lost", i, m.Body, m.Offset, want, i)
		}
	}
	if mismatched != 0 {
		t.Errorf("%d messages reached the handler with another message's prepared value", mismatched)
	}
	if maxRunning.Load() < 2 {
		t.Errorf("Prepare never ran on two messages at once (max %d)", maxRunning.Load())
	}
	t.Logf("Prepare: %d calls for %d messages, at most %d at once", prepared.Load(), n, maxRunning.Load())
}

func TestReplayCancelledBeforeCaughtUp(t *testing.T) {
	h := testHistory(t)
	proxy := rabbittest.NewProxy(t)
	proxy.Pause()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := Replay(ctx, ReplayConfig{URL: proxy.URL(), History: h}, func(Message) {}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Replay without Follow cancelled before catching up: %v, want the context's error", err)
	}
}

func TestStreamOffset(t *testing.T) {
	for v, want := range map[any]int64{int64(7): 7, int32(8): 8, "x": -1, nil: -1} {
		if got := streamOffset(amqp.Table{"x-stream-offset": v}); got != want {
			t.Errorf("streamOffset(%v) = %d, want %d", v, got, want)
		}
	}
	if got := streamOffset(nil); got != -1 {
		t.Errorf("streamOffset(nil) = %d", got)
	}
}
