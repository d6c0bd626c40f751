// Package impact scores change sets by what they did to a service's error
// signal: the level before the set's first wave against the level after
// each wave, in units of the baseline's noise (a robust z-score: median and
// median absolute deviation). It is fed with series values (the impact
// query's range query, one per environment and role) and does no I/O.
//
// The score of a set is
//
//	score = z × shape × timing        (z > 0; otherwise score = z)
//
// where:
//
//   - z = (after − before) / noise. before is the median of the signal over
//     the Window before the first wave; after the median over the Window
//     after the last wave's end; z counts it no higher than the median of
//     that window's second half, nor than the median of the next Window
//     (when neither a roll-back nor now cuts it short), so a short spike,
//     which a rate window smears over most of one Window but not two,
//     scores low and only a sustained rise scores high. noise is the spread of the 4 Windows before
//     the first wave: 1.4826 × their median absolute deviation (which a
//     spike in them does not move), or when that is zero (most points equal,
//     as a service with rare errors gives) 1.2533 × their mean absolute
//     deviation; at least 1 % of before.
//   - shape, in [0.5, 1.5] (1 for a single wave): 1 + ½ × the correlation
//     between the share of the set's nodes reached after each wave and the
//     level measured after it (from the end of the wave to the start of the
//     next). A rise that grows with the waves is strong evidence.
//   - timing, in [0.3, 1]: when the rise began (the onset: the first point
//     of the excursion above before + noise that reaches before + 3 noise).
//     1 when it began within lag (Window/3) of the start of a wave; decaying
//     as exp(−delay/lag) past that; 0.3 when it began before the set did and
//     the signal already stood at half its rise from the set's start until
//     lag after (the set cannot be its cause; an excursion that fell back
//     before the set's own rise, a spike, does not count).
//
// Measurement stops at Change.Until (the start of the set that undoes this
// one: what happens after a roll-back is the roll-back's doing) and at
// Options.Now.
package impact

import (
	"math"
	"slices"
	"time"

	"github.com/runlens/runlens/pkg/changeset"
)

// Series is a signal over time, sorted by time, without NaNs.
type Series struct {
	T []int64 // Unix milliseconds
	V []float64
}

// Builder collects points in any order; several points at one instant (a
// template that returns several series) keep the largest.
type Builder struct {
	t []int64
	v []float64
}

// Add adds a point; NaN and infinite values are dropped.
func (b *Builder) Add(ms int64, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	b.t = append(b.t, ms)
	b.v = append(b.v, v)
}

// Series sorts the points and merges equal instants.
func (b *Builder) Series() Series {
	idx := make([]int, len(b.t))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(x, y int) int {
		if b.t[x] != b.t[y] {
			if b.t[x] < b.t[y] {
				return -1
			}
			return 1
		}
		return 0
	})
	var s Series
	for _, i := range idx {
		if n := len(s.T); n > 0 && s.T[n-1] == b.t[i] {
			s.V[n-1] = max(s.V[n-1], b.v[i])
			continue
		}
		s.T = append(s.T, b.t[i])
		s.V = append(s.V, b.v[i])
	}
	return s
}

// Len is the number of points.
func (s Series) Len() int { return len(s.T) }

// span returns the index range of the points in [from, to).
func (s Series) span(from, to time.Time) (lo, hi int) {
	f, t := from.UnixMilli(), to.UnixMilli()
	lo, _ = slices.BinarySearch(s.T, f)
	hi, _ = slices.BinarySearch(s.T, t)
	return lo, max(lo, hi)
}

// Options of Score.
type Options struct {
	// Window is how long after a set's last wave its effect is measured,
	// and how long before its first wave the level it is compared with.
	Window time.Duration
	// Now is the latest instant measured.
	Now time.Time
}

// Change is what Score measures: a change set's waves, and when
// measurement stops.
type Change struct {
	Waves []changeset.Wave
	// Until, if not zero, stops measurement (the start of the set that
	// undoes this one).
	Until time.Time
}

// Result is a set's score and how it came about.
type Result struct {
	// Evaluated is false when the signal had too few points around the
	// set; Reason says why, and the other fields are zero.
	Evaluated bool
	Reason    string

	Before, After, Noise float64
	Z                    float64
	Shape, Timing        float64
	Score                float64
	// Levels are the levels after each measured wave (the last is After),
	// Shares the share of the set's nodes reached by then.
	Levels, Shares []float64
	// Waves is how many waves the set has (Levels may hold fewer when
	// measurement stopped early).
	Waves int
	// Onset is when the rise began (zero: no rise past 3 noise). Delay is
	// how long after the start of wave OnsetWave (from 0) it began, the
	// wave it lines up with best; negative: it began before the set.
	Onset     time.Time
	Delay     time.Duration
	OnsetWave int
	// Later is the level a window after the last one (LaterMeasured:
	// when the horizon left room for it).
	Later         float64
	LaterMeasured bool
	// CutBy says why the last window is shorter than Window: "roll-back"
	// (Change.Until) or "now"; "" when it is whole.
	CutBy string
	// Current is the signal's latest value; Recovered says it is back
	// within 3 noise of Before (the phase-2 highlight clears then).
	Current   float64
	Recovered bool
}

