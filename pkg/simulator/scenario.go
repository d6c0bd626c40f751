package simulator

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

// A Scenario is a timeline of changes rolled out to the simulated fleet. The
// Fleet consults it on every run: a run whose node a change has reached
// applies it (its changed resources name the change) or, for a bad run
// change, fails on it. Everything follows from the seed: which nodes fall in
// which wave is a seeded shuffle of the role's nodes, and a node's outcome
// depends only on its run's end time.
//
// The zero Scenario is "steady": no change, runs as Config says.
type Scenario struct {
	Name  string
	Steps []Step
	// WaveInterval separates a step's waves: wave k (from 0) reaches its
	// nodes at Step.At + k*WaveInterval. Default DefaultWaveInterval.
	WaveInterval time.Duration
}

// DefaultWaveInterval is a Scenario's WaveInterval when it gives none.
const DefaultWaveInterval = time.Minute

// Step is one change rolled out to one role.
type Step struct {
	// At is when the first wave starts, from the scenario's start (see
	// Config.ScenarioStart).
	At time.Duration
	// Role whose nodes get the change; Environments, if set, limits it to
	// nodes in those environments.
	Role         string
	Environments []string
	// Change names the change (no "/" in it): "app-config-v3".
	Change string
	// Waves are the fractions of the targeted nodes each wave reaches, in
	// order; they add up to at most 1 (less leaves some nodes out). Empty
	// means one wave of every node. The wave boundaries round to whole
	// nodes: wave k reaches round(sum(Waves[:k+1])*n) - round(sum(Waves[:k])*n)
	// of the n targeted nodes.
	Waves []float64
	// Bad makes the change harmful, in the way BadKind says.
	Bad     bool
	BadKind BadKind
}

// BadKind says how a bad change shows.
type BadKind string

const (
	// BadRun: runs that try to apply the change fail on its template
	// (status failure, an error naming the resource), and keep failing on
	// every later run of the node until a later step reaches it.
	BadRun BadKind = "run"
	// BadService: runs succeed and apply the change, but the service on
	// those nodes breaks; the changed resources carry the bad marker (see
	// ReleaseResource) so the demo APM app raises its error rate.
	BadService BadKind = "service"
)

// Built-in scenario names, as runlens-sim's --scenario takes them.
const (
	ScenarioSteady     = "steady"
	ScenarioRollout    = "rollout"
	ScenarioBadRollout = "bad-rollout"
	ScenarioBadRun     = "bad-run"
)

// ScenarioNames lists the built-in scenarios.
var ScenarioNames = []string{ScenarioSteady, ScenarioRollout, ScenarioBadRollout, ScenarioBadRun}

// DefaultWaves is what the built-in roll-outs use: 10%, 30%, then the
// remaining 60% of the role's nodes.
var DefaultWaves = []float64{0.1, 0.3, 0.6}

// Builtin returns a named built-in scenario. Every roll-out starts one wave
// interval after the scenario's start, so a steady baseline comes first.
//   - steady: no changes.
//   - rollout: a good change (web-config-v2) to role web, in DefaultWaves.
//   - bad-rollout: a bad service change (app-config-v3) to role app, in
//     DefaultWaves: runs succeed, the app's APM error rate rises.
//   - bad-run: a bad run change (db-config-v5) to role db, in DefaultWaves:
//     the db nodes' runs fail once their wave reached them.
func Builtin(name string, waveInterval time.Duration) (Scenario, error) {
	if waveInterval <= 0 {
		waveInterval = DefaultWaveInterval
	}
	sc := Scenario{Name: name, WaveInterval: waveInterval}
	w := slices.Clone(DefaultWaves)
	switch name {
	case ScenarioSteady, "":
		sc.Name = ScenarioSteady
	case ScenarioRollout:
		sc.Steps = []Step{{At: waveInterval, Role: "web", Change: "web-config-v2", Waves: w}}
	case ScenarioBadRollout:
		sc.Steps = []Step{{At: waveInterval, Role: "app", Change: "app-config-v3", Waves: w, Bad: true, BadKind: BadService}}
	case ScenarioBadRun:
		sc.Steps = []Step{{At: waveInterval, Role: "db", Change: "db-config-v5", Waves: w, Bad: true, BadKind: BadRun}}
	default:
		return Scenario{}, fmt.Errorf("unknown scenario %q (want one of %s)", name, strings.Join(ScenarioNames, ", "))
	}
	return sc, nil
}

// WithRollback returns the scenario with, for every bad step, a good change
// ("<change>-rollback") to the same nodes, in one wave, after seconds after
// that step's last wave began.
func (s Scenario) WithRollback(after time.Duration) Scenario {
	out := s
	out.Steps = slices.Clone(s.Steps)
	for _, st := range s.Steps {
		if !st.Bad {
			continue
		}
		out.Steps = append(out.Steps, Step{
			At:   s.StepEnd(st) + after,
			Role: st.Role, Environments: slices.Clone(st.Environments),
			Change: st.Change + "-rollback",
		})
	}
	return out
}

// StepEnd is when st's last wave begins (from the scenario's start).
func (s Scenario) StepEnd(st Step) time.Duration {
	return st.At + time.Duration(max(len(st.Waves), 1)-1)*s.interval()
}

// Duration is when the scenario's last wave begins.
func (s Scenario) Duration() time.Duration {
	var d time.Duration
	for _, st := range s.Steps {
		d = max(d, s.StepEnd(st))
	}
	return d
}

