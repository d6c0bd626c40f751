package impact

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runlens/runlens/pkg/changeset"
)

var t0 = time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)

const step = 15 * time.Second

var opts = Options{Window: 15 * time.Minute, Now: t0.Add(3 * time.Hour)}

// signal samples f every step from t0-2h to t0+2h, plus normal noise of sd
// noise (seeded).
func signal(f func(time.Time) float64, noise float64, seed uint64) Series {
	rng := rand.New(rand.NewPCG(seed, 1))
	var b Builder
	for t := t0.Add(-2 * time.Hour); t.Before(t0.Add(2 * time.Hour)); t = t.Add(step) {
		b.Add(t.UnixMilli(), f(t)+noise*rng.NormFloat64())
	}
	return b.Series()
}

func nodes(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	return out
}

// rollout is 3 waves (10 %, 30 %, 60 % of 20 nodes) 5 minutes apart,
// each taking 1 minute.
func rollout(start time.Time) Change {
	var c Change
	for k, n := range []int{2, 6, 12} {
		s := start.Add(time.Duration(k) * 5 * time.Minute)
		c.Waves = append(c.Waves, changeset.Wave{Start: s, End: s.Add(time.Minute), Nodes: nodes(string(rune('p'+k)), n), Runs: n})
	}
	return c
}

func oneNode(start time.Time) Change {
	return Change{Waves: []changeset.Wave{{Start: start, End: start.Add(time.Minute), Nodes: []string{"x"}, Runs: 1}}}
}

// rampBy is the level of a service whose error ratio rises by add × the
// share of c's nodes that have converged (a node's errors start at the end
// of its wave).
func rampBy(c Change, base, add float64) func(time.Time) float64 {
	total := 0
	for _, w := range c.Waves {
		total += len(w.Nodes)
	}
	return func(t time.Time) float64 {
		reached := 0
		for _, w := range c.Waves {
			if !t.Before(w.End) {
				reached += len(w.Nodes)
			}
		}
		return base + add*float64(reached)/float64(total)
	}
}

func TestWaveShapedRise(t *testing.T) {
	c := rollout(t0)
	s := signal(rampBy(c, 0.006, 0.08), 0.0005, 1)
	r := Score(c, s, opts)
	if !r.Evaluated {
		t.Fatal(r.Reason)
	}
	if math.Abs(r.Before-0.006) > 0.0005 || math.Abs(r.After-0.086) > 0.002 {
		t.Errorf("before %g after %g, want 0.006 → 0.086", r.Before, r.After)
	}
	if r.Z < 50 || r.Shape < 1.45 || r.Timing != 1 || r.Score < r.Z*1.4 {
		t.Errorf("z %g shape %g timing %g score %g", r.Z, r.Shape, r.Timing, r.Score)
	}
	if len(r.Levels) != 3 || !(r.Levels[0] < r.Levels[1] && r.Levels[1] < r.Levels[2]) {
		t.Errorf("levels %v should grow with the waves", r.Levels)
	}
	if r.Onset.Before(t0) || r.Onset.After(t0.Add(2*time.Minute)) || r.OnsetWave != 0 {
		t.Errorf("onset %s (wave %d), want just after the first wave's end", r.Onset, r.OnsetWave)
	}
	d := r.Detail(Quantity{Name: "error ratio", Percent: true})
	for _, want := range []string{"error ratio 0.6", "% → 8.", "after 3 waves (", "z = ", "grows with the waves ×1.", "rise began ", "after wave 1 ×1.00", "; score "} {
		if !strings.Contains(d, want) {
			t.Errorf("detail %q lacks %q", d, want)
		}
	}
}

