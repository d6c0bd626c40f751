package main

// The live topology driven over Grafana's plugin protocol: the built binary,
// both Live channels of a view subscribed and run as Grafana's live
// runstream manager does, while the fleet grows and shrinks (nodes
// appearing, and expiring after the datasource's replay window) across
// groupByRoleAbove both ways. A model of the browser checks every frame
// on arrival.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"

	"github.com/runlens/runlens/datasource/plugin"
	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/pkg/broker"
)

var update = flag.Bool("update", false, "rewrite testdata/live-packets.json from what the backend sends")

const livePacketsFile = "testdata/live-packets.json"

// browser holds what the panel would: the latest frame of each channel
// (Grafana's LiveDataStream with the Replace action keeps the last packet
// of each channel, public/app/features/live/centrifuge/LiveDataStream.ts),
// and checks, at every arrival, what Grafana's Node Graph panel needs:
// every edge's ends among the latest nodes frame's ids ("edges reference
// missing nodes", public/app/plugins/panel/nodeGraph/dataErrors.ts),
// fixedX and fixedY on every node (processNodes in utils.ts takes fixed
// positions only when all are set), no pinned node moved, and each
// frame's bytes under the bound.
type browser struct {
	mu         sync.Mutex
	latest     map[string]*data.Frame
	prevNodes  *data.Frame // the nodes frame before the latest
	arrivals   map[string]int
	views      map[string]int
	maxBytes   int
	violations []string
	packets    []capturedPacket // in arrival order
	withEdges  int
}

type capturedPacket struct {
	Seq  int             `json:"seq"`
	Path string          `json:"path"`
	Kind string          `json:"kind"`
	Data json.RawMessage `json:"data"`
}

func newBrowser() *browser {
	return &browser{latest: map[string]*data.Frame{}, arrivals: map[string]int{}, views: map[string]int{}}
}

func viewOf(nodes *data.Frame) string {
	if _, i := nodes.FieldByName("detail__nodes"); i >= 0 {
		return "role"
	}
	return "node"
}

func (b *browser) violate(format string, args ...any) {
	if len(b.violations) < 20 {
		b.violations = append(b.violations, fmt.Sprintf(format, args...))
	}
}

// arrive takes one packet as Grafana would hand it on; record keeps it for
// the capture.
func (b *browser) arrive(path, kind string, raw []byte, record bool) {
	var f data.Frame
	err := json.Unmarshal(raw, &f)
	b.mu.Lock()
	defer b.mu.Unlock()
	if record {
		b.packets = append(b.packets, capturedPacket{Seq: len(b.packets), Path: path, Kind: kind, Data: slices.Clone(raw)})
	}
	b.arrivals[kind]++
	b.maxBytes = max(b.maxBytes, len(raw))
	if err != nil {
		b.violate("%s packet is not a frame: %v", kind, err)
		return
	}
	if len(raw) > plugin.MaxLiveFrameBytes {
		b.violate("%s frame of %d bytes, over the %d bound", kind, len(raw), plugin.MaxLiveFrameBytes)
	}
	if f.Name != kind || f.RefID != "A" {
		b.violate("%s channel sent frame %q with refId %q", kind, f.Name, f.RefID)
	}
	if kind == "nodes" {
		b.views[viewOf(&f)]++
		b.checkPinned(&f)
		b.prevNodes = b.latest["nodes"]
	} else if f.Rows() > 0 {
		b.withEdges++
	}
	b.latest[kind] = &f
	b.checkEdges()
}

func (b *browser) checkEdges() {
	nodes, edges := b.latest["nodes"], b.latest["edges"]
	if nodes == nil || edges == nil || edges.Rows() == 0 {
		return
	}
	ids := map[string]bool{}
	idField, _ := nodes.FieldByName("id")
	for i := range nodes.Rows() {
		ids[idField.At(i).(string)] = true
	}
	src, _ := edges.FieldByName("source")
	dst, _ := edges.FieldByName("target")
	for i := range edges.Rows() {
		for _, end := range []string{src.At(i).(string), dst.At(i).(string)} {
			if !ids[end] {
				b.violate("latest edges frame names %s, absent from the latest nodes frame (%d nodes)", end, nodes.Rows())
			}
		}
	}
}

