package datacollector

// Integration tests against the real RabbitMQ on 127.0.0.1:5672
// (internal/rabbittest): a real broker.Publisher behind a real HTTP server.

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/internal/testlog"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/report"
)

const fixtureNode = "chefdk-ubuntu-16.04-tester-91bc78"

// declareBoundQueue declares a unique fanout exchange (as the publisher
// does) and a queue bound to it, both deleted when the test ends.
func declareBoundQueue(t *testing.T) (exchange, queue string) {
	t.Helper()
	exchange = rabbittest.Name(t, "runlens.test.dc.")
	queue = rabbittest.Name(t, "runlens.test.dc.q.")
	rabbittest.DeleteExchanges(t, exchange)
	rabbittest.DeleteQueues(t, queue)
	ch := rabbittest.Channel(t)
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		t.Fatalf("declare exchange: %v", err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatalf("declare queue: %v", err)
	}
	if err := ch.QueueBind(queue, "", exchange, false, nil); err != nil {
		t.Fatalf("bind queue: %v", err)
	}
	return exchange, queue
}

func newPublisher(t *testing.T, url, exchange string, log *slog.Logger) *broker.Publisher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pub, err := broker.NewPublisher(ctx, url, exchange, log)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

func newServer(t *testing.T, pub Publisher, timeout time.Duration, log *slog.Logger) *httptest.Server {
	t.Helper()
	h, err := New(Config{Token: []byte(testToken), Publisher: pub, MaxBytes: report.DefaultMaxBytes, Timeout: timeout, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// postChef posts as Chef's data collector does and returns the status and
// Retry-After.
func postChef(t *testing.T, srv *httptest.Server, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+Path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("x-data-collector-token", testToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

func testLogger(t *testing.T) (*slog.Logger, *testlog.Buffer) {
	logs := &testlog.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	return slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), logs
}

func TestIntegrationFixturesReachTheQueue(t *testing.T) {
	log, logs := testLogger(t)
	exchange, queue := declareBoundQueue(t)
	srv := newServer(t, newPublisher(t, rabbittest.URL, exchange, log), 5*time.Second, log)

	start := readFixture(t, "01-run_start-ubuntu-success.json")
	converge := readFixture(t, "01-run_converge-ubuntu-success-92res.json")
	for _, body := range [][]byte{start, converge} {
		// 204 only after the confirm: the message is in the queue as soon
		// as the answer arrives, with no waiting.
		if code, _ := postChef(t, srv, body); code != http.StatusNoContent {
			t.Fatalf("POST: %d, want 204", code)
		}
	}
	// Not a run: acknowledged, not published.
	if code, _ := postChef(t, srv, []byte(`{"message_type":"action","entity_type":"node","task":"update"}`)); code != http.StatusNoContent {
		t.Fatalf("action message: %d, want 204", code)
	}

	msgs := rabbittest.Get(t, queue, 10)
	if len(msgs) != 2 {
		t.Fatalf("the queue holds %d messages, want 2", len(msgs))
	}
	for i, want := range [][]byte{start, converge} {
		m := msgs[i]
		if !bytes.Equal(m.Body, want) {
			t.Errorf("message %d differs from the posted fixture (%d vs %d bytes)", i, len(m.Body), len(want))
		}
		if m.Headers["x-runlens-source"] != "data-collector" {
			t.Errorf("message %d: headers %v", i, m.Headers)
		}
		if m.DeliveryMode != amqp.Persistent {
			t.Errorf("message %d: delivery mode %d, want persistent", i, m.DeliveryMode)
		}
	}

	run, err := report.Decode(msgs[0].Body)
	if err != nil {
		t.Fatalf("decode run_start: %v", err)
	}
	if run.Kind != report.KindStart || run.Node != fixtureNode || run.Format != report.FormatChefDataCollector {
		t.Errorf("run_start decoded as %v %q %v", run.Kind, run.Node, run.Format)
	}
	run, err = report.Decode(msgs[1].Body)
	if err != nil {
		t.Fatalf("decode run_converge: %v", err)
	}
	if run.Kind != report.KindRun || run.Node != fixtureNode || run.UpdatedCount != 12 || run.Status != report.StatusSuccess {
		t.Errorf("run_converge decoded as %v node %q, %d updated, status %s; want run, %s, 12, success",
			run.Kind, run.Node, run.UpdatedCount, run.Status, fixtureNode)
	}
	if strings.Contains(logs.String(), testToken) {
		t.Error("the token was logged")
	}
}

func TestIntegrationBrokerUnreachableThenBack(t *testing.T) {
	const timeout = 2 * time.Second
	log, logs := testLogger(t)
	exchange, queue := declareBoundQueue(t)
	proxy := rabbittest.NewProxy(t)
	pub := newPublisher(t, proxy.URL(), exchange, log)
	srv := newServer(t, pub, timeout, log)
	body := readFixture(t, "01-run_converge-ubuntu-success-92res.json")

	// The broker "goes down": no new connection gets through, and the
	// publisher's connection is cut.
	proxy.Pause()
	proxy.CutAll()
	began := time.Now()
	code, retryAfter := postChef(t, srv, body)
	if took := time.Since(began); took > timeout+time.Second {
		t.Fatalf("answered after %s, want within the %s timeout", took, timeout)
	}
	if code != http.StatusServiceUnavailable || retryAfter == "" {
		t.Fatalf("broker down: %d (Retry-After %q), want 503 with Retry-After", code, retryAfter)
	}
	if !strings.Contains(logs.String(), "could not publish") {
		t.Errorf("the failure was not logged")
	}
	if strings.Contains(logs.String(), "guest:guest") || strings.Contains(logs.String(), testToken) {
		t.Errorf("a secret was logged")
	}

	// Back up: Chef retries (as told by Retry-After; here every 200ms) and
	// the message is stored.
	proxy.Resume()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ = postChef(t, srv, body)
		if code == http.StatusNoContent {
			break
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("retry after the broker came back: %d", code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	msgs := rabbittest.Get(t, queue, 10)
	if len(msgs) != 1 || !bytes.Equal(msgs[0].Body, body) {
		t.Fatalf("the queue holds %d messages, want exactly the retried one", len(msgs))
	}
	if run, err := report.Decode(msgs[0].Body); err != nil || run.Node != fixtureNode {
		t.Fatalf("decode: %v", err)
	}
	if !strings.Contains(logs.String(), "to the broker again") {
		t.Errorf("the recovery was not logged")
	}
}
