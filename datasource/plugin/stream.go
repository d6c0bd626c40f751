package plugin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/live"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/topology"
)

// topoFilter is what a topology view depends on; its JSON, base64url
// without padding, is the <enc> part of the live channel path
// topology/<enc>/nodes (or /edges).
type topoFilter struct {
	Environment string `json:"environment,omitempty"`
	Role        string `json:"role,omitempty"`
	Node        string `json:"node,omitempty"`
	GroupBy     string `json:"groupBy,omitempty"`
	Layout      bool   `json:"layout,omitempty"`
}

func (f topoFilter) normalize() (topoFilter, error) {
	switch f.GroupBy {
	case "", string(topology.ByNode):
		f.GroupBy = string(topology.ByNode)
	case string(topology.ByRole):
	default:
		return f, fmt.Errorf("groupBy %q: want node or role", f.GroupBy)
	}
	if _, err := compileNode(f.Node); err != nil {
		return f, err
	}
	return f, nil
}

// Frame kinds at the end of a channel path.
const (
	pathNodes = "nodes"
	pathEdges = "edges"
)

// streamPath is topology/<enc>/<kind>.
func (f topoFilter) streamPath(kind string) string {
	b, _ := json.Marshal(f)
	return "topology/" + base64.RawURLEncoding.EncodeToString(b) + "/" + kind
}

// parseStreamPath decodes and validates a channel path.
func parseStreamPath(path string) (topoFilter, string, error) {
	parts := strings.Split(path, "/")
	if len(parts) != 3 || parts[0] != "topology" || (parts[2] != pathNodes && parts[2] != pathEdges) {
		return topoFilter{}, "", fmt.Errorf("unknown channel path %q (want topology/<filters>/nodes or /edges)", path)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return topoFilter{}, "", fmt.Errorf("channel path %q: filters are not base64url: %v", path, err)
	}
	var f topoFilter
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return topoFilter{}, "", fmt.Errorf("channel path %q: filters are not a filter object: %v", path, err)
	}
	if f, err = f.normalize(); err != nil {
		return topoFilter{}, "", fmt.Errorf("channel path %q: %v", path, err)
	}
	return f, parts[2], nil
}

// channel is the full channel id of a view, or "" when it does not fit
// Grafana Live's limits (160 characters, restricted alphabet).
func (inst *Instance) channel(f topoFilter, kind string) string {
	ch := live.Channel{Scope: live.ScopeDatasource, Namespace: inst.settings.UID, Path: f.streamPath(kind)}
	id := ch.String()
	if _, err := live.ParseChannel(id); err != nil {
		return ""
	}
	return id
}

// topologyQuery answers a topology query: the fleet now (live, with a
// channel) when the range ends at now, else the fleet as it was at to.
func (inst *Instance) topologyQuery(ctx context.Context, f topoFilter, to time.Time) (data.Frames, error) {
	now := time.Now()
	liveView := to.IsZero() || !to.Before(now.Add(-pastSlack))
	at := now
	if !liveView {
		at = to
	}
	nodes, edges, notices := inst.topologyFrames(ctx, f, at, liveView)
	if liveView {
		nc, ec := inst.channel(f, pathNodes), inst.channel(f, pathEdges)
		if nc == "" || ec == "" {
			notices = append(notices, data.Notice{Severity: data.NoticeSeverityInfo,
				Text: "the filters are too long for a Grafana Live channel: this view does not update by itself"})
		} else {
			nodes.Meta.Channel, edges.Meta.Channel = nc, ec
		}
	}
	nodes.Meta.Notices = append(nodes.Meta.Notices, notices...)
	return data.Frames{nodes, edges}, nil
}

