package plugin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/live"
)

func TestChannelPath(t *testing.T) {
	f, err := topoFilter{Environment: "prod", Role: "web", Node: `^web-[0-9]+\.(eu|us)$`, Layout: true}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	inst := &Instance{settings: Settings{UID: "P1a2b3c-_x"}}
	ch := inst.channel(f, pathNodes)
	if _, err := live.ParseChannel(ch); err != nil {
		t.Fatalf("channel %q is not a valid Grafana Live channel: %v", ch, err)
	}
	path := strings.TrimPrefix(ch, "ds/P1a2b3c-_x/")
	got, kind, err := parseStreamPath(path)
	if err != nil || got != f || kind != pathNodes {
		t.Fatalf("round trip: %+v %s %v, want %+v", got, kind, err, f)
	}
	enc := strings.Split(path, "/")[1]
	raw, _ := base64.RawURLEncoding.DecodeString(enc)
	if string(raw) != `{"environment":"prod","role":"web","node":"^web-[0-9]+\\.(eu|us)$","groupBy":"node","layout":true}` {
		t.Errorf("encoded filter %s", raw)
	}
	// Too long for Live: no channel.
	if ch := inst.channel(topoFilter{Node: strings.Repeat("a", 200), GroupBy: "node"}, pathNodes); ch != "" {
		t.Errorf("over-long channel %q", ch)
	}
}

func TestSubscribeAndPublishStream(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	e.publish(t, handlerJSON(run{node: "web-1", env: "prod", role: "web", id: "s1", end: now.Add(-time.Minute)}))
	inst := e.start(t, nil, nil)
	e.waitReports(t, 1)
	f, _ := topoFilter{Environment: "prod"}.normalize()
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, kind := range []string{pathNodes, pathEdges} {
		resp, err := inst.SubscribeStream(context.Background(), &backend.SubscribeStreamRequest{Path: f.streamPath(kind)})
		if err != nil || resp.Status != backend.SubscribeStreamStatusOK || resp.InitialData == nil {
			t.Fatalf("SubscribeStream(%s): %+v %v", kind, resp, err)
		}
		var fr data.Frame
		if err := json.Unmarshal(resp.InitialData.Data(), &fr); err != nil {
			t.Fatal(err)
		}
		if fr.Name != kind {
			t.Errorf("initial frame %q for %s", fr.Name, kind)
		}
		if kind == pathNodes && (fr.Rows() != 1 || fmt.Sprint(fr.Fields[0].At(0)) != "web-1") {
			t.Errorf("initial nodes frame: %d rows", fr.Rows())
		}
	}
	for _, path := range []string{
		"", "nope", "topology", "topology/" + f.streamPath(pathNodes), "topology/!!!/nodes",
		"topology/" + enc(`not json`) + "/nodes",
		"topology/" + enc(`{"node":"("}`) + "/nodes",
		"topology/" + enc(`{"groupBy":"rack"}`) + "/nodes",
		"topology/" + enc(`{"evil":1}`) + "/nodes",
		"topology/" + enc(`{}`) + "/both",
	} {
		resp, err := inst.SubscribeStream(context.Background(), &backend.SubscribeStreamRequest{Path: path})
		if err != nil || resp.Status != backend.SubscribeStreamStatusNotFound {
			t.Errorf("SubscribeStream(%q): %+v %v, want NotFound", path, resp, err)
		}
	}
	pub, err := inst.PublishStream(context.Background(), &backend.PublishStreamRequest{Path: f.streamPath(pathNodes), Data: []byte(`{}`)})
	if err != nil || pub.Status != backend.PublishStreamStatusPermissionDenied {
		t.Errorf("PublishStream: %+v %v", pub, err)
	}
}

func TestRunStream(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, map[string]any{"liveInterval": "400ms"}, nil)
	interval := 400 * time.Millisecond

	f, _ := topoFilter{Environment: "prod"}.normalize()
	rec := &recorder{}
	edgesRec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() {
		done <- inst.RunStream(ctx, &backend.RunStreamRequest{Path: f.streamPath(pathNodes)}, backend.NewStreamSender(rec))
	}()
	go func() {
		done <- inst.RunStream(ctx, &backend.RunStreamRequest{Path: f.streamPath(pathEdges)}, backend.NewStreamSender(edgesRec))
	}()
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("RunStream: %v", err)
			}
		}
	}()

	// Nothing changes: nothing is sent.
	time.Sleep(2 * interval)
	if n := len(rec.all()); n != 0 {
		t.Fatalf("%d frames without a change", n)
	}
	published := time.Now()
	e.publish(t, handlerJSON(run{node: "db-1", env: "prod", role: "db", id: "r1", end: time.Now()}))
	waitFrames(t, rec, 1, 2*time.Second)
	first := rec.all()[0]
	t.Logf("publish → frame in %s", first.at.Sub(published).Round(time.Millisecond))
	if first.frame.Name != "nodes" || first.frame.Rows() != 1 || fmt.Sprint(first.frame.Fields[0].At(0)) != "db-1" {
		t.Fatalf("first frame %q rows %d", first.frame.Name, first.frame.Rows())
	}

	// A burst of reports over ~2 intervals: frames are coalesced, at most
	// one per interval, and the last one has every node.
	start := time.Now()
	for i := range 10 {
		e.publish(t, handlerJSON(run{node: fmt.Sprintf("web-%d", i), env: "prod", role: "web", id: fmt.Sprint("b", i), end: time.Now()}))
		time.Sleep(interval / 5)
	}
	elapsed := time.Since(start)
	deadline := time.Now().Add(3 * time.Second)
	for {
		ps := rec.all()
		if ps[len(ps)-1].frame.Rows() == 11 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last frame has %d rows, want 11", ps[len(ps)-1].frame.Rows())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ps := rec.all()
	for i := 1; i < len(ps); i++ {
		if gap := ps[i].at.Sub(ps[i-1].at); gap < interval*3/4 {
			t.Errorf("frames %d and %d only %s apart (liveInterval %s)", i-1, i, gap, interval)
		}
	}
	if max := int(elapsed/interval) + 3; len(ps) > max {
		t.Errorf("%d frames for a burst of %s, want at most %d", len(ps), elapsed, max)
	}
	// The edges stream sent edges frames (web -> db within prod).
	eps := edgesRec.all()
	if len(eps) == 0 || eps[len(eps)-1].frame.Name != "edges" || eps[len(eps)-1].frame.Rows() != 10 {
		t.Errorf("edges stream: %d frames", len(eps))
	}
	// Another environment does not match the stream's filter, but the fleet
	// changed: a frame is sent all the same (same content). Not asserted.
}

func waitFrames(t *testing.T, r *recorder, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(r.all()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no frame within %s (have %d, want %d)", timeout, len(r.all()), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
