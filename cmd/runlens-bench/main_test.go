package main

import (
	"bytes"
	"context"
	"regexp"
	"testing"
)

// TestQuick runs the whole benchmark with tiny sizes and 2 s durations
// against the real broker and checks each section printed its figures.
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
		`== 1\. drain rate`,
		`(?m)^-- small: 1000 Chef handler reports, ` + num + ` KiB average, 200 nodes$`,
		`(?m)^  round 1  exporter +quorum +prefetch 1000 +` + num + ` msg/s$`,
		`(?m)^  round 1  bare: ack only, no decode +quorum +prefetch 256 +` + num + ` msg/s$`,
		`(?m)^  small drain, exporter at its default prefetch 1000: ` + num + ` msg/s$`,
		`(?m)^    vs bare: encoding/json into map\[string\]any +best +` + num + ` msg/s \(prefetch 256\)  ratio ` + num + `  \(target ≥ 0\.90\)$`,
		`(?m)^    vs bare: report\.Decode, runlens' decoder +best +` + num + ` msg/s \(prefetch 256\)  ratio ` + num,
		`(?m)^-- large: 20 Chef data collector run_converge messages with a real Ohai node object, ` + num + ` KiB average`,
		`(?m)^  large drain, exporter at its default prefetch 1000: ` + num + ` msg/s$`,

		`== 2\. sustained throughput: 2 publishers with confirms for 2s`,
		`published/s\n *= reports confirmed within the window`,
		`(?m)^  exporter  published +` + num + ` msg/s +consumed +` + num + ` msg/s +held back +[0-9]+% +queue depth at the end +[0-9]+, max +[0-9]+ \((bounded|GROWING)\)`,
		`(?m)^  bare +published +` + num + ` msg/s +consumed +` + num + ` msg/s +held back +[0-9]+% +queue depth at the end +[0-9]+, max +[0-9]+`,
		`(?m)^sustained consumed/s +bare consumer +` + num + ` msg/s +exporter +` + num + ` msg/s +ratio ` + num,

		`== 3\. publish → metric latency: 200 reports/s for 2s \(400 reports over 100 nodes`,
		`(?m)^published 400 reports in .* \(` + num + ` reports/s\); [1-9][0-9]* polls of the exporter`,
		`(?m)^check: every node's runlens_runs_total and runlens_last_run_timestamp_seconds match`,
		`(?m)^  exporter  latency p50 +` + num + ` ms +p99 +` + num + ` ms +max +` + num + ` ms +first poll +` + num + `% +\(400 of 400 shown\)`,
		`(?m)^  baseline  latency p50 +` + num + ` ms +p99 +` + num + ` ms +max +` + num + ` ms .*\(400 of 400 shown\)`,
		`(?m)^publish → metric p99 +baseline +` + num + ` ms +exporter +` + num + ` ms +difference -?` + num + ` ms`,

		`== 4\. scrape time and heap per node`,
		`(?m)^ +1000 nodes  scrape \(gzip, median of 5\) +` + num + ` ms  static-registry baseline +` + num + ` ms  ratio ` + num + `.*heap +-?[0-9]+ B/node`,
		`(?m)^ +3000 nodes  scrape \(gzip, median of 5\) +` + num + ` ms  static-registry baseline skipped \(> -baseline-max-nodes 1000\).*heap +-?[0-9]+ B/node`,
		`fleet built in .* from report\.Run values made in Go`,
		`(?s)baseline skipped: .*one scrape would take about`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("output lacks %s", want)
		}
	}
}