func positionsOf(f *data.Frame) (map[string][2]float64, bool) {
	idField, _ := f.FieldByName("id")
	x, _ := f.FieldByName("fixedX")
	y, _ := f.FieldByName("fixedY")
	if idField == nil || x == nil || y == nil {
		return nil, false
	}
	out := map[string][2]float64{}
	for i := range f.Rows() {
		xv, okx := x.ConcreteAt(i)
		yv, oky := y.ConcreteAt(i)
		if !okx || !oky {
			return nil, false
		}
		out[idField.At(i).(string)] = [2]float64{xv.(float64), yv.(float64)}
	}
	return out, true
}

func (b *browser) checkPinned(f *data.Frame) {
	pos, ok := positionsOf(f)
	if !ok {
		b.violate("nodes frame without fixedX/fixedY on every node")
		return
	}
	prev := b.latest["nodes"]
	if prev == nil || viewOf(prev) != viewOf(f) {
		return
	}
	old, _ := positionsOf(prev)
	for id, p := range pos {
		if q, ok := old[id]; ok && q != p {
			b.violate("%s moved from %v to %v", id, q, p)
		}
	}
}

// shows reports what the latest nodes frame holds: its view and ids.
func (b *browser) shows() (string, map[string]bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.latest["nodes"]
	if f == nil {
		return "", nil
	}
	ids := map[string]bool{}
	idField, _ := f.FieldByName("id")
	for i := range f.Rows() {
		ids[idField.At(i).(string)] = true
	}
	return viewOf(f), ids
}

func (b *browser) edgeIDs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.latest["edges"]
	if f == nil || f.Rows() == 0 {
		return nil
	}
	id, _ := f.FieldByName("id")
	var out []string
	for i := range f.Rows() {
		out = append(out, id.At(i).(string))
	}
	return out
}

// fleetKeeper publishes a report for every node it keeps alive, over and
// over: a node it stops keeping expires after the datasource's replay
// window.
type fleetKeeper struct {
	mu    sync.Mutex
	alive map[string]string // node → role
	runs  int
	stop  chan struct{}
	done  chan struct{}
}

