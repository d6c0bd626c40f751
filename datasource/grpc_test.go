package main

// These tests build the plugin binary and drive it over Grafana's own plugin
// protocol: hashicorp/go-plugin with the SDK's grpcplugin handshake, as
// Grafana's plugin manager starts backend plugins. Nothing is faked: the
// binary talks to the real RabbitMQ.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/grpcplugin"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	hclog "github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/pkg/broker"
)

const pluginID = "runlens-topology-datasource"

// pluginProcess is the plugin binary started as Grafana starts it.
type pluginProcess struct {
	client *goplugin.Client
	data   pluginv2.DataClient
	stream pluginv2.StreamClient
	diag   pluginv2.DiagnosticsClient
}

func buildPlugin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gpx_"+pluginID+"_linux_amd64")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./datasource: %v\n%s", err, out)
	}
	return bin
}

func startPlugin(t *testing.T, bin string) *pluginProcess {
	t.Helper()
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: goplugin.HandshakeConfig{
			ProtocolVersion:  grpcplugin.ProtocolVersion,
			MagicCookieKey:   grpcplugin.MagicCookieKey,
			MagicCookieValue: grpcplugin.MagicCookieValue,
		},
		Plugins: map[string]goplugin.Plugin{
			"data":        &grpcplugin.DataGRPCPlugin{},
			"stream":      &grpcplugin.StreamGRPCPlugin{},
			"diagnostics": &grpcplugin.DiagnosticsGRPCPlugin{},
		},
		Cmd:              exec.Command(bin),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Error}),
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("plugin handshake: %v", err)
	}
	p := &pluginProcess{client: client}
	for name, target := range map[string]any{"data": &p.data, "stream": &p.stream, "diagnostics": &p.diag} {
		raw, err := rpc.Dispense(name)
		if err != nil {
			t.Fatalf("Dispense(%q): %v", name, err)
		}
		switch v := target.(type) {
		case *pluginv2.DataClient:
			*v = raw.(pluginv2.DataClient)
		case *pluginv2.StreamClient:
			*v = raw.(pluginv2.StreamClient)
		case *pluginv2.DiagnosticsClient:
			*v = raw.(pluginv2.DiagnosticsClient)
		}
	}
	return p
}

type testDataSource struct {
	exchange, stream string
	ctx              *pluginv2.PluginContext
}

func newTestDataSource(t *testing.T) *testDataSource {
	t.Helper()
	return newTestDataSourceWith(t, nil)
}

// newTestDataSourceWith is newTestDataSource with some jsonData settings
// set or replaced.
func newTestDataSourceWith(t *testing.T, settings map[string]any) *testDataSource {
	t.Helper()
	ds := &testDataSource{exchange: rabbittest.Name(t, "ex"), stream: rabbittest.Name(t, "hist")}
	rabbittest.DeleteQueues(t, ds.stream)
	rabbittest.DeleteExchanges(t, ds.exchange)
	jd := map[string]any{
		"amqpUrl":      "amqp://guest@127.0.0.1:5672/",
		"exchange":     ds.exchange,
		"stream":       ds.stream,
		"replay":       "1h",
		"liveInterval": "200ms",
		"topology":     "web: [db]\n",
	}
	for k, v := range settings {
		jd[k] = v
	}
	jsonData, _ := json.Marshal(jd)
	ds.ctx = &pluginv2.PluginContext{
		OrgId:    1,
		PluginId: pluginID,
		DataSourceInstanceSettings: &pluginv2.DataSourceInstanceSettings{
			Id: 1, Uid: "runlens-grpc", Name: "runlens", JsonData: jsonData,
			DecryptedSecureJsonData: map[string]string{"amqpPassword": "guest"},
			LastUpdatedMS:           time.Now().UnixMilli(),
		},
	}
	return ds
}

