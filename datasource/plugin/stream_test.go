package plugin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/live"

	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/internal/testlog"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/topology"
)

// Channel paths fit the SDK's rules (live.ParseChannel: 160 characters,
// [A-Za-z0-9_-/=.] in the path) for any filter: embedded when they fit,
// hashed otherwise; both read back to the same view.
func TestChannelPaths(t *testing.T) {
	reg := newChannelRegistry(maxRegistered)
	uid := strings.Repeat("u", 40) // Grafana's longest UID
	long := channelView{RefID: "A query with a long name", Filter: topoFilter{
		Environments: []string{"production-eu-west-1", "production-us-east-1", "staging"},
		Roles:        []string{"base", "web"},
		Node:         "(?:" + strings.Repeat(`web-[0-9]+\.example\.com|`, 150) + "x)",
		GroupBy:      topology.ByRole, Layout: layoutAuto}}
	short := channelView{RefID: "A", Filter: topoFilter{Environments: []string{"prod"}, Node: `web-.*`}}
	for _, tc := range []struct {
		cv     channelView
		hashed bool
	}{{short, false}, {long, true}} {
		nodes, edges, hashed := channelPaths(uid, tc.cv)
		if hashed != tc.hashed {
			t.Errorf("%+v: hashed %v, want %v", tc.cv.Filter, hashed, tc.hashed)
		}
		for _, p := range []string{nodes, edges} {
			id := channelID(uid, p)
			if _, err := live.ParseChannel(id); err != nil || len(id) > 160 {
				t.Fatalf("channel %q (%d characters) is not a valid Grafana Live channel: %v", id, len(id), err)
			}
		}
		if hashed {
			if _, _, err := parseChannelPath(nodes, reg); !errors.Is(err, errUnknownView) {
				t.Errorf("unregistered hashed path: %v", err)
			}
			reg.register(tc.cv)
		}
		got, kind, err := parseChannelPath(edges, reg)
		if err != nil || kind != kindEdges || got.RefID != tc.cv.RefID || got.Filter.key() != tc.cv.Filter.key() {
			t.Errorf("round trip of %s: %+v %s %v", edges, got, kind, err)
		}
	}
	enc := func(s string) string {
		return "topology/v1." + base64.RawURLEncoding.EncodeToString([]byte(s)) + "/nodes"
	}
	for _, bad := range []string{
		"", "nope", "topology", "topology/x/nodes", "topology/v1.!!!/nodes", enc(`not json`),
		enc(`{"q":"A","f":{"n":"("}}`), enc(`{"q":"A","f":{"g":"rack"}}`), enc(`{"q":"A","f":{},"evil":1}`),
		enc(`{"q":"A","f":{"e":["b","a"]}}`), // not normalized
		enc(`{"f":{},"q":"A"}`),              // not canonical
		"topology/v1." + strings.Repeat("A", 10) + "/both",
	} {
		if _, _, err := parseChannelPath(bad, reg); err == nil {
			t.Errorf("path %q accepted", bad)
		}
	}
	// The registry forgets the least recently used.
	small := newChannelRegistry(2)
	var views []channelView
	for i := range 3 {
		views = append(views, channelView{RefID: fmt.Sprint(i)})
		small.register(views[i])
	}
	if _, ok := small.lookup(hashOf(views[0].json())); ok {
		t.Error("registry kept more than its bound")
	}
	if _, ok := small.lookup(hashOf(views[2].json())); !ok {
		t.Error("registry lost the newest view")
	}
}

// bareInstance is an Instance with a fleet and no broker: the live views'
// unit tests drive its fleet and its views' ticks directly (the interval
// is an hour, so no tick of their own happens meanwhile).
func bareInstance(t *testing.T, s Settings) (*Instance, *testlog.Buffer) {
	t.Helper()
	logs := &testlog.Buffer{}
	if s.UID == "" {
		s.UID = "bare"
	}
	if s.LiveInterval == 0 {
		s.LiveInterval = time.Hour
	}
	if s.GroupByRoleAbove == 0 {
		s.GroupByRoleAbove = DefaultGroupByRoleAbove
	}
	inst := &Instance{settings: s, log: slogTo(logs), fleet: fleet.New(fleet.Options{KeepChanges: keepChanges}),
		history: fleet.NewHistory(fleet.HistoryOptions{}), caughtUp: make(chan struct{}), cancel: func() {},
		channels: newChannelRegistry(maxRegistered), started: time.Now()}
	close(inst.caughtUp)
	t.Cleanup(inst.Dispose)
	return inst, logs
}