func startKeeper(t *testing.T, ds *testDataSource, every time.Duration) *fleetKeeper {
	t.Helper()
	pub, err := broker.NewPublisher(context.Background(), rabbittest.URL, ds.exchange, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := &fleetKeeper{alive: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(k.done)
		defer pub.Close()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			k.mu.Lock()
			var bodies [][]byte
			for node, role := range k.alive {
				k.runs++
				bodies = append(bodies, handlerReport(node, "prod", role, fmt.Sprintf("%s-%d", node, k.runs), time.Now(), "success"))
			}
			k.mu.Unlock()
			if len(bodies) > 0 {
				if err := pub.PublishAll(context.Background(), bodies, 0); err != nil {
					t.Errorf("keeper: %v", err)
					return
				}
			}
			select {
			case <-k.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(k.stop); <-k.done })
	return k
}

func (k *fleetKeeper) set(add, remove []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, n := range remove {
		delete(k.alive, n)
	}
	for _, n := range add {
		k.alive[n] = strings.SplitN(n, "-", 2)[0] // web-3 → web
	}
}

func (k *fleetKeeper) names() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for n := range k.alive {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// liveRun is one live view followed over the protocol.
type liveRun struct {
	ds      *testDataSource
	p       *pluginProcess
	b       *browser
	query   []json.RawMessage
	initial map[string]json.RawMessage
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// followLive queries the view, subscribes to both of its channels and runs
// both streams, feeding the browser model as Grafana's frontend would:
// the query's frames, then each subscription's initial data, then the
// stream's packets.
func followLive(t *testing.T, p *pluginProcess, ds *testDataSource, record bool) *liveRun {
	t.Helper()
	now := time.Now()
	frames := ds.query(t, p, map[string]any{"queryType": "topology"}, now.Add(-time.Hour), now.Add(time.Minute))
	if len(frames) != 2 {
		t.Fatalf("%d frames", len(frames))
	}
	lr := &liveRun{ds: ds, p: p, b: newBrowser(), initial: map[string]json.RawMessage{}}
	ctx, cancel := context.WithCancel(context.Background())
	lr.cancel = cancel
	for _, f := range frames {
		raw, err := data.FrameToJSON(f, data.IncludeAll)
		if err != nil {
			t.Fatal(err)
		}
		lr.query = append(lr.query, raw)
		lr.b.arrive("", f.Name, raw, false)
	}
	for _, f := range frames {
		kind := f.Name
		if !strings.HasPrefix(f.Meta.Channel, "ds/runlens-grpc/topology/") {
			t.Fatalf("%s frame channel %q", kind, f.Meta.Channel)
		}
		path := strings.TrimPrefix(f.Meta.Channel, "ds/runlens-grpc/")
		if id := f.Meta.Channel; len(id) > 160 {
			t.Errorf("channel %q is %d characters, over the SDK's 160", id, len(id))
		}
		sub, err := p.stream.SubscribeStream(ctx, &pluginv2.SubscribeStreamRequest{PluginContext: ds.ctx, Path: path})
		if err != nil || sub.Status != pluginv2.SubscribeStreamResponse_OK {
			t.Fatalf("SubscribeStream(%s): %v %v", path, sub.GetStatus(), err)
		}
		lr.initial[kind] = slices.Clone(sub.Data)
		lr.b.arrive(path, kind, sub.Data, false)
		run, err := p.stream.RunStream(ctx, &pluginv2.RunStreamRequest{PluginContext: ds.ctx, Path: path})
		if err != nil {
			t.Fatal(err)
		}
		lr.wg.Add(1)
		go func() {
			defer lr.wg.Done()
			for {
				pkt, err := run.Recv()
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("RunStream(%s) ended: %v", path, err)
					}
					return
				}
				lr.b.arrive(path, kind, pkt.Data, record)
			}
		}()
	}
	t.Cleanup(lr.stop)
	return lr
}

func (lr *liveRun) stop() {
	lr.cancel()
	lr.wg.Wait()
}

// scenario grows the fleet over the by-role threshold (6 here) and back,
// with nodes appearing and expiring, and waits on what the browser shows
// at each step.
func scenario(t *testing.T, lr *liveRun, k *fleetKeeper, cycles int) {
	t.Helper()
	waitShows := func(what string, ok func(view string, ids map[string]bool) bool) {
		t.Helper()
		waitUntil(t, what, 30*time.Second, func() bool { v, ids := lr.b.shows(); return ok(v, ids) })
	}
	k.set([]string{"db-0", "web-0"}, nil)
	waitShows("db-0 and web-0 by node", func(v string, ids map[string]bool) bool { return v == "node" && ids["db-0"] && ids["web-0"] })
	waitUntil(t, "the edge web-0 → db-0", 30*time.Second, func() bool { return slices.Contains(lr.b.edgeIDs(), "web-0->db-0") })
	next := 1
	for c := range cycles {
		// Grow past 6 nodes, one at a time: each shows (by node), until the
		// view switches to roles.
		for len(k.names()) <= 6 {
			role := []string{"web", "db"}[next%2]
			name := fmt.Sprintf("%s-%d", role, next)
			next++
			k.set([]string{name}, nil)
			if len(k.names()) <= 6 {
				waitShows(name+" by node", func(v string, ids map[string]bool) bool { return v == "node" && ids[name] })
			}
		}
		waitShows(fmt.Sprintf("cycle %d: the by-role view over 6 nodes", c), func(v string, ids map[string]bool) bool {
			return v == "role" && ids["web"] && ids["db"]
		})
		// Churn: one node goes while another comes, then shrink two at a
		// time back under the threshold.
		names := k.names()
		role := []string{"web", "db"}[next%2]
		name := fmt.Sprintf("%s-%d", role, next)
		next++
		k.set([]string{name}, names[:1])
		for len(k.names()) > 4 {
			k.set(nil, k.names()[:2])
		}
		gone := names[:1]
		alive := k.names()
		waitShows(fmt.Sprintf("cycle %d: back by node with %v, without %v", c, alive, gone), func(v string, ids map[string]bool) bool {
			if v != "node" || ids[gone[0]] {
				return false
			}
			for _, n := range alive {
				if !ids[n] {
					return false
				}
			}
			return len(ids) == len(alive)
		})
	}
}

func liveDataSource(t *testing.T) *testDataSource {
	t.Helper()
	// Nodes expire 2 s after their last report (the replay window), the
	// view switches to roles above 6 nodes.
	return newTestDataSourceWith(t, map[string]any{"replay": "2s", "liveInterval": "200ms", "groupByRoleAbove": 6})
}

// TestLiveTopologyOverGRPC is issue #9's acceptance test.
func TestLiveTopologyOverGRPC(t *testing.T) {
	p := startPlugin(t, buildPlugin(t))
	ds := liveDataSource(t)
	k := startKeeper(t, ds, 300*time.Millisecond)
	lr := followLive(t, p, ds, false)
	scenario(t, lr, k, 2)
	lr.stop()
	b := lr.b
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, v := range b.violations {
		t.Error(v)
	}
	t.Logf("arrivals %v (views %v), %d edges frames with edges, largest frame %d bytes", b.arrivals, b.views, b.withEdges, b.maxBytes)
	if b.arrivals["nodes"] < 10 || b.arrivals["edges"] < 5 || b.views["role"] == 0 || b.views["node"] == 0 || b.withEdges == 0 {
		t.Errorf("the scenario did not exercise the stream: arrivals %v, views %v, %d edges frames with edges", b.arrivals, b.views, b.withEdges)
	}
}

// TestCaptureLivePackets keeps datasource/testdata/live-packets.json (what
// the frontend's tests feed through @grafana/data) honest: the packets the
// backend sends now have the same frames, fields and field types as the
// committed capture. -update rewrites it.
func TestCaptureLivePackets(t *testing.T) {
	p := startPlugin(t, buildPlugin(t))
	ds := liveDataSource(t)
	k := startKeeper(t, ds, 300*time.Millisecond)
	lr := followLive(t, p, ds, true)
	scenario(t, lr, k, 1)
	lr.stop()
	lr.b.mu.Lock()
	defer lr.b.mu.Unlock()
	for _, v := range lr.b.violations {
		t.Error(v)
	}
	capture := liveCapture{
		Scenario: "The built plugin over Grafana's plugin protocol: a topology query (refId A, groupBy node, pinned), both of its " +
			"Live channels subscribed and run. Settings: topology web: [db], liveInterval 200ms, replay 2s (nodes expire 2 s after " +
			"their last report), groupByRoleAbove 6. The fleet (environment prod) starts with db-0 and web-0, grows one node at a " +
			"time past 6 (the view switches to by role), one node leaves as another comes, then it shrinks to 4 (back to by node). " +
			"packets: every RunStream packet in arrival order; query: the query's frames; subscribe: each SubscribeStream's initial data.",
		Query: lr.query, Subscribe: lr.initial, Packets: lr.b.packets,
	}
	if *update {
		b, err := json.MarshalIndent(capture, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(livePacketsFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s: %d packets", livePacketsFile, len(capture.Packets))
		return
	}
	raw, err := os.ReadFile(livePacketsFile)
	if err != nil {
		t.Fatalf("%v (regenerate with go test ./datasource/ -run TestCaptureLivePackets -update)", err)
	}
	var committed liveCapture
	if err := json.Unmarshal(raw, &committed); err != nil {
		t.Fatal(err)
	}
	if got, want := schemas(t, capture), schemas(t, committed); !slices.Equal(got, want) {
		t.Errorf("the backend's frames differ from %s (regenerate with go test ./datasource/ -run TestCaptureLivePackets -update):\n now:       %v\n committed: %v",
			livePacketsFile, got, want)
	}
}

type liveCapture struct {
	Scenario  string                     `json:"scenario"`
	Query     []json.RawMessage          `json:"query"`
	Subscribe map[string]json.RawMessage `json:"subscribe"`
	Packets   []capturedPacket           `json:"packets"`
}

// schemas lists the distinct frame shapes of a capture: kind, view, and
// each field's name and type (the notice marker field's name varies with
// the notice's text: only its presence counts).
func schemas(t *testing.T, c liveCapture) []string {
	t.Helper()
	seen := map[string]bool{}
	add := func(kind string, raw []byte) {
		var f data.Frame
		if err := json.Unmarshal(raw, &f); err != nil {
			t.Fatal(err)
		}
		var fields []string
		for _, fl := range f.Fields {
			name := fl.Name
			if strings.HasPrefix(name, "notice:") {
				name = "notice:*"
			}
			fields = append(fields, name+":"+fl.Type().String())
		}
		view := "-"
		if kind == "nodes" {
			view = viewOf(&f)
		}
		seen[kind+" "+view+" "+f.Name+" ["+strings.Join(fields, " ")+"]"] = true
	}
	for _, p := range c.Packets {
		add(p.Kind, p.Data)
	}
	var out []string
	for s := range seen {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}