// topologyFrames builds both Node Graph frames for f, as of at (the live
// fleet, with the Alertmanager overlay, when liveView).
func (inst *Instance) topologyFrames(ctx context.Context, f topoFilter, at time.Time, liveView bool) (nodes, edges *data.Frame, notices []data.Notice) {
	re, _ := compileNode(f.Node) // validated by normalize
	var snapshot []fleet.Node
	if liveView {
		snapshot = inst.fleet.Snapshot()
	} else {
		snapshot = inst.history.StateAt(at, fleet.Options{KeepChanges: keepChanges}).Snapshot()
		if r := inst.settings.Replay; r > 0 {
			// As the live view expires them: nodes not heard from within
			// the replay window before at are gone.
			snapshot = slices.DeleteFunc(snapshot, func(n fleet.Node) bool { return n.Seen.Before(at.Add(-r)) })
		}
	}
	opts := topology.Options{
		Filter:  topology.Filter{Environment: f.Environment, Role: f.Role, Node: re},
		GroupBy: topology.GroupBy(f.GroupBy),
		Config:  inst.settings.Topology,
		Now:     at,
		Layout:  f.Layout,
	}
	if liveView && inst.alerts != nil {
		opts.Alerts = inst.alerts.forNodes(ctx, snapshot)
	}
	if opts.GroupBy == topology.ByNode {
		if n := countMatching(snapshot, opts.Filter); n > topology.MaxNodeGraphNodes {
			opts.GroupBy = topology.ByRole
			notices = append(notices, data.Notice{Severity: data.NoticeSeverityWarning,
				Text: fmt.Sprintf("%d nodes match, more than the %d a Node Graph can show: grouped by role instead; "+
					"filter by environment, role or node to see nodes", n, topology.MaxNodeGraphNodes)})
		}
	}
	nodes, edges = topology.Frames(snapshot, opts)
	for _, fr := range []*data.Frame{nodes, edges} {
		if fr.Meta == nil {
			fr.Meta = &data.FrameMeta{}
		}
		fr.Meta.PreferredVisualization = data.VisTypeNodeGraph
	}
	return nodes, edges, notices
}

func countMatching(nodes []fleet.Node, f topology.Filter) int {
	n := 0
	for i := range nodes {
		if f.Match(&nodes[i]) {
			n++
		}
	}
	return n
}

// SubscribeStream accepts valid topology paths and hands the subscriber the
// current frame of that path.
func (inst *Instance) SubscribeStream(ctx context.Context, req *backend.SubscribeStreamRequest) (*backend.SubscribeStreamResponse, error) {
	f, kind, err := parseStreamPath(req.Path)
	if err != nil {
		inst.log.Debug("subscription refused", "path", req.Path, "err", err)
		return &backend.SubscribeStreamResponse{Status: backend.SubscribeStreamStatusNotFound}, nil
	}
	frame := inst.liveFrame(ctx, f, kind)
	initial, err := backend.NewInitialFrame(frame, data.IncludeAll)
	if err != nil {
		return nil, err
	}
	return &backend.SubscribeStreamResponse{Status: backend.SubscribeStreamStatusOK, InitialData: initial}, nil
}

// PublishStream: the channels are read-only.
func (inst *Instance) PublishStream(context.Context, *backend.PublishStreamRequest) (*backend.PublishStreamResponse, error) {
	return &backend.PublishStreamResponse{Status: backend.PublishStreamStatusPermissionDenied}, nil
}

// liveFrame is the current frame (nodes or edges) of a live view.
func (inst *Instance) liveFrame(ctx context.Context, f topoFilter, kind string) *data.Frame {
	nodes, edges, notices := inst.topologyFrames(ctx, f, time.Now(), true)
	nodes.Meta.Notices = append(nodes.Meta.Notices, notices...)
	nodes.Meta.Channel, edges.Meta.Channel = inst.channel(f, pathNodes), inst.channel(f, pathEdges)
	if kind == pathEdges {
		return edges
	}
	return nodes
}

// RunStream sends the path's frame whenever the fleet (or the alert overlay)
// changed, checking every liveInterval: at most one frame per interval,
// however many reports arrived in it.
func (inst *Instance) RunStream(ctx context.Context, req *backend.RunStreamRequest, sender *backend.StreamSender) error {
	f, kind, err := parseStreamPath(req.Path)
	if err != nil {
		return err
	}
	inst.log.Debug("stream started", "path", req.Path)
	defer inst.log.Debug("stream stopped", "path", req.Path)
	lastGen := inst.fleet.Generation()
	lastAlerts := inst.alertsVersion()
	t := time.NewTicker(inst.settings.LiveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if inst.alerts != nil {
			inst.alerts.refresh(ctx)
		}
		gen, av := inst.fleet.Generation(), inst.alertsVersion()
		if gen == lastGen && av == lastAlerts {
			continue
		}
		frame := inst.liveFrame(ctx, f, kind)
		if err := sender.SendFrame(frame, data.IncludeAll); err != nil {
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("send frame on %s: %w", req.Path, err)
		}
		lastGen, lastAlerts = gen, av
	}
}

func (inst *Instance) alertsVersion() uint64 {
	if inst.alerts == nil {
		return 0
	}
	return inst.alerts.version()
}
