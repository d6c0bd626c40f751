package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"testing"
)

// TestImpactFigure runs the impact figure alone with small sizes
// (RUNLENS_BENCH_IMPACT_RUNS overrides them) against the real broker and a
// real Prometheus, and checks it printed its figures.
func TestImpactFigure(t *testing.T) {
	if testing.Short() {
		t.Skip("needs RabbitMQ and Prometheus")
	}
	impactFlags.runs, impactFlags.repeat = "500,1000", 2
	if v := os.Getenv("RUNLENS_BENCH_IMPACT_RUNS"); v != "" {
		impactFlags.runs, impactFlags.repeat = v, 5
	}
	cfg := config{url: "amqp://guest:guest@127.0.0.1:5672/"}
	names := newNames()
	defer names.cleanup(cfg.url)
	var out bytes.Buffer
	if err := benchImpact(context.Background(), &out, cfg, names); err != nil {
		t.Fatalf("benchImpact: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	num := `[0-9]+(\.[0-9]+)?`
	for _, want := range []string{
		`== 5\. impact ranking`,
		`(?m)^ +[0-9]+ runs \([0-9]+ changes: [0-9]+ change sets\)  by set +` + num + ` ms  by run +` + num + ` ms \([0-9]+ rows\)  \|  Prometheus alone +` + num + ` ms  \|  [1-9] Prometheus range queries per impact query`,
		`target: 10,000 runs ranked < 2 s`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("output lacks %s", want)
		}
	}
}