const (
	noiseWindows   = 4
	minNoisePoints = 3
	madScale       = 1.4826 // MAD → standard deviation of a normal
	meanAbsScale   = 1.2533 // mean absolute deviation → standard deviation
	minTiming      = 0.3
)

// Score measures one change against the signal s.
func Score(c Change, s Series, o Options) Result {
	var sc Scorer
	return sc.Score(c, s, o)
}

// Scorer scores changes, reusing its buffers between calls: the zero value
// is ready; not safe for concurrent use.
type Scorer struct{ buf []float64 }

// median of v, which it does not modify.
func (sc *Scorer) median(v []float64) float64 {
	sc.buf = append(sc.buf[:0], v...)
	return median(sc.buf)
}

// mad is the median absolute deviation of v around m.
func (sc *Scorer) mad(v []float64, m float64) float64 {
	sc.buf = sc.buf[:0]
	for _, x := range v {
		sc.buf = append(sc.buf, math.Abs(x-m))
	}
	return median(sc.buf)
}

// Score measures one change against the signal s.
func (sc *Scorer) Score(c Change, s Series, o Options) Result {
	if len(c.Waves) == 0 {
		return Result{Reason: "the set has no runs"}
	}
	w := o.Window
	t0 := c.Waves[0].Start
	lo, hi := s.span(t0.Add(-noiseWindows*w), t0)
	if hi-lo < minNoisePoints {
		return Result{Reason: "no data before the change"}
	}
	noiseMed := sc.median(s.V[lo:hi])
	blo, bhi := s.span(t0.Add(-w), t0)
	before := noiseMed
	if bhi-blo >= 2 {
		before = sc.median(s.V[blo:bhi])
	}
	// The MAD ignores a spike in the baseline; when it is zero (most points
	// equal: a service with rare errors) the mean absolute deviation
	// still sees the rare blips.
	noise := madScale * sc.mad(s.V[lo:hi], noiseMed)
	if noise == 0 {
		noise = meanAbsScale * meanAbsDev(s.V[lo:hi], noiseMed)
	}
	noise = max(noise, 0.01*math.Abs(before), 1e-12)

	horizon, cutBy := o.Now, "now"
	if !c.Until.IsZero() && c.Until.Before(horizon) {
		horizon, cutBy = c.Until, "roll-back"
	}
	total := 0
	for _, wv := range c.Waves {
		total += len(wv.Nodes)
	}
	res := Result{Evaluated: true, Before: before, Noise: noise, Waves: len(c.Waves)}
	reached := 0
	var lastLo, lastHi int
	lastCut := ""
	for k, wv := range c.Waves {
		from := wv.End
		to := wv.End.Add(w)
		if k+1 < len(c.Waves) {
			to = c.Waves[k+1].Start
		}
		if !from.Before(horizon) {
			break
		}
		cut := ""
		if to.After(horizon) {
			to, cut = horizon, cutBy
		}
		l, h := s.span(from, to)
		if l == h {
			// A window shorter than the step: the next point, if it
			// comes before the horizon.
			if l >= len(s.T) || s.T[l] >= horizon.UnixMilli() {
				break
			}
			h = l + 1
		}
		reached += len(wv.Nodes)
		res.Levels = append(res.Levels, sc.median(s.V[l:h]))
		res.Shares = append(res.Shares, float64(reached)/float64(max(total, 1)))
		lastLo, lastHi, lastCut = l, h, cut
	}
	if len(res.Levels) == 0 {
		return Result{Reason: "no data after the change yet"}
	}
	res.CutBy = lastCut
	res.After = res.Levels[len(res.Levels)-1]
	z := (res.After - before) / noise
	if n := lastHi - lastLo; n >= 4 && z > 0 {
		tail := sc.median(s.V[lastLo+n/2 : lastHi])
		z = min(z, (tail-before)/noise)
	}
	// A window later, unless the horizon cuts it: a rise that has gone by
	// then was a spike (a short spike through a 5-minute rate window fills
	// most of one window, not two).
	if last := c.Waves[len(c.Waves)-1].End; z > 0 && res.CutBy == "" {
		l, h := s.span(last.Add(w), earliest(last.Add(2*w), horizon))
		if h-l >= 4 {
			res.Later = sc.median(s.V[l:h])
			res.LaterMeasured = true
			z = min(z, (res.Later-before)/noise)
		}
	}
	res.Z = z
	res.Shape = shape(before, res.Levels, res.Shares)
	res.Timing = 1
	if z > 0 {
		res.Onset, res.Delay, res.OnsetWave, res.Timing = timing(c.Waves, s, before, res.After, noise, w, s.T[lastHi-1])
		res.Score = z * res.Shape * res.Timing
	} else {
		res.Score = z
	}
	if n := len(s.T); n > 0 {
		res.Current = s.V[n-1]
		res.Recovered = res.Current <= before+3*noise
	}
	return res
}