func (s Scenario) interval() time.Duration {
	if s.WaveInterval <= 0 {
		return DefaultWaveInterval
	}
	return s.WaveInterval
}

// Validate reports what is wrong with the scenario, if anything.
func (s Scenario) Validate() error {
	var errs []error
	for i, st := range s.Steps {
		bad := func(format string, a ...any) {
			errs = append(errs, fmt.Errorf("step %d (%s): %s", i, st.Change, fmt.Sprintf(format, a...)))
		}
		if st.Role == "" || strings.ContainsAny(st.Role, "/[]") {
			bad("role %q: want a name without / [ ]", st.Role)
		}
		if st.Change == "" || strings.ContainsAny(st.Change, "/[]") {
			bad("change %q: want a name without / [ ]", st.Change)
		}
		if st.At < 0 {
			bad("negative At")
		}
		sum := 0.0
		for _, w := range st.Waves {
			if !(w > 0 && w <= 1) {
				bad("wave fraction %v not in (0, 1]", w)
			}
			sum += w
		}
		if sum > 1+1e-9 {
			bad("waves add up to %v > 1", sum)
		}
		if st.Bad && st.BadKind != BadRun && st.BadKind != BadService {
			bad("bad kind %q: want %q or %q", st.BadKind, BadRun, BadService)
		}
	}
	return errors.Join(errs...)
}

// The change marker convention. A run that applies a change updates, first
// of its resources,
//
//	template[/etc/<role>/app.conf]                    the configuration that changed
//	file[/etc/<role>/runlens-sim/<change>]            a good change (or a bad run change forced to succeed)
//	file[/etc/<role>/runlens-sim/bad/<change>]        a bad service change
//
// (Salt returns name both "file", Salt's module.) A run failing on a bad
// run change lists template[/etc/<role>/app.conf] as its failed resource and
// updates no marker. ParseChangeMarker reads the marker back from a decoded
// run's updated resources.
const markerDir = "runlens-sim"

// ConfigResource is the path of the role's configuration a change rewrites.
func ConfigResource(role string) string { return "/etc/" + role + "/app.conf" }

// ReleaseResource is the path of the marker naming a change.
func ReleaseResource(role, change string, badService bool) string {
	if badService {
		return "/etc/" + role + "/" + markerDir + "/bad/" + change
	}
	return "/etc/" + role + "/" + markerDir + "/" + change
}

// Marker is a change read from a run's changed resource.
type Marker struct {
	Role, Change string
	// Bad is true for a bad service change.
	Bad bool
}

// ParseChangeMarker tells whether res is a change marker (see
// ReleaseResource), and which.
func ParseChangeMarker(res report.Resource) (Marker, bool) {
	rest, ok := strings.CutPrefix(res.Name, "/etc/")
	if !ok {
		return Marker{}, false
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 3 && parts[1] == markerDir && parts[0] != "" && parts[2] != "":
		return Marker{Role: parts[0], Change: parts[2]}, true
	case len(parts) == 4 && parts[1] == markerDir && parts[2] == "bad" && parts[0] != "" && parts[3] != "":
		return Marker{Role: parts[0], Change: parts[3], Bad: true}, true
	}
	return Marker{}, false
}

// plan is the scenario compiled against a fleet: for every step, the wave
// each node falls in (-1: not reached).
type plan struct {
	sc    Scenario
	waves [][]int // [step][node]
	// applied is, per node, the index of the latest step applied, -1 none.
	applied []int
}

func compile(sc Scenario, nodes []Node, seed uint64) *plan {
	steps := slices.Clone(sc.Steps)
	slices.SortStableFunc(steps, func(a, b Step) int { return int(a.At - b.At) })
	sc.Steps = steps
	p := &plan{sc: sc, applied: make([]int, len(nodes))}
	for i := range p.applied {
		p.applied[i] = -1
	}
	for si, st := range steps {
		var target []int
		for i, n := range nodes {
			if n.Role == st.Role && (len(st.Environments) == 0 || slices.Contains(st.Environments, n.Environment)) {
				target = append(target, i)
			}
		}
		rng := rand.New(rand.NewPCG(seed^0x5ce9a210, uint64(si)))
		rng.Shuffle(len(target), func(a, b int) { target[a], target[b] = target[b], target[a] })
		wave := make([]int, len(nodes))
		for i := range wave {
			wave[i] = -1
		}
		fr := st.Waves
		if len(fr) == 0 {
			fr = []float64{1}
		}
		lo, cum := 0, 0.0
		for k, w := range fr {
			cum = math.Min(cum+w, 1)
			hi := int(math.Round(cum * float64(len(target))))
			for _, i := range target[lo:hi] {
				wave[i] = k
			}
			lo = hi
		}
		p.waves = append(p.waves, wave)
	}
	return p
}

// due returns the latest step that has reached node i by offset and that the
// node has not applied yet, with its wave; -1 if none.
func (p *plan) due(i int, offset time.Duration) (step, wave int) {
	step, wave = -1, -1
	for si, st := range p.sc.Steps {
		w := p.waves[si][i]
		if w >= 0 && st.At+time.Duration(w)*p.sc.interval() <= offset {
			step, wave = si, w
		}
	}
	if step <= p.applied[i] {
		return -1, -1
	}
	return step, wave
}