func (ds *testDataSource) publish(t *testing.T, bodies ...[]byte) {
	t.Helper()
	p, err := broker.NewPublisher(context.Background(), rabbittest.URL, ds.exchange, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.PublishAll(context.Background(), bodies, 0); err != nil {
		t.Fatal(err)
	}
}

func handlerReport(node, env, role, id string, end time.Time, status string) []byte {
	return []byte(fmt.Sprintf(`{"node_name":%q,"environment":%q,"status":%q,"run_start_time":%q,"run_end_time":%q,`+
		`"run_elapsed_time":20,"updated_resources":["file[/etc/%s.conf]"],"run_id":%q,"roles":[%q]}`,
		node, env, status, end.Add(-20*time.Second).UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), role, id, role))
}

func (ds *testDataSource) query(t *testing.T, p *pluginProcess, q map[string]any, from, to time.Time) []*data.Frame {
	t.Helper()
	body, _ := json.Marshal(q)
	resp, err := p.data.QueryData(context.Background(), &pluginv2.QueryDataRequest{
		PluginContext: ds.ctx,
		Queries: []*pluginv2.DataQuery{{
			RefId: "A", QueryType: fmt.Sprint(q["queryType"]), Json: body,
			TimeRange: &pluginv2.TimeRange{FromEpochMS: from.UnixMilli(), ToEpochMS: to.UnixMilli()},
		}},
	})
	if err != nil {
		t.Fatalf("QueryData %v: %v", q, err)
	}
	r := resp.Responses["A"]
	if r == nil {
		t.Fatalf("QueryData %v: no response for A", q)
	}
	if r.Error != "" {
		t.Fatalf("QueryData %v: %s", q, r.Error)
	}
	frames, err := data.UnmarshalArrowFrames(r.Frames)
	if err != nil {
		t.Fatalf("QueryData %v: frames: %v", q, err)
	}
	return frames
}

func column(t *testing.T, f *data.Frame, name string) []string {
	t.Helper()
	idx := -1
	for i, field := range f.Fields {
		if field.Name == name {
			idx = i
		}
	}
	if idx < 0 {
		t.Fatalf("frame %q has no field %q", f.Name, name)
	}
	var out []string
	for i := 0; i < f.Fields[idx].Len(); i++ {
		v, _ := f.Fields[idx].ConcreteAt(i)
		out = append(out, fmt.Sprint(v))
	}
	return out
}

