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
		`== 1\. live topology frames`,
		`(?m)^ +200 nodes  by node +` + num + ` ms build \+ +` + num + ` ms JSON +200 nodes +[0-9]+ edges +[0-9]+ \+ +[0-9]+ bytes`,
		`(?m)^ +by role +` + num + ` ms build \+ +` + num + ` ms JSON +[0-9]+ nodes`,
		`(?m)^ +snapshot copy +` + num + ` ms  ratio \(build\) by node ` + num + `, by role ` + num,
		`(?m)^ +1000 nodes  by node +` + num + ` ms build`,
		`== 2\. publish → frame latency`,
		`(?m)^latency  p50 +` + num + ` ms   p99 +` + num + ` ms   max +` + num + ` ms`,
		`frames in .* \(` + num + ` frames/s\)`,
		`target: p99 < interval \+ 200 ms`,
		`== 3\. fan-out: one live view .* 100 RunStreams on each of its two channels`,
		`(?m)^` + num + ` intervals: [0-9]+ generations built \(` + num + ` per interval\), [0-9]+ frames encoded \(` + num + ` per generation\), [0-9]+ packets sent`,
		`target: one frame pair per interval per filter, whatever the subscribers .*: OK`,
		`== 4\. history replay`,
		`(?m)^preloaded 2000 reports .* ` + num + ` KiB average`,
		`(?m)^  pass 2: bare map +` + num + ` msg/s   bare decoder +` + num + ` msg/s   plugin +` + num + ` msg/s`,
		`(?m)^replay rate \(median of 2\)  bare map +` + num + ` msg/s   bare decoder +` + num + ` msg/s   plugin +` + num + ` msg/s   ratio ` + num + ` \(vs map\) / ` + num + ` \(vs decoder\)`,
		`target: replay ≥ 0\.8 of the bare rate with the same decoding: ` + num,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("output lacks %s", want)
		}
	}
}
