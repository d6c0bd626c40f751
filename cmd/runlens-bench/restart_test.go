package main

import (
	"bytes"
	"context"
	"regexp"
	"testing"
)

// TestRestartSection runs the restart section on a small history against the
// real broker (and the exporter binary it builds) and checks it printed
// every figure, with every node right after each restart.
func TestRestartSection(t *testing.T) {
	if testing.Short() {
		t.Skip("needs RabbitMQ")
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-restart-only", "-restart-sizes=6000/600", "-restart-repeat=1"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	num := `[0-9]+(\.[0-9]+)?`
	for _, want := range []string{
		`== 5\. restart`,
		`(?m)^history: 6000 reports \(` + num + ` KiB average\) of 600 nodes, published in`,
		`(?m)^  bare read of the history \(median of 1\) +no decode +` + num + ` s \( *` + num + ` msg/s\) +decode +` + num + ` s`,
		`(?m)^  no snapshot \(full replay of the history\) +` + num + `s +` + num + ` / +` + num + ` +yes \(600 nodes\) +6000 reports`,
		`(?m)^  snapshot, nothing after it +` + num + `s +` + num + ` / +` + num + ` +yes \(600 nodes\) +0 reports`,
		`(?m)^  snapshot \+ 100 reports after it +` + num + `s .* yes \(600 nodes\) +100 reports`,
		`(?m)^  snapshot \+ 300 reports after it +` + num + `s .* yes \(600 nodes\) +300 reports`,
		`(?m)^  snapshot \+ 600 reports after it +` + num + `s .* yes \(600 nodes\) +600 reports`,
		`(?m)^  datasource, snapshot \+ 100 reports after it +` + num + `s .* yes \(by role\) +100 reports; the older history loaded after`,
		`(?m)^  snapshot of 600 nodes: [0-9]+ chunks, ` + num + ` MiB, ` + num + ` B/node; loaded in .* restored state ` + num + ` B/node of heap`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("output lacks %s", want)
		}
	}
}