func TestSustainedRiseOutranksShortSpike(t *testing.T) {
	// A one-node change followed by a 3-minute spike far higher than the
	// roll-out's rise.
	one := oneNode(t0)
	spike := func(t time.Time) float64 {
		if t.After(t0.Add(2*time.Minute)) && t.Before(t0.Add(5*time.Minute)) {
			return 0.3
		}
		return 0.006
	}
	rs := Score(one, signal(spike, 0.0005, 2), opts)
	c := rollout(t0)
	rr := Score(c, signal(rampBy(c, 0.006, 0.02), 0.0005, 3), opts)
	if rs.Score >= 3 {
		t.Errorf("short spike after a one-node change: score %g (z %g), want < 3", rs.Score, rs.Z)
	}
	if rr.Score <= 3*rs.Score || rr.Score < 10 {
		t.Errorf("roll-out score %g vs spike %g", rr.Score, rs.Score)
	}
	// A spike that lasts most of the window is caught by the tail: the
	// window's second half is back to normal.
	long := func(t time.Time) float64 {
		if t.After(t0) && t.Before(t0.Add(10*time.Minute)) {
			return 0.3
		}
		return 0.006
	}
	if r := Score(one, signal(long, 0.0005, 4), opts); r.Score > 3 {
		t.Errorf("10-minute spike: score %g (z %g), want low: the tail of the window recovered", r.Score, r.Z)
	}
	// A 4-minute spike seen through a 5-minute rate window stands for 9
	// minutes, most of the window and its second half: the next window has
	// recovered.
	smeared := func(t time.Time) float64 {
		if t.After(t0.Add(2*time.Minute)) && t.Before(t0.Add(13*time.Minute)) {
			return 0.2
		}
		return 0.006
	}
	r := Score(one, signal(smeared, 0.0005, 5), opts)
	if r.Score > 3 || !r.LaterMeasured || r.After < 0.1 {
		t.Errorf("smeared spike: after %g, later %g (%v), score %g: want a low score from the window after", r.After, r.Later, r.LaterMeasured, r.Score)
	}
	if d := r.Detail(Quantity{Name: "e", Percent: true}); !strings.Contains(d, "% a window later") {
		t.Errorf("detail %q", d)
	}
}

func TestRiseBeforeTheSetIsNotItsDoing(t *testing.T) {
	// Errors rose 10 minutes before a one-node change and stay up.
	f := func(t time.Time) float64 {
		if t.After(t0.Add(-10 * time.Minute)) {
			return 0.05
		}
		return 0.006
	}
	r := Score(oneNode(t0), signal(f, 0.0005, 5), opts)
	if r.Score > 3 {
		t.Errorf("score %g (before %g after %g z %g timing %g): the level before already includes the rise", r.Score, r.Before, r.After, r.Z, r.Timing)
	}
	// It rose 3 minutes before: the window before is still mostly low,
	// but the onset gives it away.
	f = func(t time.Time) float64 {
		if t.After(t0.Add(-3 * time.Minute)) {
			return 0.05
		}
		return 0.006
	}
	r = Score(oneNode(t0), signal(f, 0.0005, 6), opts)
	if r.Timing != minTiming || r.Delay >= 0 {
		t.Errorf("timing %g delay %s, want %g and a negative delay", r.Timing, r.Delay, minTiming)
	}
	if d := r.Detail(Quantity{Name: "x"}); !strings.Contains(d, "before the set ×0.30") {
		t.Errorf("detail %q", d)
	}
	// It rose 20 minutes after a one-node change: a late onset weakens it.
	f = func(t time.Time) float64 {
		if t.After(t0.Add(12 * time.Minute)) {
			return 0.05
		}
		return 0.006
	}
	late := Score(oneNode(t0), signal(f, 0.0005, 7), Options{Window: 30 * time.Minute, Now: opts.Now})
	if late.Timing >= 0.9 || late.Timing < minTiming {
		t.Errorf("late onset: timing %g, want between %g and 0.9", late.Timing, minTiming)
	}
}

func TestSpikeJustBeforeTheSetIsNotTheRise(t *testing.T) {
	// An unrelated spike ends a minute before the roll-out (a 5-minute
	// rate window smears it until 3 minutes after), then the roll-out's own
	// rise: the excursion is continuous, but the spike is not the set's
	// rise, so the timing is not held against it.
	c := rollout(t0)
	up := rampBy(c, 0.006, 0.08)
	f := func(t time.Time) float64 {
		v := up(t)
		switch {
		case t.After(t0.Add(-4*time.Minute)) && t.Before(t0.Add(-time.Minute)):
			v += 0.2
		case !t.Before(t0.Add(-time.Minute)) && t.Before(t0.Add(3*time.Minute)):
			v += 0.2 * float64(t0.Add(3*time.Minute).Sub(t)) / float64(4*time.Minute)
		}
		return v
	}
	r := Score(c, signal(f, 0.0005, 11), opts)
	if r.Timing != 1 || r.Score < 50 {
		t.Errorf("timing %g score %g (onset %s, delay %s): the spike before the set counted against it", r.Timing, r.Score, r.Onset, r.Delay)
	}
}

