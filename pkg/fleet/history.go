package fleet

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

// HistoryOptions bound a History. The zero value uses the defaults.
type HistoryOptions struct {
	// MaxRuns is how many records (starts and runs) are kept at most; the
	// oldest are evicted first. Default 200,000.
	MaxRuns int
	// MaxAge evicts records older than the newest record's time minus
	// MaxAge. 0 uses the default, 7*24h; a negative value keeps records of
	// any age (MaxRuns still applies).
	MaxAge time.Duration
}

// Defaults of HistoryOptions.
const (
	DefaultHistoryMaxRuns = 200_000
	DefaultHistoryMaxAge  = 7 * 24 * time.Hour
)

// History is a bounded, time-ordered log of decoded reports: it answers
// time-range queries (runs, changes) and rebuilds the fleet as of a past
// time. A record's time is its End for a finished run (report.KindRun) and
// its Start for a run start (report.KindStart).
//
// It is safe for concurrent use.
type History struct {
	opts HistoryOptions

	mu   sync.RWMutex
	recs []record            // sorted by (at, kind, node, key)
	keys map[string]struct{} // keys of the records held
}

type record struct {
	at  time.Time
	run *report.Run
	key string
}

// less orders records by time; ties put finished runs before starts (a run
// that ends at the very instant the next one starts leaves the node
// converging), then by node and key so the order is deterministic.
func (a *record) less(b *record) bool {
	if c := a.at.Compare(b.at); c != 0 {
		return c < 0
	}
	if a.run.Kind != b.run.Kind {
		return a.run.Kind == report.KindRun
	}
	if c := strings.Compare(a.run.Node, b.run.Node); c != 0 {
		return c < 0
	}
	return a.key < b.key
}

// NewHistory returns an empty history.
func NewHistory(o HistoryOptions) *History {
	if o.MaxRuns <= 0 {
		o.MaxRuns = DefaultHistoryMaxRuns
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultHistoryMaxAge
	}
	return &History{opts: o, keys: make(map[string]struct{})}
}

func recordTime(r *report.Run) time.Time {
	if r.Kind == report.KindStart {
		return r.Start
	}
	return r.End
}

// Add records r: a finished run (report.KindRun) at its End, a run start
// (report.KindStart) at its Start; a dry run is not recorded. It reports
// whether r is now held: a
// record with the same r.Key() already held is ignored (false), and so is one
// that is already past the bounds (older than the newest record minus MaxAge,
// or older than every record of a full history). Reports may arrive in any order; r must not be modified after.
func (h *History) Add(r *report.Run) bool {
	if r.Kind == report.KindDryRun {
		// Not a run: it would stand in for the node's real latest run in
		// StateAt.
		return false
	}
	rec := record{at: recordTime(r), run: r, key: r.Key()}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.keys[rec.key]; dup {
		return false
	}
	if h.opts.MaxAge > 0 && len(h.recs) > 0 {
		newest := h.recs[len(h.recs)-1].at
		if rec.at.Before(newest.Add(-h.opts.MaxAge)) {
			return false
		}
	}
	// Records mostly arrive in order: search from the end.
	n := len(h.recs)
	i := n
	if n > 0 && rec.less(&h.recs[n-1]) {
		i = sort.Search(n, func(j int) bool { return rec.less(&h.recs[j]) })
	}
	h.recs = append(h.recs, record{})
	copy(h.recs[i+1:], h.recs[i:n])
	h.recs[i] = rec
	h.keys[rec.key] = struct{}{}
	h.evict()
	// The oldest record of a full history goes straight back out.
	_, held := h.keys[rec.key]
	return held
}

// evict drops records past the count and age bounds, oldest first.
func (h *History) evict() {
	drop := max(0, len(h.recs)-h.opts.MaxRuns)
	if h.opts.MaxAge > 0 && len(h.recs) > 0 {
		cut := h.recs[len(h.recs)-1].at.Add(-h.opts.MaxAge)
		for drop < len(h.recs) && h.recs[drop].at.Before(cut) {
			drop++
		}
	}
	if drop == 0 {
		return
	}
	for i := range drop {
		delete(h.keys, h.recs[i].key)
		h.recs[i] = record{} // release the report
	}
	h.recs = h.recs[drop:]
	// Re-slicing from the front leaves the dropped head allocated until the
	// next append grows the array; compact when it is mostly dead.
	if cap(h.recs) > 2*len(h.recs)+1024 {
		h.recs = append(make([]record, 0, len(h.recs)+len(h.recs)/4+16), h.recs...)
	}
}

// Len is how many records (starts and runs) are held.
func (h *History) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.recs)
}

// Runs returns the finished runs (report.KindRun) whose End is within
// [from, to], both ends included, sorted by End then Node. The *report.Run
// values are shared: callers must not modify them.
func (h *History) Runs(from, to time.Time) []*report.Run {
	h.mu.RLock()
	defer h.mu.RUnlock()
	i := sort.Search(len(h.recs), func(j int) bool { return !h.recs[j].at.Before(from) })
	var out []*report.Run
	for ; i < len(h.recs) && !h.recs[i].at.After(to); i++ {
		if h.recs[i].run.Kind == report.KindRun {
			out = append(out, h.recs[i].run)
		}
	}
	return out
}

// StateAt rebuilds the fleet as it was at t: a new State (with opts) as if
// every record whose time is at or before t had been Restored into it in time
// order, with t as "now". A node whose latest start at or before t is not
// followed by a run ending at or before t is converging at t. Nodes are kept
// however long ago they were last heard from (Node.Seen tells; the caller
// filters). Counters are zero: Restore does not count.
//
// Only each node's latest run and latest start can change the outcome of
// that replay (a later run replaces the last run and identity, and ends any
// earlier start), so only those are restored.
func (h *History) StateAt(t time.Time, opts Options) *State {
	type latest struct{ run, start int }
	var picked []int
	h.mu.RLock()
	end := sort.Search(len(h.recs), func(j int) bool { return h.recs[j].at.After(t) })
	seen := make(map[string]*latest)
	slots := make([]latest, 0, 1024)
	for i := end - 1; i >= 0; i-- {
		r := h.recs[i].run
		l := seen[r.Node]
		if l == nil {
			if len(slots) == cap(slots) {
				slots = make([]latest, 0, 2*cap(slots))
			}
			slots = append(slots, latest{-1, -1})
			l = &slots[len(slots)-1]
			seen[r.Node] = l
		}
		if r.Kind == report.KindStart {
			if l.start < 0 {
				l.start = i
				picked = append(picked, i)
			}
		} else if l.run < 0 {
			l.run = i
			picked = append(picked, i)
		}
	}
	runs := make([]*report.Run, len(picked))
	for k, i := range picked {
		// picked is in descending record order: restore it ascending.
		runs[len(picked)-1-k] = h.recs[i].run
	}
	h.mu.RUnlock()

	s := New(opts)
	for _, r := range runs {
		s.Restore(r, t)
	}
	return s
}
