package impact

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Quantity names what the signal measures, for Detail.
type Quantity struct {
	Name    string // "error ratio"
	Percent bool   // values are ratios, shown as percentages
}

// Format renders a value of the quantity: "8.4 %", "0.62 %", "12.5".
func (q Quantity) Format(v float64) string {
	if q.Percent {
		return number(100*v) + " %"
	}
	return number(v)
}

func number(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 0.1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.2g", v)
}

// Detail explains the result in a sentence a user can read: "error ratio
// 0.62 % → 8.4 % after 3 waves (1.9 %, 4.1 %, 8.4 %), z = 31 (noise
// 0.25 %); grows with the waves ×1.5; rise began 40s after wave 1 ×1.00;
// score 46".
func (r Result) Detail(q Quantity) string {
	if !r.Evaluated {
		return r.Reason
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s → %s", q.Name, q.Format(r.Before), q.Format(r.After))
	switch {
	case r.Waves > 1 && len(r.Levels) < r.Waves:
		fmt.Fprintf(&b, " after %d of %d waves", len(r.Levels), r.Waves)
	case r.Waves > 1:
		fmt.Fprintf(&b, " after %d waves", r.Waves)
	default:
		b.WriteString(" after it")
	}
	if len(r.Levels) > 1 {
		levels := make([]string, len(r.Levels))
		for i, l := range r.Levels {
			levels[i] = q.Format(l)
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(levels, ", "))
	}
	if r.LaterMeasured {
		fmt.Fprintf(&b, ", %s a window later", q.Format(r.Later))
	}
	fmt.Fprintf(&b, ", z = %s (noise %s)", number(r.Z), q.Format(r.Noise))
	if r.Z >= 3 { // a rise past the noise: how it lines up with the set
		if len(r.Levels) > 1 {
			word := "follows the waves loosely"
			switch {
			case r.Shape >= 1.35:
				word = "grows with the waves"
			case r.Shape <= 1:
				word = "does not follow the waves"
			}
			fmt.Fprintf(&b, "; %s ×%.2f", word, r.Shape)
		}
		switch {
		case r.Onset.IsZero():
		case r.Delay < 0:
			fmt.Fprintf(&b, "; rise began %s before the set ×%.2f", round(-r.Delay), r.Timing)
		default:
			fmt.Fprintf(&b, "; rise began %s after wave %d ×%.2f", round(r.Delay), r.OnsetWave+1, r.Timing)
		}
	}
	switch r.CutBy {
	case "roll-back":
		b.WriteString("; measured until it was undone")
	case "now":
		b.WriteString("; still being measured")
	}
	fmt.Fprintf(&b, "; score %s", number(r.Score))
	return b.String()
}

func round(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}
