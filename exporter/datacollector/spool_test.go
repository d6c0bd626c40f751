package datacollector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/internal/rabbittest"
)

func openSpool(t *testing.T, dir string, max int64) *Spool {
	t.Helper()
	s, err := OpenSpool(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSpoolDurableAndOrdered: what Put accepted is there, in order, for the
// next process; a temporary file a crash left (never answered 2xx) is not.
func TestSpoolDurableAndOrdered(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s := openSpool(t, dir, 1<<20)
	for i := range 5 {
		if err := s.Put(fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	// A write interrupted between create and rename.
	if err := os.WriteFile(filepath.Join(dir, ".00000000000000000099-1.msg.tmp"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("spool directory mode %v, want 0700 (messages hold node data)", fi.Mode().Perm())
	}
	again := openSpool(t, dir, 1<<20)
	if again.Len() != 5 || again.Bytes() != s.Bytes() {
		t.Fatalf("reopened: %d messages, %d bytes; want 5, %d", again.Len(), again.Bytes(), s.Bytes())
	}
	for i := range 5 {
		e, body, ok, err := again.oldest()
		if !ok || err != nil || string(body) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("message %d: %q %v %v", i, body, ok, err)
		}
		if fi, _ := os.Stat(filepath.Join(dir, e.name)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", e.name, fi.Mode().Perm())
		}
		if err := again.remove(e); err != nil {
			t.Fatal(err)
		}
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 0 || again.Len() != 0 || again.Bytes() != 0 {
		t.Errorf("after removing everything: %d files, %d messages, %d bytes", len(left), again.Len(), again.Bytes())
	}
	// New messages continue the sequence after what was there.
	_ = again.Put([]byte("x"))
	if e, _, _, _ := again.oldest(); e.seq != 6 {
		t.Errorf("next sequence %d, want 6", e.seq)
	}
}

// TestSpoolBound: concurrent Puts never take the spool past its limit.
func TestSpoolBound(t *testing.T) {
	s := openSpool(t, t.TempDir(), 2000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	full := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Put(bytes.Repeat([]byte("a"), 100)); errors.Is(err, ErrSpoolFull) {
				mu.Lock()
				full++
				mu.Unlock()
			} else if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if s.Len() != 20 || s.Bytes() != 2000 || full != 30 {
		t.Errorf("%d stored (%d bytes), %d refused; want 20, 2000, 30", s.Len(), s.Bytes(), full)
	}
	if _, err := OpenSpool(t.TempDir(), 0); err == nil {
		t.Error("a zero limit was accepted")
	}
}

func TestSpoolNotWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		// root writes anywhere; a directory under a regular file cannot
		// be created by anyone.
		f := filepath.Join(t.TempDir(), "file")
		_ = os.WriteFile(f, nil, 0o600)
		if _, err := OpenSpool(filepath.Join(f, "spool"), 1); err == nil {
			t.Fatal("a spool under a regular file opened")
		}
		return
	}
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	if _, err := OpenSpool(dir, 1); err == nil {
		t.Fatal("a read-only spool directory opened")
	}
}

// flakyPublisher fails until healed, then records in order.
type flakyPublisher struct {
	mu     sync.Mutex
	broken bool
	tries  int
	bodies []string
}

func (p *flakyPublisher) Publish(ctx context.Context, body []byte, _ amqp.Table) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tries++
	if p.broken {
		return errors.New("broker: publisher: dial tcp: connection refused")
	}
	p.bodies = append(p.bodies, string(body))
	return nil
}

func (p *flakyPublisher) set(broken bool) { p.mu.Lock(); p.broken = broken; p.mu.Unlock() }

func (p *flakyPublisher) got() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.bodies...)
}

// TestHandlerSpoolsThenDrainsInOrder: the broker cannot confirm, so the
// body is spooled and answered 202; while messages wait, new ones queue
// behind them even if the broker is back; the drain publishes all of them in
// the order they came, and the next message is published at once again.
func TestHandlerSpoolsThenDrainsInOrder(t *testing.T) {
	pub := &flakyPublisher{broken: true}
	spool := openSpool(t, t.TempDir(), 1<<20)
	env := newEnv(t, func(c *Config) { c.Publisher, c.Spool = pub, spool })
	msg := func(i int) string { return fmt.Sprintf(`{"message_type":"run_start","node_name":"n%d"}`, i) }
	for i := range 3 {
		if rec := env.post(msg(i)); rec.Code != http.StatusAccepted {
			t.Fatalf("broker down, message %d: %d %q, want 202", i, rec.Code, rec.Body.String())
		}
	}
	pub.set(false)
	if rec := env.post(msg(3)); rec.Code != http.StatusAccepted {
		t.Fatalf("broker back, spool not drained yet: %d, want 202 (queued behind the others)", rec.Code)
	}
	if len(pub.got()) != 0 {
		t.Fatal("a message overtook the spooled ones")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { env.h.Run(ctx); close(done) }()
	rabbittest.WaitFor(t, 10*time.Second, "spool drained", func() bool { return spool.Len() == 0 })
	if rec := env.post(msg(4)); rec.Code != http.StatusNoContent {
		t.Errorf("after the drain: %d, want 204", rec.Code)
	}
	cancel()
	<-done
	want := []string{msg(0), msg(1), msg(2), msg(3), msg(4)}
	if got := pub.got(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("published\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if w, p := counterValue(t, env.reg, "runlens_ingest_spool_writes_total", "", ""), counterValue(t, env.reg, "runlens_ingest_spool_publishes_total", "", ""); w != 4 || p != 4 {
		t.Errorf("spool writes %v publishes %v, want 4 and 4", w, p)
	}
	if !strings.Contains(env.logs.String(), "spool drained") {
		t.Errorf("the drain was not logged:\n%s", env.logs)
	}
}

// TestHandlerSpoolFull: 503 (with Retry-After) only when the spool has no
// room; the metrics show depth, bytes, limit and age.
func TestHandlerSpoolFull(t *testing.T) {
	pub := &flakyPublisher{broken: true}
	spool := openSpool(t, t.TempDir(), 100)
	env := newEnv(t, func(c *Config) { c.Publisher, c.Spool = pub, spool })
	clock := time.Now()
	spool.now = func() time.Time { return clock }
	body := `{"message_type":"run_start","node_name":"n","x":"` + strings.Repeat("a", 20) + `"}`
	if rec := env.post(body); rec.Code != http.StatusAccepted {
		t.Fatalf("first: %d", rec.Code)
	}
	rec := env.post(body)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("full: %d (Retry-After %q), want 503", rec.Code, rec.Header().Get("Retry-After"))
	}
	clock = clock.Add(90 * time.Second)
	for name, want := range map[string]float64{
		"runlens_ingest_spool_messages": 1, "runlens_ingest_spool_bytes": float64(len(body)),
		"runlens_ingest_spool_max_bytes": 100, "runlens_ingest_spool_oldest_message_age_seconds": 90,
	} {
		if got := counterValue(t, env.reg, name, "", ""); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if !strings.Contains(env.logs.String(), "could not spool") {
		t.Errorf("the refusal was not logged:\n%s", env.logs)
	}
}

// TestDrainSkipsUnreadable: a spool file that cannot be read (damaged by
// hand) is dropped with an error log rather than blocking the rest.
func TestDrainSkipsUnreadable(t *testing.T) {
	dir := t.TempDir()
	spool := openSpool(t, dir, 1<<20)
	_ = spool.Put([]byte("first"))
	_ = spool.Put([]byte("second"))
	e, _, _, _ := spool.oldest()
	// A directory where the file was: ReadFile fails.
	_ = os.Remove(filepath.Join(dir, e.name))
	_ = os.Mkdir(filepath.Join(dir, e.name), 0o700)
	pub := &flakyPublisher{}
	env := newEnv(t, func(c *Config) { c.Publisher, c.Spool = pub, spool })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go env.h.Run(ctx)
	rabbittest.WaitFor(t, 10*time.Second, "spool drained", func() bool { return spool.Len() == 0 })
	if got := pub.got(); len(got) != 1 || got[0] != "second" {
		t.Errorf("published %q", got)
	}
}
