// Command runlens-sim publishes realistic run reports for a simulated fleet to
// the runlens exchange: Chef handler, Chef data collector and Salt formats,
// at a set pace or as fast as the broker confirms them.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/simulator"
)

func main() {
	app := kingpin.New("runlens-sim", "Publishes simulated Chef and Salt run reports to RabbitMQ.")
	app.HelpFlag.Short('h')
	amqpURL := app.Flag("amqp.url", "AMQP URL (also RUNLENS_AMQP_URL).").Envar("RUNLENS_AMQP_URL").Default("amqp://127.0.0.1:5672/").String()
	exchange := app.Flag("amqp.exchange", "Fanout exchange to publish to.").Default("chef_reports").String()
	nodes := app.Flag("nodes", "Nodes in the simulated fleet.").Default("100").Int()
	envs := app.Flag("environments", "Comma-separated environments.").Default("production,staging,development").String()
	formats := app.Flag("formats", "Comma-separated formats: chef_handler, chef_data_collector, salt.").Default("chef_handler,chef_data_collector,salt").String()
	failures := app.Flag("failure-rate", "Chance that a run fails.").Default("0.05").Float64()
	interval := app.Flag("interval", "Every node runs once per interval, the runs spread across it (0: publish each round at once).").Default("30s").Duration()
	rounds := app.Flag("rounds", "Rounds to publish; 0 runs until interrupted.").Default("0").Int()
	seed := app.Flag("seed", "Random seed.").Default("1").Uint64()
	nodeBytes := app.Flag("node-attribute-bytes", "Approximate size of the Ohai node object in data collector messages.").Default("8192").Int()
	kingpin.MustParse(app.Parse(os.Args[1:]))

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var fs []report.Format
	for _, f := range strings.Split(*formats, ",") {
		fs = append(fs, report.Format(strings.TrimSpace(f)))
	}
	fleet := simulator.New(simulator.Config{
		Nodes: *nodes, Environments: strings.Split(*envs, ","), Formats: fs,
		FailureRate: *failures, Seed: *seed, NodeAttributeBytes: *nodeBytes,
	})
	pub, err := broker.NewPublisher(ctx, *amqpURL, *exchange, log)
	if err != nil {
		log.Error("cannot publish", "amqp", broker.RedactURL(*amqpURL), "err", err)
		os.Exit(1)
	}
	defer pub.Close()

	for round := 0; *rounds == 0 || round < *rounds; round++ {
		start := time.Now()
		runs := fleet.Round(start, *interval, simulator.Random)
		if err := publish(ctx, pub, runs, *interval); err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Error("publish failed", "err", err)
			os.Exit(1)
		}
		failed := 0
		for _, r := range runs {
			if r.Failed {
				failed++
			}
		}
		log.Info("round published", "round", round+1, "runs", len(runs), "failed", failed, "took", time.Since(start).Round(time.Millisecond))
	}
}

// publish sends each run when its end time comes (spread over the interval),
// or all at once, pipelined, when interval is 0.
func publish(ctx context.Context, pub *broker.Publisher, runs []simulator.Run, interval time.Duration) error {
	if interval <= 0 {
		var bodies [][]byte
		for _, r := range runs {
			bodies = append(bodies, r.Messages...)
		}
		return pub.PublishAll(ctx, bodies, 0)
	}
	step := interval / time.Duration(max(len(runs), 1))
	next := time.Now()
	for _, r := range runs {
		for _, m := range r.Messages {
			if err := pub.Publish(ctx, m, nil); err != nil {
				return fmt.Errorf("run %s of %s: %w", r.ID, r.Node.Name, err)
			}
		}
		next = next.Add(step)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(next)):
		}
	}
	return nil
}
