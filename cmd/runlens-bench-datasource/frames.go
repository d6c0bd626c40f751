package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/datasource/plugin"
	"github.com/runlens/runlens/internal/benchutil"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/simulator"
	"github.com/runlens/runlens/pkg/topology"
)

// frameFigures is one view's build of one fleet.
type frameFigures struct {
	buildMs, jsonMs        float64
	nodes, edges           int
	nodesBytes, edgesBytes int
}

// liveFrames builds the frames as a live view does (topology.Select, then
// Build with lean details and a Layout kept from one build to the next)
// and encodes them as a stream packet's JSON.
func liveFrames(snap []fleet.Node, by topology.GroupBy, layout *topology.Layout) (*topology.Result, error) {
	ctx := context.Background()
	sel, err := topology.Select(ctx, snap, topology.Filter{})
	if err != nil {
		return nil, err
	}
	return topology.Build(ctx, sel, topology.Options{GroupBy: by, Config: topology.Config{DependsOn: simDependsOn},
		Now: time.Now(), Lean: true, Layout: layout})
}

func measureFrames(snap []fleet.Node, by topology.GroupBy) (frameFigures, error) {
	layout := topology.NewLayout()
	r, err := liveFrames(snap, by, layout)
	if err != nil {
		return frameFigures{}, err
	}
	f := frameFigures{nodes: r.Nodes.Rows(), edges: r.Edges.Rows()}
	f.buildMs = medianMs(func() { _, _ = liveFrames(snap, by, layout) })
	var nb, eb []byte
	f.jsonMs = medianMs(func() {
		nb, _ = data.FrameToJSON(r.Nodes, data.IncludeAll)
		eb, _ = data.FrameToJSON(r.Edges, data.IncludeAll)
	})
	f.nodesBytes, f.edgesBytes = len(nb), len(eb)
	return f, nil
}

func fits(f frameFigures) string {
	if f.nodesBytes <= plugin.MaxLiveFrameBytes && f.edgesBytes <= plugin.MaxLiveFrameBytes {
		return "streams"
	}
	return "over the bound: the live view shows roles"
}

func benchFrames(w io.Writer, sizes []int) error {
	fmt.Fprintf(w, "== 1. live topology frames (median of %d builds after a warm-up; simulated fleet: environments of %d nodes × 5 roles, depends_on by role)\n",
		frameRuns, nodesPerEnvironment)
	fmt.Fprintf(w, "   build = topology.Select + Build as a live view makes them (lean details, pinned by a Layout kept across builds);\n"+
		"   JSON = data.FrameToJSON of both frames, the stream packets' bytes; live bound %d bytes a frame (plugin.MaxLiveFrameBytes)\n"+
		"   baseline: copying the fleet's Snapshot(), the data the frames are built from\n", plugin.MaxLiveFrameBytes)
	var frames10k float64 = -1
	for _, n := range sizes {
		st := buildFleet(n)
		snap := st.Snapshot()
		copyMs := medianMs(func() { _ = st.Snapshot() })
		byNode, err := measureFrames(snap, topology.ByNode)
		if err != nil {
			return err
		}
		byRole, err := measureFrames(snap, topology.ByRole)
		if err != nil {
			return err
		}
		for k, f := range []frameFigures{byNode, byRole} {
			label := fmt.Sprintf("%7d nodes  by node", n)
			if k == 1 {
				label = "               by role"
			}
			fmt.Fprintf(w, "%s %8.2f ms build + %7.2f ms JSON  %6d nodes %7d edges  %9d + %9d bytes (nodes + edges)  %s\n",
				label, f.buildMs, f.jsonMs, f.nodes, f.edges, f.nodesBytes, f.edgesBytes, fits(f))
		}
		fmt.Fprintf(w, "               snapshot copy %7.2f ms  ratio (build) by node %.1f, by role %.1f\n",
			copyMs, byNode.buildMs/copyMs, byRole.buildMs/copyMs)
		if n == 10_000 {
			frames10k = max(byNode.buildMs, byRole.buildMs)
		}
		runtime.KeepAlive(snap)
	}
	if frames10k >= 0 {
		fmt.Fprintf(w, "target: 10,000-node frames < 20 ms: slower of the two %.2f ms  %s\n", frames10k, verdict(frames10k < 20))
	} else {
		fmt.Fprintf(w, "target: 10,000-node frames < 20 ms: not measured (10000 not in --nodes-list)\n")
	}
	fmt.Fprintln(w)
	return nil
}

// buildFleet is a fleet.State (as the plugin keeps it) fed with one decoded
// simulated run per node, every format mixed.
func buildFleet(n int) *fleet.State {
	sim := simulator.New(simulator.Config{Nodes: n, Seed: 42, Environments: environments(n),
		NodeAttributeBytes: -1}) // the padding is dropped by the decoder anyway
	st := fleet.New(fleet.Options{KeepChanges: 20}) // as the plugin's
	now := time.Now()
	for _, r := range sim.Round(now.Add(-time.Hour), time.Hour, simulator.Random) {
		for _, m := range r.Messages {
			d, err := report.Decode(m)
			if err != nil {
				panic(err) // the simulator's reports are valid
			}
			st.Apply(d, now)
		}
	}
	return st
}

func environments(nodes int) []string {
	out := make([]string, max(1, nodes/nodesPerEnvironment))
	for i := range out {
		out[i] = fmt.Sprintf("env-%04d", i)
	}
	return out
}

// medianMs runs f once to warm up, then frameRuns times, each after a GC so
// one run's garbage is not collected in the next one's time.
func medianMs(f func()) float64 {
	f()
	times := make([]float64, 0, frameRuns)
	for range frameRuns {
		runtime.GC()
		t := time.Now()
		f()
		times = append(times, float64(time.Since(t).Microseconds())/1000)
	}
	return benchutil.Median(times)
}
