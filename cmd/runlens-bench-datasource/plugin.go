package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/datasource/plugin"
	"github.com/runlens/runlens/pkg/broker"
)

// newInstance creates a datasource instance through the plugin's own
// factory, from settings JSON as Grafana stores them (the password in the
// secure settings).
func newInstance(ctx context.Context, cfg config, hook *logHook, exchange, stream, replay string) (*plugin.Instance, error) {
	return newInstanceWith(ctx, cfg, hook, exchange, stream, replay, nil)
}

// newInstanceWith is newInstance with more jsonData settings.
func newInstanceWith(ctx context.Context, cfg config, hook *logHook, exchange, stream, replay string, more map[string]any) (*plugin.Instance, error) {
	u, err := url.Parse(cfg.url)
	if err != nil {
		return nil, fmt.Errorf("--amqp.url: %v", err)
	}
	secure := map[string]string{}
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			secure["amqpPassword"] = pw
			u.User = url.User(u.User.Username())
		}
	}
	var topo strings.Builder
	for _, role := range slices.Sorted(maps.Keys(simDependsOn)) {
		fmt.Fprintf(&topo, "%s: [%s]\n", role, strings.Join(simDependsOn[role], ", "))
	}
	settings := map[string]any{
		"amqpUrl": u.String(), "exchange": exchange, "stream": stream,
		"replay": replay, "liveInterval": cfg.liveInterval.String(), "topology": topo.String(),
	}
	for k, v := range more {
		settings[k] = v
	}
	jd, _ := json.Marshal(settings)
	i, err := plugin.Factory(slog.New(hook))(ctx, backend.DataSourceInstanceSettings{
		UID: "runlens-bench", Name: "runlens-bench", JSONData: jd, DecryptedSecureJSONData: secure,
	})
	if err != nil {
		return nil, err
	}
	inst := i.(*plugin.Instance)
	if err := inst.SettingsErr(); err != nil {
		inst.Dispose()
		return nil, err
	}
	return inst, nil
}

// logHook is the instance's logger: warnings and errors go to stderr, and
// the replay's lost-connection warnings are counted (progress is read from
// plugin.Instance.Replayed, not from the log).
type logHook struct {
	out  slog.Handler
	lost *atomic.Int64 // lostMessage warnings
}

func newLogHook() *logHook {
	return &logHook{out: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}), lost: new(atomic.Int64)}
}

func (h *logHook) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *logHook) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == lostMessage {
		h.lost.Add(1)
	}
	if r.Level >= slog.LevelWarn {
		return h.out.Handle(ctx, r)
	}
	return nil
}

func (h *logHook) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHook{out: h.out.WithAttrs(as), lost: h.lost}
}

func (h *logHook) WithGroup(name string) slog.Handler {
	return &logHook{out: h.out.WithGroup(name), lost: h.lost}
}

// ---------------------------------------------------------------- broker names

// names are this run's exchanges and streams, deleted at the end.
type names struct {
	suffix            string
	exchanges, queues []string
}

func newNames() *names { return &names{suffix: strconv.FormatInt(time.Now().UnixNano(), 36)} }

func (n *names) add(kind string) (exchange, stream string) {
	exchange = "runlens.bench-datasource." + n.suffix + "." + kind
	stream = exchange + ".history"
	n.exchanges, n.queues = append(n.exchanges, exchange), append(n.queues, stream)
	return exchange, stream
}

func (n *names) cleanup(url string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cleanup:", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cleanup:", err)
		return
	}
	for _, q := range n.queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup: delete stream", q, err)
			return // the channel is closed by the error
		}
	}
	for _, e := range n.exchanges {
		if err := ch.ExchangeDelete(e, false, false); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup: delete exchange", e, err)
			return
		}
	}
}

// declareHistory declares the stream up front, bound to the exchange, so
// what is published before a plugin instance starts is kept.
func declareHistory(url, exchange, stream string) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := broker.DeclareHistory(conn, broker.History{Stream: stream, Exchange: exchange}, nil)
	if err != nil {
		return err
	}
	return ch.Close()
}

// viewPaths runs a topology query (refId A) and returns the channel paths
// (after ds/<uid>/) of its nodes and edges frames.
func viewPaths(ctx context.Context, inst *plugin.Instance, q map[string]any) (nodes, edges string, err error) {
	raw, _ := json.Marshal(q)
	now := time.Now()
	resp, err := inst.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{
		{RefID: "A", JSON: raw, TimeRange: backend.TimeRange{From: now.Add(-time.Hour), To: now}}}})
	if err != nil {
		return "", "", err
	}
	r := resp.Responses["A"]
	if r.Error != nil {
		return "", "", r.Error
	}
	if len(r.Frames) != 2 || r.Frames[0].Meta == nil || r.Frames[1].Meta == nil {
		return "", "", fmt.Errorf("topology query: %d frames", len(r.Frames))
	}
	strip := func(ch string) string {
		parts := strings.SplitN(ch, "/", 3)
		if len(parts) < 3 {
			return ""
		}
		return parts[2]
	}
	nodes, edges = strip(r.Frames[0].Meta.Channel), strip(r.Frames[1].Meta.Channel)
	if nodes == "" || edges == "" {
		return "", "", fmt.Errorf("topology query without live channels: %q %q", r.Frames[0].Meta.Channel, r.Frames[1].Meta.Channel)
	}
	return nodes, edges, nil
}
