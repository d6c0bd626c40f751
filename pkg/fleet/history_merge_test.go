package fleet

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

// Merge gives what adding o's records to h one by one gives: order, keys
// held once (records in both, as at the seam of the older and the newer
// history), count and age bounds. (Adding one by one is order-dependent for
// two different records of one key, one of them evicted in between; runlens
// keys are unique per run, so the test keeps them so.)
func TestHistoryMergeIsAddingEach(t *testing.T) {
	for seed := range 200 {
		rng := rand.New(rand.NewPCG(uint64(seed), 3))
		opts := HistoryOptions{MaxRuns: 5 + rng.IntN(60), MaxAge: time.Duration(10+rng.IntN(120)) * time.Minute}
		var recs []*report.Run
		for i := range 80 {
			at := t0.Add(time.Duration(rng.IntN(180)) * time.Minute)
			id := fmt.Sprint("r", i)
			if rng.IntN(5) == 0 {
				recs = append(recs, start(fmt.Sprint("n", i%4), id, at))
			} else {
				recs = append(recs, run(fmt.Sprint("n", i%4), id, at, report.StatusSuccess, 0))
			}
		}
		// h gets the newest part (the live feed), o the older (loaded
		// in order), with some overlap.
		cut := rng.IntN(len(recs))
		h, o, want := NewHistory(opts), NewHistory(opts), NewHistory(opts)
		for _, r := range recs[cut:] {
			h.Add(r)
			want.Add(r)
		}
		for _, r := range recs[:min(len(recs), cut+rng.IntN(5))] {
			o.Add(r)
		}
		o.mu.RLock()
		for _, rec := range o.recs {
			want.Add(rec.run)
		}
		o.mu.RUnlock()
		h.Merge(o)
		all := func(x *History) []*report.Run {
			x.mu.RLock()
			defer x.mu.RUnlock()
			var out []*report.Run
			for _, rec := range x.recs {
				out = append(out, rec.run)
			}
			return out
		}
		if got, exp := all(h), all(want); !reflect.DeepEqual(got, exp) {
			for k := range got {
				if got[k] != exp[k] {
					t.Logf("first difference at %d: %s %s %v %v / %s %s %v %v", k, got[k].ID, got[k].Kind, got[k].End, got[k].Start, exp[k].ID, exp[k].Kind, exp[k].End, exp[k].Start)
					break
				}
			}
			t.Fatalf("seed %d: merged %d records, adding each gives %d", seed, len(got), len(exp))
		}
		if len(h.keys) != h.Len() {
			t.Fatalf("seed %d: %d keys for %d records", seed, len(h.keys), h.Len())
		}
	}
}

// Loading 200,000 older records in front of newer ones: Merge is linear.
func BenchmarkHistoryMerge(b *testing.B) {
	for range b.N {
		h, o := NewHistory(HistoryOptions{}), NewHistory(HistoryOptions{})
		for i := range 20_000 {
			h.Add(run(fmt.Sprint("n", i), fmt.Sprint("new", i), t0.Add(time.Hour+time.Duration(i)*time.Millisecond), report.StatusSuccess, 0))
		}
		for i := range 200_000 {
			o.Add(run(fmt.Sprint("n", i), fmt.Sprint("old", i), t0.Add(time.Duration(i)*time.Millisecond), report.StatusSuccess, 0))
		}
		h.Merge(o)
		if h.Len() != DefaultHistoryMaxRuns {
			b.Fatalf("%d records", h.Len())
		}
	}
}