func applyRun(inst *Instance, node, env, role string, deps ...string) {
	inst.fleet.Apply(&report.Run{Node: node, Environment: env, Roles: []string{role}, DependsOn: deps, Status: report.StatusSuccess,
		End: time.Now(), Kind: report.KindRun, ID: fmt.Sprintf("%s-%d", node, time.Now().UnixNano())}, time.Now())
}

// One build per change for any number of subscribers, every subscriber
// handed the same generation, each frame encoded once per RefID and kind.
func TestLiveViewOneBuildForManySubscribers(t *testing.T) {
	inst, _ := bareInstance(t, Settings{Topology: topology.Config{DependsOn: map[string][]string{"web": {"db"}}}})
	applyRun(inst, "web-1", "prod", "web")
	applyRun(inst, "db-1", "prod", "db")
	v, err := inst.view(topoFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var subs []*subscriber
	for i := range 100 {
		kind := []string{kindNodes, kindEdges}[i%2]
		s, err := v.attach(context.Background(), kind, "A", "ch-"+kind)
		if err != nil {
			t.Fatal(err)
		}
		<-s.ch // the latest, on joining
		subs = append(subs, s)
	}
	for round := range 3 {
		applyRun(inst, fmt.Sprintf("web-%d", round+2), "prod", "web")
		before := LiveStats()
		v.tick(time.Now())
		after := LiveStats()
		if after.Builds-before.Builds != 1 {
			t.Fatalf("round %d: %d builds for 100 subscribers, want 1", round, after.Builds-before.Builds)
		}
		var g *generation
		for _, s := range subs {
			got := <-s.ch
			if g == nil {
				g = got
			} else if got != g {
				t.Fatalf("subscribers were handed different generations")
			}
			if _, err := got.packet(s.kind, s.refID, s.channel); err != nil {
				t.Fatal(err)
			}
		}
		if enc := LiveStats().Encodes - after.Encodes; enc != 2 {
			t.Errorf("round %d: %d encodings for 100 subscribers of one RefID, want 2 (nodes and edges)", round, enc)
		}
	}
	// Nothing changed (and the new nodes' edges are all out): no build.
	for v.latest.unsettled {
		v.tick(time.Now())
		for _, s := range subs {
			<-s.ch
		}
	}
	before := LiveStats()
	v.tick(time.Now())
	if LiveStats().Builds != before.Builds {
		t.Error("a build without any change")
	}
	// Not even after a while, until mainstat ("1s ago") is due a refresh.
	v.latest.builtAt = time.Now().Add(-refreshEvery)
	v.tick(time.Now())
	if LiveStats().Builds != before.Builds+1 {
		t.Errorf("no refresh after %s", refreshEvery)
	}
	for _, s := range subs {
		v.detach(s)
	}
	if v.stop != nil {
		t.Error("broadcast still running without subscribers")
	}
}

// The packet of a frame is exactly what the SDK's StreamSender.SendFrame
// would send (data.FrameToJSON with IncludeAll), with its RefID and
// channel.
func TestPacketIsFrameJSON(t *testing.T) {
	inst, _ := bareInstance(t, Settings{})
	applyRun(inst, "web-1", "prod", "web")
	v, _ := inst.view(topoFilter{})
	g, err := v.current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{kindNodes, kindEdges} {
		got, err := g.packet(kind, "B", "ds/bare/topology/x/"+kind)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := data.FrameToJSON(labelled(g.frame(kind), "B", "ds/bare/topology/x/"+kind), data.IncludeAll)
		if string(got) != string(want) {
			t.Errorf("%s packet\n %s\nwant\n %s", kind, got, want)
		}
		var f data.Frame
		if err := json.Unmarshal(got, &f); err != nil || f.RefID != "B" || f.Meta.Channel != "ds/bare/topology/x/"+kind {
			t.Errorf("%s packet reads back as refId %q channel %q: %v", kind, f.RefID, f.Meta.Channel, err)
		}
	}
}

// A notice that goes away goes away in the panel: the nodes frame's
// schema changes with its notices (see withNotices).
func TestLiveNoticesChangeTheSchema(t *testing.T) {
	inst, _ := bareInstance(t, Settings{})
	inst.caughtUp = make(chan struct{}) // still replaying
	applyRun(inst, "web-1", "prod", "web")
	v, _ := inst.view(topoFilter{})
	s, err := v.attach(context.Background(), kindNodes, "A", "c")
	if err != nil {
		t.Fatal(err)
	}
	g1 := <-s.ch
	if len(g1.nodes.Meta.Notices) != 1 || !strings.Contains(g1.nodes.Meta.Notices[0].Text, "still replaying") {
		t.Fatalf("notices while replaying: %+v", g1.nodes.Meta.Notices)
	}
	marker := g1.nodes.Fields[len(g1.nodes.Fields)-1].Name
	if !noticeField(marker) {
		t.Fatalf("no notice field; last field %q", marker)
	}
	close(inst.caughtUp)
	v.tick(time.Now())
	g2 := <-s.ch
	if len(g2.nodes.Meta.Notices) != 0 || noticeField(g2.nodes.Fields[len(g2.nodes.Fields)-1].Name) {
		t.Errorf("after the replay: notices %+v, last field %q", g2.nodes.Meta.Notices, g2.nodes.Fields[len(g2.nodes.Fields)-1].Name)
	}
	if sameSchema(g1.nodes, g2.nodes) || g2.sameNodes {
		t.Error("the schema did not change with the notices")
	}
	v.detach(s)
}

func TestLiveViewsCap(t *testing.T) {
	inst, _ := bareInstance(t, Settings{})
	var subs []*subscriber
	var views []*liveView
	for i := range maxLiveViews {
		v, err := inst.view(topoFilter{Environments: []string{fmt.Sprint("env-", i)}})
		if err != nil {
			t.Fatal(err)
		}
		s, err := v.attach(context.Background(), kindNodes, "A", "c")
		if err != nil {
			t.Fatal(err)
		}
		subs, views = append(subs, s), append(views, v)
	}
	if _, err := inst.view(topoFilter{Roles: []string{"x"}}); !errors.Is(err, errTooManyViews) {
		t.Fatalf("view %d: %v, want errTooManyViews", maxLiveViews+1, err)
	}
	// One nobody follows any more (and not subscribed to lately) gives way.
	views[3].detach(subs[3])
	views[3].lastRequest = time.Time{}
	if _, err := inst.view(topoFilter{Roles: []string{"x"}}); err != nil {
		t.Errorf("with an idle view: %v", err)
	}
	for i, s := range subs {
		if i != 3 {
			views[i].detach(s)
		}
	}
}

// A query's view, over the protocol's handlers: the channels it names
// subscribe, stream, and refuse what is not theirs.
func TestSubscribeAndPublishStream(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	e.publish(t, handlerJSON(run{node: "web-1", env: "prod", role: "web", id: "s1", end: now.Add(-time.Minute)}))
	inst := e.start(t, nil, nil)
	e.waitReports(t, 1)
	frames := mustFrames(t, inst, map[string]any{"queryType": "topology", "environment": "prod"}, now.Add(-time.Hour), now)
	for _, fr := range frames {
		path := strings.TrimPrefix(fr.Meta.Channel, "ds/runlens-test/")
		resp, err := inst.SubscribeStream(context.Background(), &backend.SubscribeStreamRequest{Path: path})
		if err != nil || resp.Status != backend.SubscribeStreamStatusOK || resp.InitialData == nil {
			t.Fatalf("SubscribeStream(%s): %+v %v", path, resp, err)
		}
		var got data.Frame
		if err := json.Unmarshal(resp.InitialData.Data(), &got); err != nil {
			t.Fatal(err)
		}
		if got.Name != fr.Name || got.RefID != "A" || got.Meta.Channel != fr.Meta.Channel {
			t.Errorf("initial frame %q refId %q channel %q for %s", got.Name, got.RefID, got.Meta.Channel, path)
		}
		if got.Name == kindNodes && (got.Rows() != 1 || fmt.Sprint(got.Fields[0].At(0)) != "web-1") {
			t.Errorf("initial nodes frame: %d rows", got.Rows())
		}
	}
	unknown := "topology/h1." + hashOf([]byte("never registered")) + "/nodes"
	for _, path := range []string{"", "nope", "topology/v1.e30/both", unknown} {
		resp, err := inst.SubscribeStream(context.Background(), &backend.SubscribeStreamRequest{Path: path})
		if err != nil || resp.Status != backend.SubscribeStreamStatusNotFound {
			t.Errorf("SubscribeStream(%q): %+v %v, want NotFound", path, resp, err)
		}
	}
	if !strings.Contains(e.logs.String(), "has not run") {
		t.Errorf("an unknown hashed view is not logged with its reason:\n%s", e.logs)
	}
	err := inst.RunStream(context.Background(), &backend.RunStreamRequest{Path: unknown}, backend.NewStreamSender(&recorder{}))
	if !errors.Is(err, errUnknownView) {
		t.Errorf("RunStream on an unknown view: %v", err)
	}
	pub, err := inst.PublishStream(context.Background(), &backend.PublishStreamRequest{Path: unknown, Data: []byte(`{}`)})
	if err != nil || pub.Status != backend.PublishStreamStatusPermissionDenied {
		t.Errorf("PublishStream: %+v %v", pub, err)
	}
}

// RunStream on both channels of a view, against the real broker: each
// sends the view's frame of its kind when the fleet changes. Conditions
// only, no timing (the race of issue #9 was an edges frame asserted right
// after a nodes frame).
func TestRunStream(t *testing.T) {
	e := newEnv(t)
	inst := e.start(t, map[string]any{"liveInterval": "200ms"}, nil)
	now := time.Now()
	frames := mustFrames(t, inst, map[string]any{"queryType": "topology", "environment": "prod"}, now.Add(-time.Hour), now)
	recs := map[string]*recorder{kindNodes: {}, kindEdges: {}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	for _, fr := range frames {
		path := strings.TrimPrefix(fr.Meta.Channel, "ds/runlens-test/")
		rec := recs[fr.Name]
		go func() {
			done <- inst.RunStream(ctx, &backend.RunStreamRequest{Path: path}, backend.NewStreamSender(rec))
		}()
	}
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("RunStream: %v", err)
			}
		}
	}()
	e.publish(t, handlerJSON(run{node: "db-1", env: "prod", role: "db", id: "r1", end: time.Now()}))
	for i := range 3 {
		e.publish(t, handlerJSON(run{node: fmt.Sprintf("web-%d", i), env: "prod", role: "web", id: fmt.Sprint("b", i), end: time.Now()}))
	}
	last := func(kind string) *data.Frame {
		ps := recs[kind].all()
		if len(ps) == 0 {
			return nil
		}
		return ps[len(ps)-1].frame
	}
	rabbittest.WaitFor(t, 10*time.Second, "a nodes frame with the 4 nodes and an edges frame with web → db", func() bool {
		n, ed := last(kindNodes), last(kindEdges)
		return n != nil && n.Rows() == 4 && ed != nil && ed.Rows() == 3
	})
	for _, kind := range []string{kindNodes, kindEdges} {
		for _, p := range recs[kind].all() {
			if p.frame.Name != kind || p.frame.RefID != "A" {
				t.Errorf("%s stream sent frame %q refId %q", kind, p.frame.Name, p.frame.RefID)
			}
		}
	}
}
