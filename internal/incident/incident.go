// Package incident designs change-impact incidents for the impact scenario
// tests and benchmark: a fleet's configuration runs over some hours (Chef
// handler reports) and the APM metrics they cause, in the demo app's shape
// (cmd/runlens-demo-app: http_requests_total{service,environment,code}),
// written as OpenMetrics for `promtool tsdb create-blocks-from openmetrics`.
//
// Every incident, from its seed: services web, app, api and db (a role each,
// every node also has base and one in ten monitoring), each with its own
// error ratio, diurnal traffic and sampling noise; nodes running every 30
// minutes, changing nothing but for two nodes whose every run changes the
// same resource and 2 % of runs failing; a bad roll-out in waves to one role
// (the culprit) that raises its service's errors by the share of nodes it
// reached, some of its runs failing part way and retried, in some incidents
// stopped early and rolled back; a benign roll-out to another role at the
// same time, and others at other times; single-node changes, one just before
// an unrelated error spike; errors that spread to the services depending on
// the broken one in half the incidents.
package incident

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Config of an incident. Zero fields take the defaults.
type Config struct {
	Seed        uint64
	Environment string        // default "inc-<seed>"
	End         time.Time     // end of the timeline; required
	Duration    time.Duration // default 6h
	Scrape      time.Duration // metric sample interval, default 30s
	RPS         float64       // requests per second per service at the diurnal mean, default 20
	// NodesPerRole bounds the nodes of each role, drawn in [Min, Max];
	// default [12, 40].
	MinNodes, MaxNodes int
	RunInterval        time.Duration // default 30m
	// Churn is the share of the periodic runs that change something of
	// their own (a tuning file, one of 50): 0 for a quiet fleet, 1 for a
	// benchmark where every run is a change.
	Churn float64
}

// Services are the roles of the fleet, each the APM service of its name.
var Services = []string{"web", "app", "api", "db"}

// dependsOn: errors of a service spread to the services depending on it.
var dependsOn = map[string][]string{"web": {"app"}, "app": {"db"}, "api": {"db"}}

// Run is one configuration run.
type Run struct {
	Node, Environment string
	Roles             []string
	Start, End        time.Time
	Updated, Failed   []string // type[name]
	Error             string
}

// IsChange tells a run the changes and impact queries show.
func (r Run) IsChange() bool { return len(r.Updated) > 0 || len(r.Failed) > 0 }

// Culprit is the bad roll-out.
type Culprit struct {
	Role       string
	Resources  []string
	Start, End time.Time // its first start and last end, retries aside
	Nodes      []string
	Waves      int
	RiseBy     float64 // error ratio added once every node has it
	// RolledBack is when its roll-back began (zero: never rolled back).
	RolledBack time.Time
}

// Incident is one designed incident.
type Incident struct {
	Environment string
	Start, End  time.Time
	Runs        []Run // sorted by end
	Culprit     Culprit
	// Story says what happened, for the messages of a failing test.
	Story []string

	scrape           time.Duration
	samples          []time.Time
	requests, errors map[string][]float64 // cumulative, per service, per sample
}

type node struct {
	name, role string
	roles      []string
	phase      time.Duration
	chronic    bool
	badFrom    time.Time // zero: never bad
	badUntil   time.Time // zero: still bad
}

type spike struct {
	service    string
	from, to   time.Time
	errorRatio float64
}

// New designs an incident.
func New(cfg Config) *Incident {
	if cfg.Environment == "" {
		cfg.Environment = fmt.Sprintf("inc-%d", cfg.Seed)
	}
	cfg.Duration = cmp.Or(cfg.Duration, 6*time.Hour)
	cfg.Scrape = cmp.Or(cfg.Scrape, 30*time.Second)
	cfg.RPS = cmp.Or(cfg.RPS, 20)
	cfg.MinNodes, cfg.MaxNodes = cmp.Or(cfg.MinNodes, 12), cmp.Or(cfg.MaxNodes, 40)
	cfg.RunInterval = cmp.Or(cfg.RunInterval, 30*time.Minute)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x1c1de27))
	inc := &Incident{Environment: cfg.Environment, Start: cfg.End.Add(-cfg.Duration), End: cfg.End, scrape: cfg.Scrape}
	g := &gen{cfg: cfg, rng: rng, inc: inc, byRole: map[string][]*node{}}
	g.fleet()
	g.periodic()
	g.culprit()
	g.benign()
	g.singles()
	g.metrics()
	slices.SortStableFunc(inc.Runs, func(a, b Run) int { return cmp.Or(a.End.Compare(b.End), cmp.Compare(a.Node, b.Node)) })
	return inc
}

