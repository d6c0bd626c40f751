package plugin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/live"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/topology"
)

// maxStaticEdges bounds the edges of a topology answered without Live (a
// past time range), where frames go over HTTP rather than the WebSocket.
const maxStaticEdges = 500_000

// topologyQuery answers a topology query: the live view (its latest
// generation, with its two channels) when the range ends at now, else the
// fleet as it was at to.
func (inst *Instance) topologyQuery(ctx context.Context, refID string, f topoFilter, to time.Time) (data.Frames, error) {
	now := time.Now()
	if !to.IsZero() && to.Before(now.Add(-pastSlack)) {
		return inst.staticTopology(ctx, f, inst.history.StateAt(to, fleet.Options{KeepChanges: keepChanges}).Snapshot(), to, true)
	}
	cv := channelView{RefID: refID, Filter: f}
	nodesPath, edgesPath, hashed := channelPaths(inst.settings.UID, cv)
	nodesCh, edgesCh := channelID(inst.settings.UID, nodesPath), channelID(inst.settings.UID, edgesPath)
	var why string
	if _, err := live.ParseChannel(edgesCh); err != nil {
		why = fmt.Sprintf("the datasource UID %q is too long for a Grafana Live channel", inst.settings.UID)
	}
	var v *liveView
	if why == "" {
		var err error
		if v, err = inst.view(f); errors.Is(err, errTooManyViews) {
			why = err.Error()
		} else if err != nil {
			return nil, err
		}
	}
	if why != "" {
		_, nodes := inst.snapshot()
		frames, err := inst.staticTopology(ctx, f, nodes, now, false)
		if err == nil {
			frames[0].Meta.Notices = append(frames[0].Meta.Notices, data.Notice{Severity: data.NoticeSeverityInfo,
				Text: why + ": this view does not update by itself"})
		}
		return frames, err
	}
	g, err := v.current(ctx)
	if err != nil {
		return nil, err
	}
	if hashed {
		inst.channels.register(cv)
	}
	return data.Frames{labelled(g.nodes, refID, nodesCh), labelled(g.edges, refID, edgesCh)}, nil
}

// staticTopology builds the frames of a view once, from nodes as of at:
// all the node details, a fresh layout. past drops the nodes not heard
// from within the replay window before at, as the live view expires them.
func (inst *Instance) staticTopology(ctx context.Context, f topoFilter, nodes []fleet.Node, at time.Time, past bool) (data.Frames, error) {
	if r := inst.settings.Replay; past && r > 0 {
		nodes = slices.DeleteFunc(nodes, func(n fleet.Node) bool { return n.Seen.Before(at.Add(-r)) })
	}
	m, err := newNodeMatcher(f.Node)
	if err != nil {
		return nil, err
	}
	m.begin(0)
	var nodeFilter func(string) bool
	if m.re != nil {
		nodeFilter = m.match
	}
	sel, err := topology.Select(ctx, nodes, topology.Filter{Environments: f.Environments, Roles: f.Roles, Node: nodeFilter})
	if err == nil {
		err = m.Err()
	}
	if err != nil {
		return nil, err
	}
	var notices []data.Notice
	opts := topology.Options{GroupBy: f.groupBy(), Config: inst.settings.Topology, Now: at, MaxEdges: maxStaticEdges}
	if opts.GroupBy == topology.ByNode && sel.Len() > inst.settings.GroupByRoleAbove {
		opts.GroupBy = topology.ByRole
		notices = append(notices, data.Notice{Severity: data.NoticeSeverityWarning,
			Text: groupedNotice(inst.settings.GroupByRoleAbove)})
	}
	if f.pinned() {
		opts.Layout = topology.NewLayout()
	}
	res, err := topology.Build(ctx, sel, opts)
	if errors.Is(err, topology.ErrTooManyEdges) {
		opts.GroupBy = topology.ByRole
		notices = append(notices, data.Notice{Severity: data.NoticeSeverityWarning,
			Text: fmt.Sprintf("%d nodes match with more than %d edges between them: grouped by role instead", sel.Len(), maxStaticEdges)})
		res, err = topology.Build(ctx, sel, opts)
	}
	if err != nil {
		return nil, err
	}
	res.Nodes.Meta.Notices = notices
	return data.Frames{res.Nodes, res.Edges}, nil
}

