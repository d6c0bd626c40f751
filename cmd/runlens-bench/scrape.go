package main

import (
	"compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/runlens/runlens/exporter/collector"
	"github.com/runlens/runlens/internal/benchutil"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/simulator"
)

// ---------------------------------------------------------------- 4. scrape

// scaleCarry is what one fleet size tells the next.
type scaleCarry struct {
	decodeNsPerNode   float64 // simulate + decode + apply, per node
	baselineMsPerNode float64 // static-registry scrape, per node
}

// scrape measures /metrics with n nodes tracked, against a static registry
// with the same series, and the heap the fleet state takes per node.
func scrape(w io.Writer, cfg config, n int, carry *scaleCarry) error {
	// The decoder copies every string out of the message (and directFleet
	// clones every string it gives the state), so what the state keeps
	// after the runs are garbage is the state's own.
	state := fleet.New(fleet.Options{DedupWindow: 1}) // the window is a fixed cost, not per node
	var heapBefore, heapAfter uint64
	direct := cfg.directMinNodes > 0 && n >= cfg.directMinNodes
	var took time.Duration
	if direct {
		templates := runTemplates(1000)
		heapBefore = heapInUse()
		start := time.Now()
		directFleet(state, templates, n)
		took = time.Since(start)
		heapAfter = heapInUse()
		runtime.KeepAlive(templates) // not the state's
	} else {
		// One node at a time, as simulator.Round makes them (end times
		// spread over an hour) but without holding every message at once:
		// at 1M nodes that would be gigabytes.
		sim := simulator.New(simulator.Config{Nodes: n, Seed: 7, Formats: []report.Format{report.FormatChefHandler}})
		heapBefore = heapInUse()
		start := time.Now()
		from := start.Add(-time.Hour)
		for i := range n {
			r := sim.NextRun(i, from.Add(time.Duration(i)*time.Hour/time.Duration(n)), simulator.Random)
			d, err := report.Decode(r.Messages[0])
			if err != nil {
				return err
			}
			state.Apply(d, start)
		}
		took = time.Since(start)
		carry.decodeNsPerNode = float64(took.Nanoseconds()) / float64(n)
		heapAfter = heapInUse()
		runtime.KeepAlive(sim) // its nodes are not the state's
	}
	perNode := (float64(heapAfter) - float64(heapBefore)) / float64(n)

	reps := 5
	if n >= 1_000_000 {
		reps = 3
	}
	ours := timeScrape(collector.Handler(prometheus.NewRegistry(), collector.NewFleetWriter(state), slog.Default(), collector.HandlerOpts{MaxInFlight: 1}), reps)

	var baseline scrapeResult
	if n <= cfg.baselineMaxNodes {
		baseline = staticBaseline(state, reps)
		carry.baselineMsPerNode = baseline.ms / float64(n)
	}
	runtime.KeepAlive(state)

	fmt.Fprintf(w, "%7d nodes  scrape (gzip, median of %d) %7.1f ms  ", n, reps, ours.ms)
	if n <= cfg.baselineMaxNodes {
		fmt.Fprintf(w, "static-registry baseline %7.1f ms  ratio %.2f", baseline.ms, ours.ms/baseline.ms)
	} else {
		fmt.Fprintf(w, "static-registry baseline skipped (> -baseline-max-nodes %d)", cfg.baselineMaxNodes)
	}
	fmt.Fprintf(w, "  |  %6.1f MiB body  |  heap %5.0f B/node (target < 2048)\n", float64(ours.bytes)/(1<<20), perNode)
	if direct {
		fmt.Fprintf(w, "         fleet built in %s from report.Run values made in Go (not decoded JSON; -direct-min-nodes %d): 1,000 decoded\n"+
			"         simulator reports as templates, every string cloned per node so the state owns its copies as after decoding",
			took.Round(time.Millisecond), cfg.directMinNodes)
		if carry.decodeNsPerNode > 0 {
			fmt.Fprintf(w, ";\n         simulating and decoding would take about %s at the decoded sizes' rate (%.1f µs/node)",
				(time.Duration(carry.decodeNsPerNode * float64(n))).Round(time.Second), carry.decodeNsPerNode/1000)
		}
		fmt.Fprintf(w, "\n")
	} else {
		fmt.Fprintf(w, "         fleet built in %s by simulating and decoding Chef handler reports one node at a time (%.1f µs/node)\n",
			took.Round(time.Millisecond), float64(took.Microseconds())/float64(n))
	}
	if n > cfg.baselineMaxNodes {
		fmt.Fprintf(w, "         baseline skipped: client_golang builds every series in its registry and sorts it on each scrape")
		if carry.baselineMsPerNode > 0 {
			fmt.Fprintf(w, ";\n         at the rate measured at the smaller sizes one scrape would take about %s, and %d are timed",
				(time.Duration(carry.baselineMsPerNode * float64(n) * 1e6)).Round(100*time.Millisecond), reps)
		}
		fmt.Fprintf(w, "\n")
	}
	return nil
}