func TestMeasurementStopsAtTheRollback(t *testing.T) {
	c := rollout(t0)
	up := rampBy(c, 0.006, 0.08)
	back := c.Waves[2].End.Add(3 * time.Minute)
	f := func(t time.Time) float64 {
		if t.After(back.Add(time.Minute)) {
			return 0.006
		}
		return up(t)
	}
	s := signal(f, 0.0005, 8)
	whole := Score(c, s, opts)
	c.Until = back
	cut := Score(c, s, opts)
	if cut.CutBy != "roll-back" || cut.After < 0.08 || cut.Score < 2*whole.Score {
		t.Errorf("cut by the roll-back: after %g score %g (cut %q); whole window: after %g score %g", cut.After, cut.Score, cut.CutBy, whole.After, whole.Score)
	}
	if !strings.Contains(cut.Detail(Quantity{Name: "e"}), "measured until it was undone") {
		t.Errorf("detail %q", cut.Detail(Quantity{Name: "e"}))
	}
	if !cut.Recovered {
		t.Errorf("the signal is back to normal: Recovered should be set")
	}
	// A roll-back before the first wave ended leaves nothing to measure.
	c.Until = t0.Add(30 * time.Second)
	if r := Score(c, s, opts); r.Evaluated {
		t.Errorf("undone before any wave ended: %+v", r)
	}
}

func TestNoiseOfARareErrorService(t *testing.T) {
	// A service with no errors but a blip every 10 minutes: the MAD is 0,
	// the mean absolute deviation is not. One more blip after a change is
	// noise, not a score of a million.
	f := func(t time.Time) float64 {
		if t.Unix()%600 < 30 {
			return 0.01
		}
		return 0
	}
	r := Score(oneNode(t0.Add(7*time.Minute)), signal(f, 0, 0), opts)
	if !r.Evaluated || r.Noise <= 0 || r.Score > 3 {
		t.Errorf("noise %g score %g z %g", r.Noise, r.Score, r.Z)
	}
}

func TestNotEvaluated(t *testing.T) {
	s := signal(func(time.Time) float64 { return 1 }, 0, 0)
	if r := Score(oneNode(t0.Add(-3*time.Hour)), s, opts); r.Evaluated || r.Reason != "no data before the change" {
		t.Errorf("before the data: %+v", r)
	}
	if r := Score(oneNode(t0.Add(time.Hour)), s, Options{Window: opts.Window, Now: t0.Add(time.Hour)}); r.Evaluated || !strings.Contains(r.Reason, "no data after") {
		t.Errorf("not yet measurable: %+v", r)
	}
	// In progress: measured up to now, and says so.
	r := Score(oneNode(t0), s, Options{Window: opts.Window, Now: t0.Add(5 * time.Minute)})
	if !r.Evaluated || r.CutBy != "now" || !strings.Contains(r.Detail(Quantity{Name: "e"}), "still being measured") {
		t.Errorf("in progress: %+v", r)
	}
	if r := Score(Change{}, s, opts); r.Evaluated {
		t.Errorf("no waves: %+v", r)
	}
}

func TestFallingSignalScoresNegative(t *testing.T) {
	f := func(t time.Time) float64 {
		if t.After(t0.Add(time.Minute)) {
			return 0.006
		}
		return 0.08
	}
	r := Score(oneNode(t0), signal(f, 0.0005, 9), opts)
	if r.Score >= -10 || r.Score != r.Z {
		t.Errorf("a recovery (roll-back) scores its negative z: %g (z %g)", r.Score, r.Z)
	}
}

