// Package benchutil holds what runlens' benchmark commands share: paced
// publishing with recorded publish times, and the statistics they print.
package benchutil

import (
	"context"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/runlens/runlens/pkg/broker"
)

// PublishPaced publishes bodies at rate messages per second, in batches every
// 10 ms, waiting for the broker's confirms. Before each batch it stores the
// batch's publish time (Unix nanoseconds) in sent[i] for every message i of
// the batch, which latency measurements start from. It returns how long
// publishing took.
func PublishPaced(ctx context.Context, pub *broker.Publisher, bodies [][]byte, rate int, sent []atomic.Int64) (time.Duration, error) {
	total := len(bodies)
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	done := 0
	for done < total {
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-tick.C:
		}
		// Due by the clock, so the average rate holds even if a batch's
		// confirms were slow.
		due := min(total, int(time.Since(start).Seconds()*float64(rate)))
		if due <= done {
			continue
		}
		now := time.Now().UnixNano()
		for i := done; i < due; i++ {
			sent[i].Store(now)
		}
		if err := pub.PublishAll(ctx, bodies[done:due], 0); err != nil {
			return time.Since(start), err
		}
		done = due
	}
	return time.Since(start), nil
}

// Median of xs (not modified); 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Percentile is the nearest-rank percentile q (0..1] of sorted durations.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Ms is d in milliseconds, to the microsecond.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