type gen struct {
	cfg    Config
	rng    *rand.Rand
	inc    *Incident
	nodes  []*node
	byRole map[string][]*node
	spikes []spike
	// per service: baseline error ratio, bad-node error ratio
	base, bad map[string]float64
	spread    float64 // share of a dependency's rise a service shows
}

func (g *gen) story(format string, a ...any) {
	for i, v := range a {
		if d, ok := v.(time.Duration); ok {
			a[i] = d.Round(time.Second)
		}
	}
	g.inc.Story = append(g.inc.Story, fmt.Sprintf(format, a...))
}

func (g *gen) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(g.rng.Int64N(int64(hi-lo)+1))
}

func (g *gen) at(offset time.Duration) time.Time { return g.inc.Start.Add(offset) }

func (g *gen) fleet() {
	g.base, g.bad = map[string]float64{}, map[string]float64{}
	for _, svc := range Services {
		n := g.cfg.MinNodes + g.rng.IntN(g.cfg.MaxNodes-g.cfg.MinNodes+1)
		for i := range n {
			nd := &node{name: fmt.Sprintf("%s-%s-%02d", svc, g.inc.Environment, i), role: svc, roles: []string{"base", svc},
				phase: time.Duration(g.rng.Int64N(int64(g.cfg.RunInterval)))}
			if g.rng.IntN(10) == 0 {
				nd.roles = append(nd.roles, "monitoring")
			}
			g.nodes = append(g.nodes, nd)
			g.byRole[svc] = append(g.byRole[svc], nd)
		}
		g.base[svc] = 0.002 + 0.008*g.rng.Float64()
	}
	for range 2 {
		g.nodes[g.rng.IntN(len(g.nodes))].chronic = true
	}
	if g.rng.IntN(2) == 0 {
		g.spread = 0.3
		g.story("errors spread to dependent services (30 %%)")
	}
}

const chronicResource = "execute[apt-get update]"

// run adds a run of nd starting at start; chronic nodes change their
// resource on every run.
func (g *gen) run(nd *node, start time.Time, updated, failed []string, errMsg string) Run {
	if nd.chronic {
		updated = append(slices.Clone(updated), chronicResource)
	}
	// Reports carry whole seconds.
	start = start.Truncate(time.Second)
	r := Run{Node: nd.name, Environment: g.inc.Environment, Roles: nd.roles, Start: start,
		End: start.Add(g.between(30*time.Second, 100*time.Second)).Truncate(time.Second), Updated: updated, Failed: failed, Error: errMsg}
	g.inc.Runs = append(g.inc.Runs, r)
	return r
}

// periodic: every node runs every RunInterval (with up to 2 minutes of
// jitter); 2 % of the runs fail on a backup job.
func (g *gen) periodic() {
	for _, nd := range g.nodes {
		for t := g.inc.Start.Add(nd.phase); t.Before(g.inc.End.Add(-5 * time.Minute)); t = t.Add(g.cfg.RunInterval) {
			start := t.Add(g.between(0, 2*time.Minute))
			if g.cfg.Churn > 0 && g.rng.Float64() < g.cfg.Churn {
				g.run(nd, start, []string{fmt.Sprintf("file[/etc/%s/tuning-%d.conf]", nd.role, g.rng.IntN(50))}, nil, "")
				continue
			}
			if g.rng.IntN(50) == 0 {
				g.run(nd, start, nil, []string{"execute[backup]"}, "execute[backup] (base::backup line 12) had an error: Expected process to exit with [0], but received '1'")
			} else {
				g.run(nd, start, nil, nil, "")
			}
		}
	}
}

func resources(role string) []string {
	return []string{"template[/etc/" + role + "/app.conf]", "file[/etc/" + role + "/release]"}
}

// waves draws a roll-out's waves: the nodes (shuffled) split in 1 to 5
// waves, first waves smaller, 3 to 10 minutes apart.
func (g *gen) waves(nodes []*node) [][]*node {
	nodes = slices.Clone(nodes)
	g.rng.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	var fractions []float64
	switch k := 1 + g.rng.IntN(5); k {
	case 1:
		fractions = []float64{1}
	case 2:
		fractions = []float64{0.3, 0.7}
	case 3:
		fractions = []float64{0.1, 0.3, 0.6}
	case 4:
		fractions = []float64{0.1, 0.2, 0.3, 0.4}
	default:
		fractions = []float64{0.2, 0.2, 0.2, 0.2, 0.2}
	}
	var out [][]*node
	lo, cum := 0, 0.0
	for _, f := range fractions {
		cum += f
		hi := int(math.Round(cum * float64(len(nodes))))
		if hi > lo {
			out = append(out, nodes[lo:hi])
		}
		lo = hi
	}
	return out
}