// staticBaseline serves the same series from ordinary GaugeVecs.
func staticBaseline(state *fleet.State, reps int) scrapeResult {
	base := prometheus.NewRegistry()
	vecs := map[string]*prometheus.GaugeVec{}
	for _, name := range []string{"runs_total", "run_failures_total", "updated_resources_total", "last_run_timestamp_seconds",
		"last_run_success", "last_run_duration_seconds", "last_run_updated_resources"} {
		vecs[name] = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "runlens_" + name, Help: name}, []string{"node", "environment"})
		base.MustRegister(vecs[name])
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "runlens_node_info", Help: "info"}, []string{"node", "environment", "fqdn", "ip_address", "source", "roles"})
	base.MustRegister(info)
	state.Each(func(nd *fleet.Node) {
		for _, v := range vecs {
			v.WithLabelValues(nd.Name, nd.Environment).Set(1)
		}
		info.WithLabelValues(nd.Name, nd.Environment, nd.FQDN, nd.IPAddress, string(nd.Source), nd.RolesLabel()).Set(1)
	})
	return timeScrape(promhttp.HandlerFor(base, promhttp.HandlerOpts{}), reps)
}

// runTemplates decodes k simulated Chef handler reports.
func runTemplates(k int) []*report.Run {
	sim := simulator.New(simulator.Config{Nodes: k, Seed: 7, Formats: []report.Format{report.FormatChefHandler}})
	var out []*report.Run
	for _, r := range sim.Round(time.Now().Add(-time.Hour), time.Hour, simulator.Random) {
		d, err := report.Decode(r.Messages[0])
		if err != nil {
			panic(err)
		}
		out = append(out, d)
	}
	return out
}

// directFleet applies one run to state for each of n nodes, made from the
// templates with a unique node name, FQDN, IP address and run id, and every
// string the state may keep cloned, so the state holds its own copies as it
// does after decoding.
func directFleet(state *fleet.State, templates []*report.Run, n int) {
	now := time.Now()
	for i := range n {
		t := templates[i%len(templates)]
		r := *t
		prefix := t.Node[:max(0, strings.LastIndexByte(t.Node, '-'))]
		r.Node = fmt.Sprintf("%s-%07d", prefix, i)
		r.FQDN = r.Node + ".example.internal"
		r.IPAddress = fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255)
		r.ID = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		r.Environment = strings.Clone(t.Environment)
		r.PolicyName, r.PolicyGroup = strings.Clone(t.PolicyName), strings.Clone(t.PolicyGroup)
		r.Platform, r.ClientVersion = strings.Clone(t.Platform), strings.Clone(t.ClientVersion)
		r.Roles, r.RunList, r.DependsOn = cloneStrings(t.Roles), cloneStrings(t.RunList), cloneStrings(t.DependsOn)
		if t.Error != nil {
			r.Error = &report.RunError{Class: strings.Clone(t.Error.Class), Message: strings.Clone(t.Error.Message)}
		}
		state.Apply(&r, now)
	}
}

func cloneStrings(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.Clone(s)
	}
	return out
}

type scrapeResult struct {
	ms    float64
	bytes int64
}

func timeScrape(h http.Handler, reps int) scrapeResult {
	srv := httptest.NewServer(h)
	defer srv.Close()
	var times []float64
	var size int64
	for range reps {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		// What Prometheus sends.
		req.Header.Set("Accept", "text/plain;version=0.0.4")
		req.Header.Set("Accept-Encoding", "gzip")
		t := time.Now()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			panic(err)
		}
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			panic(err)
		}
		size, _ = io.Copy(io.Discard, zr)
		resp.Body.Close()
		times = append(times, float64(time.Since(t).Microseconds())/1000)
	}
	return scrapeResult{ms: benchutil.Median(times), bytes: size}
}

func heapInUse() uint64 {
	var m runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