func TestBuilderMergesAndDropsNaN(t *testing.T) {
	var b Builder
	b.Add(2000, 1)
	b.Add(1000, 5)
	b.Add(2000, 3)
	b.Add(3000, math.NaN())
	b.Add(4000, math.Inf(1))
	s := b.Series()
	if s.Len() != 2 || s.T[0] != 1000 || s.V[0] != 5 || s.T[1] != 2000 || s.V[1] != 3 {
		t.Errorf("series %+v", s)
	}
}

func TestQuantityFormat(t *testing.T) {
	p := Quantity{Percent: true}
	for v, want := range map[float64]string{0.0062: "0.62 %", 0.084: "8.40 %", 0.123: "12.3 %", 1: "100 %", 0: "0 %", 0.00004: "0.004 %"} {
		if got := p.Format(v); got != want {
			t.Errorf("Format(%g) = %q, want %q", v, got, want)
		}
	}
}

func TestMarks(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	set := func(id, env string, start time.Duration, undone string, nodes ...string) *changeset.Set {
		return &changeset.Set{ID: id, Environment: env, Start: t0.Add(start), Nodes: nodes,
			Resources: []string{"file[" + id + "]"}, UndoneBy: undone}
	}
	sets := []*changeset.Set{
		set("big", "prod", 0, "", "n1", "n2", "n3"),
		set("bigger", "staging", 0, "", "n3", "n4"),
		set("weak", "prod", 0, "", "n5"),
		set("undone", "prod", 0, "later", "n6"),
		set("recovered", "prod", 0, "", "n7"),
		set("unmeasured", "prod", 0, "", "n8"),
		// Its errors began after "big" started: big explains them.
		set("downstream", "prod", 5*time.Minute, "", "n9"),
		// The same, in another environment: not explained.
		set("elsewhere", "dev", 5*time.Minute, "", "n10"),
		// Began after big's errors had begun: big explains what it saw,
		// although it scores higher.
		set("tuning", "prod", 3*time.Minute, "", "n11"),
		// Alone in its environment: its own suspect.
		set("earlier", "qa", -30*time.Minute, "", "n12"),
	}
	onset := func(d time.Duration) time.Time { return t0.Add(d) }
	results := map[string]Result{
		"big":        {Evaluated: true, Score: 12, Onset: onset(2 * time.Minute)},
		"bigger":     {Evaluated: true, Score: 40, Onset: onset(time.Minute)},
		"weak":       {Evaluated: true, Score: 2},
		"undone":     {Evaluated: true, Score: 50},
		"recovered":  {Evaluated: true, Score: 50, Recovered: true},
		"unmeasured": {Reason: "no data"},
		"downstream": {Evaluated: true, Score: 11, Onset: onset(6 * time.Minute)},
		"elsewhere":  {Evaluated: true, Score: 11, Onset: onset(6 * time.Minute)},
		"tuning":     {Evaluated: true, Score: 30, Onset: onset(3 * time.Minute)},
		"earlier":    {Evaluated: true, Score: 10, Onset: onset(-29 * time.Minute)},
	}
	m := Marks(sets, results, 10)
	want := map[string]string{"n1": "big", "n2": "big", "n3": "bigger", "n4": "bigger", "n10": "elsewhere", "n12": "earlier"}
	if len(m) != len(want) {
		t.Errorf("marks %v, want nodes %v", m, want)
	}
	for n, id := range want {
		if m[n].Set != id {
			t.Errorf("%s marked by %q, want %q", n, m[n].Set, id)
		}
	}
	if m["n3"].Title != "file[bigger] on 2 nodes" || m["n3"].Score != 40 {
		t.Errorf("mark %+v", m["n3"])
	}
}

func TestMedianBySelection(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 1; n < 60; n++ {
		for range 20 {
			v := make([]float64, n)
			for i := range v {
				v[i] = float64(rng.IntN(7)) // many ties
			}
			sorted := slices.Clone(v)
			slices.Sort(sorted)
			want := sorted[n/2]
			if n%2 == 0 {
				want = (sorted[n/2-1] + sorted[n/2]) / 2
			}
			if got := median(slices.Clone(v)); got != want {
				t.Fatalf("median(%v) = %g, want %g", v, got, want)
			}
		}
	}
}