// rollout runs the waves from start; each node's run starts within 20 s of
// its wave's. It returns the runs by wave and when the last wave began.
func (g *gen) rollout(ws [][]*node, start time.Time, res []string, onRun func(*node, Run)) time.Time {
	t := start
	for k, w := range ws {
		if k > 0 {
			t = t.Add(g.between(3*time.Minute, 10*time.Minute))
		}
		for _, nd := range w {
			r := g.run(nd, t.Add(g.between(0, 20*time.Second)), res, nil, "")
			if onRun != nil {
				onRun(nd, r)
			}
		}
	}
	return t
}

func (g *gen) culprit() {
	role := Services[g.rng.IntN(len(Services))]
	res := resources(role)
	start := g.at(g.between(2*time.Hour, g.cfg.Duration-2*time.Hour))
	ws := g.waves(g.byRole[role])
	rollback := g.rng.IntN(10) < 4
	rise := 0.02 + 0.2*g.rng.Float64()
	if len(ws) > 2 && g.rng.IntN(6) == 0 {
		// Stopped early and rolled back: because the errors showed, so
		// the waves that went out raised them by 3 % at least.
		ws = ws[:1+g.rng.IntN(len(ws)-1)]
		rollback = true
		reached := 0
		for _, w := range ws {
			reached += len(w)
		}
		rise = min(0.6, max(rise, 0.03*float64(len(g.byRole[role]))/float64(reached)))
	}
	g.bad[role] = g.base[role] + rise
	c := Culprit{Role: role, Resources: res, Start: start, Waves: len(ws), RiseBy: rise}
	var reached []*node
	g.rollout(ws, start, res, func(nd *node, r Run) {
		// 1 in 20 runs fails on the release marker after the template
		// (the node has the bad configuration) and is retried 10 to 25
		// minutes later.
		if g.rng.IntN(20) == 0 {
			g.inc.Runs = g.inc.Runs[:len(g.inc.Runs)-1]
			r = g.run(nd, r.Start, res[:1], res[1:], "file[/etc/"+role+"/release] had an error: Errno::ENOSPC: No space left on device")
			g.run(nd, r.End.Add(g.between(10*time.Minute, 25*time.Minute)), res[1:], nil, "")
		}
		nd.badFrom = r.End
		c.End = later(c.End, r.End)
		c.Nodes = append(c.Nodes, nd.name)
		reached = append(reached, nd)
	})
	slices.Sort(c.Nodes)
	g.inc.Culprit = c
	g.story("culprit: %s on %d of %d %s nodes in %d waves from +%s to +%s, errors +%.1f %% (base %.2f %%)",
		res[0], len(reached), len(g.byRole[role]), role, len(ws), start.Sub(g.inc.Start), c.End.Sub(g.inc.Start), 100*rise, 100*g.base[role])
	if rollback {
		back := c.End.Add(g.between(5*time.Minute, 25*time.Minute))
		bws := [][]*node{reached}
		if len(reached) > 6 && g.rng.IntN(2) == 0 {
			bws = [][]*node{reached[:len(reached)/2], reached[len(reached)/2:]}
		}
		g.rollout(bws, back, res, func(nd *node, r Run) { nd.badUntil = r.End })
		g.inc.Culprit.RolledBack = back
		g.story("rolled back from +%s in %d waves", back.Sub(g.inc.Start), len(bws))
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// benign: a roll-out to another role overlapping the culprit's, and two or
// three at other times, away from the culprit's role around its time.
func (g *gen) benign() {
	c := g.inc.Culprit
	others := slices.DeleteFunc(slices.Clone(Services), func(s string) bool { return s == c.Role })
	role := others[g.rng.IntN(len(others))]
	start := c.Start.Add(g.between(-15*time.Minute, 15*time.Minute))
	ws := g.waves(g.byRole[role])
	g.rollout(ws, start, resources(role)[:1], nil)
	g.story("concurrent benign roll-out: %s in %d waves from +%s", role, len(ws), start.Sub(g.inc.Start))
	for i := range 2 + g.rng.IntN(2) {
		role := Services[g.rng.IntN(len(Services))]
		var start time.Time
		for {
			start = g.at(g.between(20*time.Minute, g.cfg.Duration-time.Hour))
			if role != c.Role || start.Before(c.Start.Add(-40*time.Minute)) || start.After(c.End.Add(40*time.Minute)) {
				break
			}
		}
		res := []string{fmt.Sprintf("package[%s-agent-%d]", role, i)}
		ws := g.waves(g.byRole[role])
		g.rollout(ws, start, res, nil)
		g.story("benign roll-out: %s of %s in %d waves from +%s", res[0], role, len(ws), start.Sub(g.inc.Start))
	}
}

// singles: one-node changes at random times, one of them 2 to 5 minutes
// before an unrelated error spike on its service; another spike anywhere;
// in a third of the incidents a one-node change to the culprit's role 6 to
// 15 minutes before the culprit.
func (g *gen) singles() {
	c := g.inc.Culprit
	change := func(nd *node, start time.Time, i int) {
		g.run(nd, start, []string{fmt.Sprintf("file[/etc/%s/tuning-%d.conf]", nd.role, i)}, nil, "")
	}
	for i := range 6 + g.rng.IntN(7) {
		nd := g.nodes[g.rng.IntN(len(g.nodes))]
		change(nd, g.at(g.between(10*time.Minute, g.cfg.Duration-20*time.Minute)), i)
	}
	nd := g.nodes[g.rng.IntN(len(g.nodes))]
	at := g.at(g.between(30*time.Minute, g.cfg.Duration-30*time.Minute))
	change(nd, at, 100)
	from := at.Add(g.between(2*time.Minute, 5*time.Minute))
	g.spikes = append(g.spikes, spike{nd.role, from, from.Add(g.between(time.Minute, 4*time.Minute)), 0.05 + 0.25*g.rng.Float64()})
	g.story("one-node change on %s at +%s, then a spike on %s at +%s", nd.name, at.Sub(g.inc.Start), nd.role, from.Sub(g.inc.Start))
	svc := Services[g.rng.IntN(len(Services))]
	from = g.at(g.between(30*time.Minute, g.cfg.Duration-30*time.Minute))
	g.spikes = append(g.spikes, spike{svc, from, from.Add(g.between(time.Minute, 4*time.Minute)), 0.05 + 0.25*g.rng.Float64()})
	g.story("unrelated spike on %s at +%s", svc, from.Sub(g.inc.Start))
	if g.rng.IntN(3) == 0 {
		nodes := g.byRole[c.Role]
		at := c.Start.Add(-g.between(6*time.Minute, 15*time.Minute))
		change(nodes[g.rng.IntN(len(nodes))], at, 200)
		g.story("one-node change on %s %s before the culprit", c.Role, c.Start.Sub(at))
	}
}

// metrics samples every service's requests and errors.
func (g *gen) metrics() {
	inc := g.inc
	phase := g.rng.Float64() * 2 * math.Pi
	wander := map[string][2]float64{}
	for _, s := range Services {
		wander[s] = [2]float64{g.rng.Float64() * 2 * math.Pi, (3 + 5*g.rng.Float64()) * 3600}
	}
	inc.requests, inc.errors = map[string][]float64{}, map[string][]float64{}
	// A spare hour of samples before the first run, so the first changes
	// have a baseline.
	for t := inc.Start.Add(-time.Hour); !t.After(inc.End); t = t.Add(inc.scrape) {
		inc.samples = append(inc.samples, t)
	}
	ownRise := func(svc string, t time.Time) float64 {
		nodes := g.byRole[svc]
		bad := 0
		for _, nd := range nodes {
			if !nd.badFrom.IsZero() && !t.Before(nd.badFrom) && (nd.badUntil.IsZero() || t.Before(nd.badUntil)) {
				bad++
			}
		}
		if bad == 0 {
			return 0
		}
		return float64(bad) / float64(len(nodes)) * (g.bad[svc] - g.base[svc])
	}
	for _, svc := range Services {
		var req, errs float64
		reqs, errl := make([]float64, len(inc.samples)), make([]float64, len(inc.samples))
		w := wander[svc]
		for i, t := range inc.samples {
			// From the incident's start, not the epoch: an incident is the
			// same whenever it is made (its phase comes from the seed), so
			// the scenario tests do not depend on the time of day.
			sec := t.Sub(inc.Start).Seconds()
			diurnal := 1 + 0.4*math.Sin(2*math.Pi*sec/86400+phase)
			n := g.cfg.RPS * diurnal * inc.scrape.Seconds()
			n = math.Max(0, n+math.Sqrt(n)*g.rng.NormFloat64())
			ratio := g.base[svc]*(1+0.2*math.Sin(2*math.Pi*sec/w[1]+w[0])) + ownRise(svc, t)
			for _, dep := range dependsOn[svc] {
				ratio += g.spread * ownRise(dep, t)
			}
			for _, s := range g.spikes {
				if s.service == svc && !t.Before(s.from) && t.Before(s.to) {
					ratio += s.errorRatio
				}
			}
			ratio = math.Min(ratio, 1)
			e := n*ratio + math.Sqrt(n*ratio*(1-ratio))*g.rng.NormFloat64()
			e = math.Round(math.Min(math.Max(0, e), n))
			req += math.Round(n)
			errs += e
			reqs[i], errl[i] = req, math.Min(errs, req)
		}
		inc.requests[svc], inc.errors[svc] = reqs, errl
	}
}
