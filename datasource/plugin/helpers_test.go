package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/internal/testlog"
	"github.com/runlens/runlens/pkg/broker"
)

// env is one test datasource on its own exchange and stream.
type env struct {
	exchange, stream string
	logs             *testlog.Buffer
	inst             *Instance
}

// newEnv declares a unique exchange and stream (deleted after the test) and
// returns their names; start the instance with env.start.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{exchange: rabbittest.Name(t, "ex."), stream: rabbittest.Name(t, "hist."), logs: &testlog.Buffer{}}
	rabbittest.DeleteQueues(t, e.stream)
	rabbittest.DeleteExchanges(t, e.exchange)
	// Declared up front, so reports published before the instance starts
	// are kept for its replay.
	conn := rabbittest.Dial(t)
	ch, err := broker.DeclareHistory(conn, broker.History{Stream: e.stream, Exchange: e.exchange}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = ch.Close()
	return e
}

func (e *env) settings(jsonData map[string]any, secure map[string]string) backend.DataSourceInstanceSettings {
	jd := map[string]any{
		"amqpUrl":      "amqp://guest@127.0.0.1:5672/",
		"exchange":     e.exchange,
		"stream":       e.stream,
		"replay":       "2h",
		"liveInterval": "300ms",
		"topology":     "web: [db]\n",
	}
	for k, v := range jsonData {
		jd[k] = v
	}
	sec := map[string]string{"amqpPassword": "guest"}
	for k, v := range secure {
		sec[k] = v
	}
	raw, _ := json.Marshal(jd)
	return backend.DataSourceInstanceSettings{UID: "runlens-test", Name: "runlens", JSONData: raw, DecryptedSecureJSONData: sec}
}

// start creates the instance (disposed after the test) and waits until its
// replay caught up.
func (e *env) start(t *testing.T, jsonData map[string]any, secure map[string]string) *Instance {
	t.Helper()
	i, err := Factory(slogTo(e.logs))(context.Background(), e.settings(jsonData, secure))
	if err != nil {
		t.Fatalf("NewInstance: %v", err)
	}
	inst := i.(*Instance)
	t.Cleanup(inst.Dispose)
	e.inst = inst
	select {
	case <-inst.caughtUp:
	case <-time.After(15 * time.Second):
		t.Fatalf("replay did not catch up; logs:\n%s", e.logs)
	}
	return inst
}

func (e *env) publish(t *testing.T, bodies ...[]byte) {
	t.Helper()
	p, err := broker.NewPublisher(context.Background(), rabbittest.URL, e.exchange, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.PublishAll(context.Background(), bodies, 0); err != nil {
		t.Fatal(err)
	}
}

// waitReports waits until the instance has read n messages.
func (e *env) waitReports(t *testing.T, n uint64) {
	t.Helper()
	rabbittest.WaitFor(t, 10*time.Second, fmt.Sprintf("%d reports read", n), func() bool { return e.inst.received.Load() >= n })
}

type run struct {
	node, env, role, id string
	start, end          time.Time
	failed              bool
	updated             []string
	errMsg              string
}

// handlerJSON is a Chef handler report.
func handlerJSON(r run) []byte {
	if r.start.IsZero() {
		r.start = r.end.Add(-20 * time.Second)
	}
	status := "success"
	m := map[string]any{
		"node_name": r.node, "fqdn": r.node + ".example.internal", "environment": r.env,
		"run_start_time": r.start.UTC().Format(time.RFC3339), "run_end_time": r.end.UTC().Format(time.RFC3339),
		"run_elapsed_time": r.end.Sub(r.start).Seconds(), "updated_resources_count": len(r.updated),
		"updated_resources": r.updated, "run_id": r.id, "roles": []string{r.role},
	}
	if r.failed {
		status = "failure"
		m["error"] = map[string]any{"class": "Chef::Exceptions::Exec", "message": r.errMsg}
	}
	m["status"] = status
	b, _ := json.Marshal(m)
	return b
}

func query(t *testing.T, inst *Instance, q map[string]any, from, to time.Time) backend.DataResponse {
	t.Helper()
	raw, _ := json.Marshal(q)
	resp, err := inst.QueryData(context.Background(), &backend.QueryDataRequest{
		Queries: []backend.DataQuery{{RefID: "A", JSON: raw, TimeRange: backend.TimeRange{From: from, To: to}}},
	})
	if err != nil {
		t.Fatalf("QueryData: %v", err)
	}
	return resp.Responses["A"]
}

func mustFrames(t *testing.T, inst *Instance, q map[string]any, from, to time.Time) data.Frames {
	t.Helper()
	r := query(t, inst, q, from, to)
	if r.Error != nil {
		t.Fatalf("query %v: %v", q, r.Error)
	}
	return r.Frames
}

func col(t *testing.T, f *data.Frame, name string) []string {
	t.Helper()
	for _, fld := range f.Fields {
		if fld.Name == name {
			out := make([]string, fld.Len())
			for i := range out {
				v, ok := fld.ConcreteAt(i)
				if ok {
					out[i] = fmt.Sprint(v)
				}
			}
			return out
		}
	}
	t.Fatalf("frame %q has no field %q", f.Name, name)
	return nil
}

func joined(t *testing.T, f *data.Frame, name string) string {
	return strings.Join(col(t, f, name), ",")
}

// recorder is the StreamPacketSender of the tests: it keeps every packet
// with the time it arrived.
type recorder struct {
	mu      sync.Mutex
	packets []packet
}

type packet struct {
	at    time.Time
	frame *data.Frame
}

func (r *recorder) Send(p *backend.StreamPacket) error {
	var f data.Frame
	if err := json.Unmarshal(p.Data, &f); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.packets = append(r.packets, packet{time.Now(), &f})
	return nil
}

func (r *recorder) all() []packet {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]packet(nil), r.packets...)
}

func slogTo(b *testlog.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
