package broker

import (
	"context"
	"errors"
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
	conn := rabbittest.Dial(t)
	ch, err := DeclareHistory(conn, h, log)
	if err != nil {
		t.Fatal(err)
	}
	ch.Close()

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

func TestReplayFollow(t *testing.T) {
	t.Parallel()
	h := testHistory(t)
	log, _ := testLogger(t)
	proxy := rabbittest.NewProxy(t)
	conn := rabbittest.Dial(t)
	ch, err := DeclareHistory(conn, h, log)
	if err != nil {
		t.Fatal(err)
	}
	ch.Close()
	rabbittest.Publish(t, h.Exchange, bodies("old", 0, 5)...)

	var rec recorder
	caught := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Replay(ctx, ReplayConfig{
			URL: proxy.URL(), History: h, Follow: true, IdleAfter: 200 * time.Millisecond,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: log,
		}, func(m Message) { rec.add(m) }, func() { close(caught) })
	}()
	select {
	case <-caught:
	case <-time.After(10 * time.Second):
		t.Fatal("never caught up")
	}
	if n := rec.len(); n != 5 {
		t.Errorf("caught up after %d messages, want 5", n)
	}

	rabbittest.Publish(t, h.Exchange, []byte("live-1"))
	rabbittest.WaitFor(t, 5*time.Second, "live message", func() bool { return rec.len() == 6 })

	// Cut the connection: Replay reconnects and resumes after the last offset.
	proxy.CutAll()
	rabbittest.Publish(t, h.Exchange, []byte("live-2"), []byte("live-3"))
	rabbittest.WaitFor(t, 10*time.Second, "messages after reconnect", func() bool { return rec.len() >= 8 })
	if proxy.Accepted() < 2 {
		t.Errorf("proxy saw %d connections, want a reconnect", proxy.Accepted())
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Replay returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Replay did not return after cancel")
	}
	want := []string{"old-0000", "old-0001", "old-0002", "old-0003", "old-0004", "live-1", "live-2", "live-3"}
	got := rec.snapshot()
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", rec.bodies(), want)
	}
	for i, m := range got {
		if string(m.Body) != want[i] || m.Offset != int64(i) {
			t.Errorf("message %d = %s at offset %d, want %s at %d", i, m.Body, m.Offset, want[i], i)
		}
	}
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