// SubscribeStream accepts the channels of topology views and hands the
// subscriber the view's current frame: the latest generation when the
// view is followed, so it fits what its other channel sends.
func (inst *Instance) SubscribeStream(ctx context.Context, req *backend.SubscribeStreamRequest) (*backend.SubscribeStreamResponse, error) {
	notFound := &backend.SubscribeStreamResponse{Status: backend.SubscribeStreamStatusNotFound}
	if inst.settingsErr != nil {
		return notFound, nil
	}
	cv, kind, err := parseChannelPath(req.Path, inst.channels)
	if err != nil {
		inst.logRefused(req.Path, err)
		return notFound, nil
	}
	v, err := inst.view(cv.Filter)
	if err != nil {
		inst.log.Warn("live topology subscription refused", "path", req.Path, "err", err)
		return notFound, nil
	}
	g, err := v.current(ctx)
	if err != nil {
		inst.log.Warn("live topology subscription refused", "path", req.Path, "err", err)
		return notFound, nil
	}
	b, err := g.packet(kind, cv.RefID, channelID(inst.settings.UID, req.Path))
	if err != nil {
		return nil, err
	}
	initial, err := backend.NewInitialData(b)
	if err != nil {
		return nil, err
	}
	return &backend.SubscribeStreamResponse{Status: backend.SubscribeStreamStatusOK, InitialData: initial}, nil
}

// logRefused logs why a channel path is refused: at warning level when a
// hashed path names a view this process does not know (it is a real
// channel, the user sees no updates), at debug level otherwise.
func (inst *Instance) logRefused(path string, err error) {
	if errors.Is(err, errUnknownView) {
		inst.log.Warn("live topology subscription refused", "path", path, "err", err)
		return
	}
	inst.log.Debug("live topology subscription refused", "path", path, "err", err)
}

// PublishStream: the channels are read-only.
func (inst *Instance) PublishStream(context.Context, *backend.PublishStreamRequest) (*backend.PublishStreamResponse, error) {
	return &backend.PublishStreamResponse{Status: backend.PublishStreamStatusPermissionDenied}, nil
}

// RunStream follows the view of the path: it sends the view's latest
// frame of its kind, then every generation's (skipping those equal to the
// one before), until Grafana cancels ctx.
func (inst *Instance) RunStream(ctx context.Context, req *backend.RunStreamRequest, sender *backend.StreamSender) error {
	if inst.settingsErr != nil {
		return inst.settingsErr
	}
	cv, kind, err := parseChannelPath(req.Path, inst.channels)
	if err != nil {
		inst.logRefused(req.Path, err)
		return err
	}
	v, err := inst.view(cv.Filter)
	if err != nil {
		return fmt.Errorf("channel %s: %w", req.Path, err)
	}
	s, err := v.attach(ctx, kind, cv.RefID, channelID(inst.settings.UID, req.Path))
	if err != nil {
		return fmt.Errorf("channel %s: %w", req.Path, err)
	}
	defer v.detach(s)
	inst.log.Debug("stream started", "path", req.Path)
	defer inst.log.Debug("stream stopped", "path", req.Path)
	var last *generation
	for {
		var g *generation
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case g, ok = <-s.ch:
		}
		if !ok {
			if s.behind {
				return fmt.Errorf("channel %s: the stream fell %d frames behind", req.Path, liveBacklog)
			}
			return nil
		}
		if last != nil && (g.seq == last.seq || g.seq == last.seq+1 && g.same(kind)) {
			last = g
			continue
		}
		b, err := g.packet(kind, s.refID, s.channel)
		if err != nil {
			return err
		}
		if err := sender.SendBytes(b); err != nil {
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("send frame on %s: %w", req.Path, err)
		}
		liveStats.sends.Add(1)
		last = g
	}
}

func (inst *Instance) alertsVersion() uint64 {
	if inst.alerts == nil {
		return 0
	}
	return inst.alerts.version()
}
