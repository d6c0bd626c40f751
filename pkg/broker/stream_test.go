package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/internal/rabbittest"
)

// testStream declares a unique stream of runlens' own and deletes it after
// the test.
func testStream(t *testing.T, conn *amqp.Connection) Stream {
	t.Helper()
	s := Stream{Name: rabbittest.Name(t, "runlens.test.stream."), MaxAge: time.Hour, MaxBytes: 10 << 20, MaxSegmentBytes: 1 << 20}
	rabbittest.DeleteQueues(t, s.Name)
	ch, err := DeclareStream(conn, s, nil)
	if err != nil {
		t.Fatalf("DeclareStream: %v", err)
	}
	ch.Close()
	return s
}

func writeStream(t *testing.T, conn *amqp.Connection, stream string, bodies [][]byte) {
	t.Helper()
	w, err := NewStreamWriter(conn, stream, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx := context.Background()
	for _, b := range bodies {
		if err := w.Write(ctx, b, amqp.Table{"x-test": "yes"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestStreamArguments(t *testing.T) {
	args := Stream{Name: "s", MaxAge: 24 * time.Hour, MaxBytes: 5, MaxSegmentBytes: 3}.Arguments()
	want := amqp.Table{"x-queue-type": "stream", "x-max-age": "1D", "x-max-length-bytes": int64(5), "x-stream-max-segment-size-bytes": int64(3)}
	if fmt.Sprint(args) != fmt.Sprint(want) {
		t.Fatalf("arguments %v, want %v", args, want)
	}
	if got := (Stream{Name: "s"}).Arguments(); len(got) != 1 {
		t.Fatalf("zero settings give %v, want only the queue type", got)
	}
}

// A second declaration with other retention settings uses the stream as it
// is (as for the history stream); a classic queue of that name is refused.
func TestDeclareStreamTwice(t *testing.T) {
	t.Parallel()
	conn := rabbittest.Dial(t)
	s := testStream(t, conn)
	log, logs := testLogger(t)
	other := s
	other.MaxBytes = 20 << 20
	ch, err := DeclareStream(conn, other, log)
	if err != nil {
		t.Fatalf("second declaration: %v", err)
	}
	ch.Close()
	if !strings.Contains(logs.String(), "x-max-length-bytes") {
		t.Errorf("no warning naming the differing setting:\n%s", logs)
	}
	q := rabbittest.Name(t, "runlens.test.classic.")
	rabbittest.DeleteQueues(t, q)
	if _, err := rabbittest.Channel(t).QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	var ce *ConfigError
	if _, err := DeclareStream(conn, Stream{Name: q}, log); !errors.As(err, &ce) {
		t.Fatalf("stream over a classic queue: %v, want *ConfigError", err)
	}
}

func TestStreamExists(t *testing.T) {
	t.Parallel()
	conn := rabbittest.Dial(t)
	s := testStream(t, conn)
	if ok, err := StreamExists(conn, s.Name); !ok || err != nil {
		t.Fatalf("StreamExists(declared) = %v, %v", ok, err)
	}
	if ok, err := StreamExists(conn, s.Name+".never"); ok || err != nil {
		t.Fatalf("StreamExists(never declared) = %v, %v", ok, err)
	}
	_, err := ReadStream(context.Background(), conn, s.Name+".never", OffsetFirst, 10, time.Second, func(Message) bool { return true })
	if !errors.Is(err, ErrNoStream) {
		t.Fatalf("ReadStream(never declared) = %v, want ErrNoStream", err)
	}
}

func TestReadStream(t *testing.T) {
	t.Parallel()
	conn := rabbittest.Dial(t)
	s := testStream(t, conn)
	ctx := context.Background()

	// Empty: quiet at once, LastOffset says so.
	n := 0
	end, err := ReadStream(ctx, conn, s.Name, OffsetFirst, 10, 300*time.Millisecond, func(Message) bool { n++; return true })
	if err != nil || end != ReadQuiet || n != 0 {
		t.Fatalf("empty stream: end %v err %v, %d messages", end, err, n)
	}
	if off, ok, err := LastOffset(ctx, conn, s.Name, 300*time.Millisecond); ok || err != nil || off != -1 {
		t.Fatalf("LastOffset(empty) = %d %v %v", off, ok, err)
	}

	writeStream(t, conn, s.Name, bodies("m", 0, 40))
	writeStream(t, conn, s.Name, bodies("m", 40, 20))

	var got []Message
	end, err = ReadStream(ctx, conn, s.Name, int64(13), 7, 300*time.Millisecond, func(m Message) bool { got = append(got, m); return true })
	if err != nil || end != ReadQuiet {
		t.Fatalf("ReadStream from 13: %v %v", end, err)
	}
	if len(got) != 47 {
		t.Fatalf("from offset 13: %d messages, want 47", len(got))
	}
	for i, m := range got {
		if m.Offset != int64(13+i) || string(m.Body) != fmt.Sprintf("m-%04d", 13+i) || m.Headers["x-test"] != "yes" || m.Timestamp.IsZero() {
			t.Fatalf("message %d: offset %d body %s headers %v", i, m.Offset, m.Body, m.Headers)
		}
	}

	// The handler stops it.
	got = nil
	end, err = ReadStream(ctx, conn, s.Name, OffsetFirst, 10, 5*time.Second, func(m Message) bool { got = append(got, m); return len(got) < 3 })
	if err != nil || end != ReadStopped || len(got) != 3 || got[2].Offset != 2 {
		t.Fatalf("stopped by the handler: end %v err %v, %d messages", end, err, len(got))
	}

	// From the last chunk: the last message is among what arrives.
	got = nil
	if _, err := ReadStream(ctx, conn, s.Name, OffsetLast, 100, 300*time.Millisecond, func(m Message) bool { got = append(got, m); return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[len(got)-1].Offset != 59 || got[0].Offset < 40 {
		t.Fatalf("from last: %d messages, offsets %d..%d, want the last chunk (ending at 59)", len(got), got[0].Offset, got[len(got)-1].Offset)
	}
	if off, ok, err := LastOffset(ctx, conn, s.Name, 300*time.Millisecond); !ok || err != nil || off != 59 {
		t.Fatalf("LastOffset = %d %v %v, want 59", off, ok, err)
	}

	// An offset past the end waits for it.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = ReadStream(cctx, conn, s.Name, int64(60), 10, time.Minute, func(Message) bool { t.Error("delivered past the end"); return true })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("past the end: %v, want the context's deadline", err)
	}
}

// At most one connection holds a lock; closing it (as a dying process's
// connection closes) hands the lock on.
func TestTryLock(t *testing.T) {
	t.Parallel()
	name := rabbittest.Name(t, "runlens.test.lock.")
	ctx := context.Background()
	a, err := Dial(ctx, rabbittest.URL, "lock-a")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := rabbittest.Dial(t)
	if ok, err := TryLock(a, name); !ok || err != nil {
		t.Fatalf("first TryLock = %v, %v", ok, err)
	}
	if ok, err := TryLock(b, name); ok || err != nil {
		t.Fatalf("TryLock while held = %v, %v", ok, err)
	}
	if ok, err := TryLock(a, name); !ok || err != nil {
		t.Fatalf("TryLock again by its holder = %v, %v", ok, err)
	}
	a.Close()
	rabbittest.WaitFor(t, 10*time.Second, "the lock released", func() bool {
		ok, err := TryLock(b, name)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})
}

func TestReplayFromOffset(t *testing.T) {
	t.Parallel()
	h := testHistory(t)
	log, _ := testLogger(t)
	declareHistory(t, h, log)
	rabbittest.Publish(t, h.Exchange, bodies("h", 0, 30)...)
	var got []int64
	err := Replay(context.Background(), ReplayConfig{URL: rabbittest.URL, History: h, FromOffset: 17, From: time.Now().Add(time.Hour),
		IdleAfter: 300 * time.Millisecond, Logger: log}, func(m Message) { got = append(got, m.Offset) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 13 || got[0] != 17 || got[12] != 29 {
		t.Fatalf("from offset 17 (FromOffset wins over From): offsets %v", got)
	}
}

// On a stream that never goes quiet, LastOffset ends at the first message
// published after it was called, not at its context's deadline.
func TestLastOffsetOfAGrowingStream(t *testing.T) {
	t.Parallel()
	conn := rabbittest.Dial(t)
	s := testStream(t, conn)
	stop := make(chan struct{})
	published := make(chan int, 1)
	var confirmed atomic.Int64
	go func() {
		w, err := NewStreamWriter(rabbittest.Dial(t), s.Name, 1)
		if err != nil {
			published <- -1
			return
		}
		defer w.Close()
		n := 0
		for {
			select {
			case <-stop:
				published <- n
				return
			case <-time.After(10 * time.Millisecond):
			}
			if w.Write(context.Background(), []byte("tick"), nil) != nil || w.Flush(context.Background()) != nil {
				published <- -1
				return
			}
			n++
			confirmed.Store(int64(n))
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	before := confirmed.Load() // stored before the call: offsets 0..before-1
	began := time.Now()
	off, ok, err := LastOffset(ctx, conn, s.Name, 5*time.Second)
	took := time.Since(began)
	close(stop)
	n := <-published
	if err != nil || !ok || n < 0 {
		t.Fatalf("LastOffset = %d %v %v (publisher %d)", off, ok, err, n)
	}
	if took > 5*time.Second {
		t.Errorf("LastOffset took %s on a growing stream, want about a second", took)
	}
	if off < before-1 || off >= int64(n) {
		t.Errorf("LastOffset = %d, with %d confirmed before the call and %d by the end", off, before, n)
	}
}
