package simulator

import (
	"bytes"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

func builtin(t *testing.T, name string, wave time.Duration) Scenario {
	t.Helper()
	sc, err := Builtin(name, wave)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	return sc
}

// decodeLast decodes every message of r and returns the finished run.
func decodeLast(t *testing.T, r Run) *report.Run {
	t.Helper()
	var last *report.Run
	for i, m := range r.Messages {
		got, err := report.Decode(m)
		if err != nil {
			t.Fatalf("%s message %d: %v", r.Node.Name, i, err)
		}
		last = got
	}
	if last.Kind != report.KindRun || last.ID != r.ID || last.UpdatedCount != r.Updated ||
		(last.Status == report.StatusFailure) != r.Failed {
		t.Fatalf("%s: decoded %+v, simulated %+v", r.Node.Name, last, r)
	}
	return last
}

func markers(run *report.Run) []Marker {
	var out []Marker
	for _, res := range run.Updated {
		if m, ok := ParseChangeMarker(res); ok {
			out = append(out, m)
		}
	}
	return out
}

func roleNodes(f *Fleet, role string) int {
	n := 0
	for _, nd := range f.Nodes {
		if nd.Role == role {
			n++
		}
	}
	return n
}

// Each wave reaches round(cumulative fraction × n) of the role's nodes, one
// wave per interval, and nothing else changes.
func TestWavesReachTheirFractionPerInterval(t *testing.T) {
	t.Parallel()
	const wave = time.Minute
	f := New(Config{Nodes: 300, Seed: 11, FailureRate: -1, NodeAttributeBytes: -1, Resources: 12, Scenario: builtin(t, ScenarioRollout, wave), ScenarioStart: t0})
	n := roleNodes(f, "web")
	if n != 60 {
		t.Fatalf("web nodes = %d", n)
	}
	reached := map[string]int{} // node → wave
	for k := range 12 {         // a round every 30s, 6 minutes
		at := t0.Add(time.Duration(k) * 30 * time.Second)
		for _, r := range f.Round(at, 0, Random) {
			dec := decodeLast(t, r)
			ms := markers(dec)
			if r.Change == "" {
				if len(ms) != 0 {
					t.Fatalf("%s: markers %v without a change", r.Node.Name, ms)
				}
				continue
			}
			if r.Node.Role != "web" || r.Change != "web-config-v2" || r.Failed {
				t.Fatalf("%s got change %q (failed %v)", r.Node.Name, r.Change, r.Failed)
			}
			if _, again := reached[r.Node.Name]; again {
				t.Fatalf("%s applied the change twice", r.Node.Name)
			}
			reached[r.Node.Name] = r.Wave
			if want := (Marker{Role: "web", Change: "web-config-v2"}); !slices.Equal(ms, []Marker{want}) {
				t.Fatalf("%s (%s): markers %v, want %v", r.Node.Name, r.Node.Format, ms, want)
			}
			if !slices.ContainsFunc(dec.Updated, func(res report.Resource) bool { return res.Name == ConfigResource("web") }) {
				t.Fatalf("%s: %s not among updated %v", r.Node.Name, ConfigResource("web"), dec.Updated)
			}
		}
		// By the time of this round, waves 0..w have begun.
		w := int((at.Sub(t0) - wave) / wave)
		if at.Sub(t0) < wave {
			w = -1
		}
		cum := 0.0
		for i := 0; i <= w && i < len(DefaultWaves); i++ {
			cum += DefaultWaves[i]
		}
		if want := int(math.Round(math.Min(cum, 1) * float64(n))); len(reached) != want {
			t.Fatalf("at +%s: %d of %d web nodes changed, want %d", at.Sub(t0), len(reached), n, want)
		}
	}
	per := map[int]int{}
	for _, w := range reached {
		per[w]++
	}
	if per[0] != 6 || per[1] != 18 || per[2] != 36 {
		t.Errorf("nodes per wave = %v, want 6, 18, 36", per)
	}
}

// A bad run change fails exactly the role's runs once their wave came, and
// keeps failing them; a rollback ends it.
func TestBadRunFailsExactlyTheRole(t *testing.T) {
	sc := builtin(t, ScenarioBadRun, time.Minute).WithRollback(2 * time.Minute)
	f := New(Config{Nodes: 90, Seed: 5, FailureRate: -1, NodeAttributeBytes: -1, Scenario: sc, ScenarioStart: t0})
	n := roleNodes(f, "db")
	for k, tc := range []struct {
		offset time.Duration
		failed int
	}{
		{0, 0}, {59 * time.Second, 0},
		{time.Minute, int(math.Round(0.1 * float64(n)))},
		{2 * time.Minute, int(math.Round(0.4 * float64(n)))},
		{3 * time.Minute, n}, {4 * time.Minute, n},
		{5 * time.Minute, 0}, // rollback
		{6 * time.Minute, 0},
	} {
		failed := 0
		for _, r := range f.Round(t0.Add(tc.offset), 0, Random) {
			dec := decodeLast(t, r)
			if !r.Failed {
				continue
			}
			failed++
			if r.Node.Role != "db" || r.Change != "db-config-v5" {
				t.Fatalf("round %d: %s (%s) failed, change %q", k, r.Node.Name, r.Node.Role, r.Change)
			}
			if len(markers(dec)) != 0 {
				t.Fatalf("%s: a failed run carries markers %v", r.Node.Name, markers(dec))
			}
			// The handler format lists no failed resources, only the error.
			if r.Node.Format != report.FormatChefHandler &&
				!slices.ContainsFunc(dec.Failed, func(res report.Resource) bool { return res.Name == ConfigResource("db") }) {
				t.Fatalf("%s (%s): failed resources %v", r.Node.Name, r.Node.Format, dec.Failed)
			}
			if dec.Error == nil {
				t.Fatalf("%s: failed without an error", r.Node.Name)
			}
		}
		if failed != tc.failed {
			t.Errorf("at +%s: %d failed runs, want %d (of %d db nodes)", tc.offset, failed, tc.failed, n)
		}
	}
}

// A bad service change: runs succeed and carry the bad marker; the rollback
// carries a good one for the same nodes.
func TestBadServiceChangeMarker(t *testing.T) {
	sc := builtin(t, ScenarioBadRollout, 10*time.Second).WithRollback(time.Minute)
	f := New(Config{Nodes: 60, Seed: 9, FailureRate: -1, NodeAttributeBytes: -1, Resources: 12, Scenario: sc})
	n := roleNodes(f, "app")
	bad, good := map[string]bool{}, map[string]bool{}
	for k := range 20 { // every 10s for 200s; the first run starts the scenario
		for _, r := range f.Round(t0.Add(time.Duration(k)*10*time.Second), 0, Random) {
			dec := decodeLast(t, r)
			if r.Failed {
				t.Fatalf("%s failed", r.Node.Name)
			}
			for _, m := range markers(dec) {
				if m.Role != "app" || r.Node.Role != "app" {
					t.Fatalf("%s: marker %v", r.Node.Name, m)
				}
				if m.Bad {
					if m.Change != "app-config-v3" || good[r.Node.Name] {
						t.Fatalf("%s: bad marker %v", r.Node.Name, m)
					}
					bad[r.Node.Name] = true
				} else {
					if m.Change != "app-config-v3-rollback" || !bad[r.Node.Name] {
						t.Fatalf("%s: good marker %v before the bad one", r.Node.Name, m)
					}
					good[r.Node.Name] = true
				}
			}
		}
	}
	if !f.ScenarioStart().Equal(t0) {
		t.Errorf("scenario start %s, want the first run's end %s", f.ScenarioStart(), t0)
	}
	if len(bad) != n || len(good) != n {
		t.Errorf("bad %d, rolled back %d, of %d app nodes", len(bad), len(good), n)
	}
}

// Every message of every scenario decodes, and a fleet is reproducible from
// its seed; another seed picks other nodes for the first wave.
func TestScenariosDecodeAndAreDeterministic(t *testing.T) {
	t.Parallel()
	firstWave := func(seed uint64, name string, decode bool) (msgs [][]byte, wave0 []string) {
		sc := builtin(t, name, time.Minute).WithRollback(time.Minute)
		f := New(Config{Nodes: 45, Seed: seed, FailureRate: 0.1, Scenario: sc, ScenarioStart: t0, NodeAttributeBytes: -1, Resources: 12})
		for k := range 14 {
			for _, r := range f.Round(t0.Add(time.Duration(k)*30*time.Second), 30*time.Second, Random) {
				if decode {
					decodeLast(t, r)
				}
				msgs = append(msgs, r.Messages...)
				if r.Change != "" && r.Wave == 0 {
					wave0 = append(wave0, r.Node.Name)
				}
			}
		}
		return msgs, wave0
	}
	for _, name := range ScenarioNames {
		a, wa := firstWave(3, name, true)
		b, wb := firstWave(3, name, false)
		if len(a) != len(b) {
			t.Fatalf("%s: %d vs %d messages with one seed", name, len(a), len(b))
		}
		for i := range a {
			if !bytes.Equal(a[i], b[i]) {
				t.Fatalf("%s: message %d differs between two fleets with one seed", name, i)
			}
		}
		if !slices.Equal(wa, wb) {
			t.Fatalf("%s: first wave %v vs %v", name, wa, wb)
		}
		if name == ScenarioSteady {
			continue
		}
		if len(wa) == 0 {
			t.Fatalf("%s: no first wave", name)
		}
		differs := false
		for seed := uint64(4); seed < 10 && !differs; seed++ {
			_, wc := firstWave(seed, name, false)
			differs = !slices.Equal(wa, wc)
		}
		if !differs {
			t.Errorf("%s: every seed picks the same first wave %v", name, wa)
		}
	}
}

func TestScenarioValidation(t *testing.T) {
	if _, err := Builtin("chaos", 0); err == nil {
		t.Error("unknown scenario accepted")
	}
	sc, err := Builtin("", 0)
	if err != nil || sc.Name != ScenarioSteady || len(sc.Steps) != 0 {
		t.Errorf("default scenario: %+v %v", sc, err)
	}
	for _, st := range []Step{
		{Role: "", Change: "x"},
		{Role: "app", Change: "a/b"},
		{Role: "app", Change: "x", Waves: []float64{0.6, 0.6}},
		{Role: "app", Change: "x", Waves: []float64{0}},
		{Role: "app", Change: "x", Bad: true, BadKind: "flaky"},
	} {
		if err := (Scenario{Steps: []Step{st}}).Validate(); err == nil {
			t.Errorf("%+v: accepted", st)
		}
	}
	for _, tc := range []struct {
		name string
		want Marker
		ok   bool
	}{
		{"/etc/app/runlens-sim/v1", Marker{Role: "app", Change: "v1"}, true},
		{"/etc/app/runlens-sim/bad/v1", Marker{Role: "app", Change: "v1", Bad: true}, true},
		{"/etc/app/app.conf", Marker{}, false},
		{"/etc/app/runlens-sim/bad", Marker{Role: "app", Change: "bad"}, true},
		{"/srv/app/runlens-sim/v1", Marker{}, false},
	} {
		got, ok := ParseChangeMarker(report.Resource{Type: "file", Name: tc.name})
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %v %v, want %v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	if got, _ := ParseChangeMarker(report.Resource{Name: ReleaseResource("web", "c1", true)}); got != (Marker{"web", "c1", true}) {
		t.Errorf("round trip: %v", got)
	}
}

// Data collector runs start MaxRunDuration at most before they end, and the
// run_start carries Run.Start.
func TestRunStartPrecedesConverge(t *testing.T) {
	f := New(Config{Nodes: 9, Formats: []report.Format{report.FormatChefDataCollector}})
	for _, r := range f.Round(t0, time.Minute, Random) {
		st, err := report.Decode(r.Messages[0])
		if err != nil {
			t.Fatal(err)
		}
		if d := r.End.Sub(r.Start); d <= 0 || d > MaxRunDuration || !st.Start.Equal(r.Start.Truncate(time.Second)) {
			t.Fatalf("%s: start %s end %s decoded start %s", r.Node.Name, r.Start, r.End, st.Start)
		}
	}
}