func waitUntil(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestPluginOverGRPC(t *testing.T) {
	bin := buildPlugin(t)
	p := startPlugin(t, bin)
	ds := newTestDataSource(t)

	health, err := p.diag.CheckHealth(context.Background(), &pluginv2.CheckHealthRequest{PluginContext: ds.ctx})
	if err != nil {
		t.Fatal(err)
	}
	if health.Status != pluginv2.CheckHealthResponse_OK {
		t.Fatalf("health: %v %s", health.Status, health.Message)
	}

	now := time.Now().Truncate(time.Second)
	ds.publish(t,
		handlerReport("web-1", "prod", "web", "w1", now.Add(-2*time.Minute), "success"),
		handlerReport("db-1", "prod", "db", "d1", now.Add(-time.Minute), "failure"),
	)
	from, to := now.Add(-time.Hour), now.Add(time.Minute)
	var frames []*data.Frame
	// A node's edges come a generation after it appears (the live view's
	// frames fit any of their neighbours'): wait for both.
	waitUntil(t, "both nodes and their edge in the topology", 30*time.Second, func() bool {
		frames = ds.query(t, p, map[string]any{"queryType": "topology"}, from, to)
		return len(frames) == 2 && frames[0].Rows() == 2 && frames[1].Rows() == 1
	})
	nodes, edges := frames[0], frames[1]
	if got := strings.Join(column(t, nodes, "id"), ","); got != "db-1,web-1" {
		t.Errorf("node ids %s, want db-1,web-1 (sorted)", got)
	}
	if got := strings.Join(column(t, edges, "id"), ","); got != "web-1->db-1" {
		t.Errorf("edges %s, want web-1->db-1 (topology web: [db])", got)
	}
	for _, f := range frames {
		if f.Meta == nil || f.Meta.PreferredVisualization != data.VisTypeNodeGraph || !strings.HasPrefix(f.Meta.Channel, "ds/runlens-grpc/topology/") {
			t.Fatalf("frame %q meta %+v: want nodeGraph and a ds/<uid>/topology/ channel", f.Name, f.Meta)
		}
	}

	runs := ds.query(t, p, map[string]any{"queryType": "runs"}, from, to)
	if len(runs) != 1 || runs[0].Rows() != 2 {
		t.Fatalf("runs: %d frames, rows %v", len(runs), runs)
	}
	changes := ds.query(t, p, map[string]any{"queryType": "changes", "environment": "prod", "node": "db.*"}, from, to)
	if len(changes) != 1 || changes[0].Rows() != 1 || !strings.Contains(column(t, changes[0], "title")[0], "db-1") {
		t.Fatalf("changes filtered to db-1: %v", changes)
	}

	// impact needs Prometheus; this datasource has none configured, and the
	// answer over the protocol must say so for that query alone.
	impactBody, _ := json.Marshal(map[string]any{"queryType": "impact"})
	resp, err := p.data.QueryData(context.Background(), &pluginv2.QueryDataRequest{
		PluginContext: ds.ctx,
		Queries: []*pluginv2.DataQuery{{RefId: "I", QueryType: "impact", Json: impactBody,
			TimeRange: &pluginv2.TimeRange{FromEpochMS: from.UnixMilli(), ToEpochMS: to.UnixMilli()}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if e := resp.Responses["I"].GetError(); !strings.Contains(e, "Prometheus") {
		t.Errorf("impact without Prometheus: error %q, want one naming Prometheus", e)
	}

	// Live: subscribe to the nodes channel, run the stream, publish, and
	// expect an updated frame.
	channel := nodes.Meta.Channel
	path := strings.TrimPrefix(channel, "ds/runlens-grpc/")
	sub, err := p.stream.SubscribeStream(context.Background(), &pluginv2.SubscribeStreamRequest{PluginContext: ds.ctx, Path: path})
	if err != nil || sub.Status != pluginv2.SubscribeStreamResponse_OK {
		t.Fatalf("SubscribeStream(%s): %v %v", path, sub.GetStatus(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run, err := p.stream.RunStream(ctx, &pluginv2.RunStreamRequest{PluginContext: ds.ctx, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	packets := make(chan []byte, 100)
	go func() {
		for {
			pkt, err := run.Recv()
			if err != nil {
				close(packets)
				return
			}
			packets <- pkt.Data
		}
	}()
	// The stream's first packet is the view's frame as the query saw it.
	select {
	case pkt := <-packets:
		var f data.Frame
		if err := json.Unmarshal(pkt, &f); err != nil || f.Rows() != 2 {
			t.Fatalf("first packet: %d rows, %v", f.Rows(), err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no first packet")
	}
	published := time.Now()
	ds.publish(t, handlerReport("cache-1", "prod", "cache", "c1", time.Now(), "success"))
	deadline := time.After(10 * time.Second)
	for {
		select {
		case pkt, ok := <-packets:
			if !ok {
				t.Fatal("RunStream ended")
			}
			var f data.Frame
			if err := json.Unmarshal(pkt, &f); err != nil {
				t.Fatalf("stream packet is not a frame: %v", err)
			}
			if f.Rows() == 3 {
				t.Logf("publish → frame in %s", time.Since(published).Round(time.Millisecond))
				return
			}
		case <-deadline:
			t.Fatal("no frame with the new node within 10 s of the publish")
		}
	}
}

func TestPluginSubscribeRejectsUnknownPaths(t *testing.T) {
	p := startPlugin(t, buildPlugin(t))
	ds := newTestDataSource(t)
	bad := base64.RawURLEncoding.EncodeToString([]byte("not json"))
	for _, path := range []string{"nope", "topology/v1." + bad + "/nodes", "topology/h1.AAAAAAAAAAAAAAAAAAAAAA/nodes"} {
		sub, err := p.stream.SubscribeStream(context.Background(), &pluginv2.SubscribeStreamRequest{PluginContext: ds.ctx, Path: path})
		if err == nil && sub.Status == pluginv2.SubscribeStreamResponse_OK {
			t.Errorf("SubscribeStream(%q) accepted", path)
		}
	}
}
