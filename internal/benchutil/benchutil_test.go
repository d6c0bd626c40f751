package benchutil

import (
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	if got := Median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median odd = %v", got)
	}
	if got := Median([]float64{4, 1, 2, 3}); got != 2.5 {
		t.Errorf("median even = %v", got)
	}
	if Median(nil) != 0 || Percentile(nil, 0.5) != 0 {
		t.Error("empty inputs")
	}
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if Percentile(ds, 0.5) != 50*time.Millisecond || Percentile(ds, 0.99) != 99*time.Millisecond || Percentile(ds, 1) != 100*time.Millisecond {
		t.Errorf("percentiles %v %v %v", Percentile(ds, 0.5), Percentile(ds, 0.99), Percentile(ds, 1))
	}
	if Ms(1500*time.Microsecond) != 1.5 {
		t.Error("Ms")
	}
}