// shape is 1 + ½ × the correlation of the levels with the share of nodes
// reached (the level before counting as share 0); 1 for fewer than 2
// waves.
func shape(before float64, levels, shares []float64) float64 {
	if len(levels) < 2 {
		return 1
	}
	x := append([]float64{0}, shares...)
	y := append([]float64{before}, levels...)
	return 1 + 0.5*correlation(x, y)
}

// timing finds the onset of the rise and how well it lines up with a wave.
// lastMs is the last point measured.
func timing(waves []changeset.Wave, s Series, before, after, noise float64, w time.Duration, lastMs int64) (time.Time, time.Duration, int, float64) {
	t0 := waves[0].Start
	hiT, loT := before+3*noise, before+noise
	i, _ := slices.BinarySearch(s.T, t0.UnixMilli())
	j := -1
	for ; i < len(s.T) && s.T[i] <= lastMs; i++ {
		if s.V[i] > hiT && (i+1 >= len(s.T) || s.V[i+1] > hiT) {
			j = i
			break
		}
	}
	if j < 0 {
		return time.Time{}, 0, 0, 1
	}
	earliest := t0.Add(-w).UnixMilli()
	for j > 0 && s.T[j-1] >= earliest && s.V[j-1] > loT {
		j--
	}
	onset := time.UnixMilli(s.T[j])
	step := time.Minute
	if len(s.T) > 1 {
		step = max(step, 2*time.Duration(s.T[1]-s.T[0])*time.Millisecond)
	}
	lag := max(w/3, step)
	if onset.Before(t0.Add(-step)) {
		// The excursion began before the set. If the signal was already
		// at half its rise when the set started and stayed there, the
		// rise is older than the set; otherwise what came before was a
		// transient (a spike) that the set's own rise followed.
		if sustained(s, t0.Add(-step), t0.Add(lag), before+0.5*(after-before)) {
			return onset, onset.Sub(t0), 0, minTiming
		}
		onset = t0
	}
	delay := time.Duration(math.MaxInt64)
	var since time.Duration
	wave := 0
	for k, wv := range waves {
		if wv.Start.After(onset.Add(step)) {
			break
		}
		d := max(0, onset.Sub(wv.Start)-lag)
		if d < delay {
			delay, since, wave = d, onset.Sub(wv.Start), k
		}
	}
	return onset, since, wave, max(minTiming, math.Exp(-float64(delay)/float64(lag)))
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// sustained reports whether every point in [from, to] is at least level.
func sustained(s Series, from, to time.Time, level float64) bool {
	lo, hi := s.span(from, to.Add(time.Millisecond))
	if lo == hi {
		return false
	}
	for _, v := range s.V[lo:hi] {
		if v < level {
			return false
		}
	}
	return true
}

// median of v (reordered in place), by selection: O(len(v)).
func median(v []float64) float64 {
	n := len(v)
	k := n / 2
	m := nth(v, k)
	if n%2 == 1 {
		return m
	}
	// The element below the k-th is the largest of those left of it.
	below := v[0]
	for _, x := range v[1:k] {
		below = max(below, x)
	}
	return (below + m) / 2
}

// nth reorders v so that v[k] is its k-th smallest element, the elements
// before it no larger and those after no smaller (Hoare's selection with a
// median-of-three pivot), and returns it.
func nth(v []float64, k int) float64 {
	lo, hi := 0, len(v)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		if v[mid] < v[lo] {
			v[mid], v[lo] = v[lo], v[mid]
		}
		if v[hi] < v[lo] {
			v[hi], v[lo] = v[lo], v[hi]
		}
		if v[hi] < v[mid] {
			v[hi], v[mid] = v[mid], v[hi]
		}
		pivot := v[mid]
		i, j := lo, hi
		for i <= j {
			for v[i] < pivot {
				i++
			}
			for v[j] > pivot {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return v[k]
		}
	}
	return v[k]
}

func meanAbsDev(v []float64, m float64) float64 {
	sum := 0.0
	for _, x := range v {
		sum += math.Abs(x - m)
	}
	return sum / float64(len(v))
}

// correlation is Pearson's r, 0 when either side is constant.
func correlation(x, y []float64) float64 {
	n := float64(len(x))
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx, my = mx/n, my/n
	var sxy, sxx, syy float64
	for i := range x {
		dx, dy := x[i]-mx, y[i]-my
		sxy += dx * dy
		sxx += dx * dx
		syy += dy * dy
	}
	if sxx == 0 || syy == 0 {
		return 0
	}
	return sxy / math.Sqrt(sxx*syy)
}
