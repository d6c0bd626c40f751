package main

import (
	"bytes"
	"context"
	"regexp"
	"testing"
)

// TestQuick runs the whole benchmark with tiny sizes against the real broker
// and checks each section printed its figures.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("needs RabbitMQ")
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--quick"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	num := `[0-9]+(\.[0-9]+)?`
	for _, want := range []string{
		`== 1\. topology frames`,
		`(?m)^ +200 nodes  by node +` + num + ` ms .* by role +` + num + ` ms .*snapshot copy +` + num + ` ms  ratio by node ` + num,
		`(?m)^ +1000 nodes  by node +` + num + ` ms`,
		`== 2\. publish → frame latency`,
		`(?m)^latency  p50 +` + num + ` ms   p99 +` + num + ` ms   max +` + num + ` ms`,
		`frames in .* \(` + num + ` frames/s\)`,
		`target: p99 < interval \+ 200 ms`,
		`== 3\. history replay`,
		`(?m)^preloaded 2000 reports .* ` + num + ` KiB average`,
		`(?m)^  pass 2: bare +` + num + ` msg/s   plugin +` + num + ` msg/s`,
		`(?m)^replay rate \(median of 2\)  bare +` + num + ` msg/s   plugin +` + num + ` msg/s   ratio ` + num,
		`target: replay ≥ 0\.8 of the bare rate: ` + num,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("output lacks %s", want)
		}
	}
}
