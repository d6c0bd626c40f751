// Command runlens-sim publishes realistic run reports for a simulated fleet to
// the runlens exchange: Chef handler, Chef data collector and Salt formats,
// at a set pace or as fast as the broker confirms them.
//
// --scenario rolls changes out across a role in waves (see the simulator
// package's Scenario): steady (no changes), rollout, bad-rollout, bad-run.
// At a pace, a data collector node's run_start is published when its run
// starts and its run_converge when it ends, so nodes are seen converging.
package main

import (
	"container/heap"
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
	scenarioName := app.Flag("scenario", "Built-in scenario: "+strings.Join(simulator.ScenarioNames, ", ")+
		". rollout: a good change to web in 10/30/60% waves; bad-rollout: a bad change to app (runs succeed, the demo app's errors rise); bad-run: a change to db whose runs fail.").
		Default(simulator.ScenarioSteady).Enum(simulator.ScenarioNames...)
	waveInterval := app.Flag("wave-interval", "Time between a roll-out's waves; the first wave starts one interval after the simulator starts.").Default("1m").Duration()
	rollbackAfter := app.Flag("rollback-after", "For the bad scenarios: roll a good change out to every node of the role this long after the last wave (0: never).").Default("0s").Duration()
	kingpin.MustParse(app.Parse(os.Args[1:]))

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var fs []report.Format
	for _, f := range strings.Split(*formats, ",") {
		fs = append(fs, report.Format(strings.TrimSpace(f)))
	}
	sc, err := simulator.Builtin(*scenarioName, *waveInterval)
	if err != nil {
		log.Error("bad --scenario", "err", err)
		os.Exit(2)
	}
	if *rollbackAfter > 0 {
		sc = sc.WithRollback(*rollbackAfter)
	}
	t0 := time.Now()
	fleet := simulator.New(simulator.Config{
		Nodes: *nodes, Environments: strings.Split(*envs, ","), Formats: fs,
		FailureRate: *failures, Seed: *seed, NodeAttributeBytes: *nodeBytes,
		Scenario: sc, ScenarioStart: t0,
	})
	for _, st := range sc.Steps {
		log.Info("scenario step", "scenario", sc.Name, "change", st.Change, "role", st.Role, "at", t0.Add(st.At).Format(time.RFC3339),
			"waves", fmt.Sprint(st.Waves), "wave_interval", sc.WaveInterval, "bad", st.Bad, "bad_kind", st.BadKind)
	}
	pub, err := broker.NewPublisher(ctx, *amqpURL, *exchange, log)
	if err != nil {
		log.Error("cannot publish", "amqp", broker.RedactURL(*amqpURL), "err", err)
		os.Exit(1)
	}
	defer pub.Close()

	if *interval > 0 {
		err = paced(ctx, pub, fleet, t0, *interval, *rounds, log)
	} else {
		err = burst(ctx, pub, fleet, *rounds, log)
	}
	if err != nil && ctx.Err() == nil {
		log.Error("publish failed", "err", err)
		os.Exit(1)
	}
}

func logRound(log *slog.Logger, round int, runs []simulator.Run, began time.Time) {
	failed, changed := 0, 0
	for _, r := range runs {
		if r.Failed {
			failed++
		}
		if r.Change != "" {
			changed++
		}
	}
	log.Info("round published", "round", round+1, "runs", len(runs), "failed", failed, "scenario_changes", changed,
		"took", time.Since(began).Round(time.Millisecond))
}

// burst publishes each round at once, pipelined, as fast as the broker
// confirms.
func burst(ctx context.Context, pub *broker.Publisher, fleet *simulator.Fleet, rounds int, log *slog.Logger) error {
	for round := 0; rounds == 0 || round < rounds; round++ {
		began := time.Now()
		runs := fleet.Round(began, 0, simulator.Random)
		var bodies [][]byte
		for _, r := range runs {
			bodies = append(bodies, r.Messages...)
		}
		if err := pub.PublishAll(ctx, bodies, 0); err != nil {
			return err
		}
		logRound(log, round, runs, began)
	}
	return nil
}

// event is one message due at a time.
type event struct {
	at    time.Time
	seq   int
	body  []byte
	run   *simulator.Run
	round int
	last  bool // the run's last message
}

type queue []event

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// paced publishes every node's run once per interval, the run end times
// spread across it; a data collector's run_start goes out when the run
// starts (up to MaxRunDuration earlier, so rounds overlap), its run_converge
// when it ends. Rounds are generated ahead, just in time for their first
// start.
func paced(ctx context.Context, pub *broker.Publisher, fleet *simulator.Fleet, t0 time.Time, interval time.Duration, rounds int, log *slog.Logger) error {
	var q queue
	seq, next := 0, 0
	pending := map[int][]simulator.Run{}
	left := map[int]int{}
	for {
		for (rounds == 0 || next < rounds) &&
			(len(q) == 0 || !t0.Add(time.Duration(next)*interval-simulator.MaxRunDuration).After(q[0].at)) {
			runs := fleet.Round(t0.Add(time.Duration(next)*interval), interval, simulator.Random)
			pending[next], left[next] = runs, len(runs)
			for i := range runs {
				r := &runs[i]
				for j, m := range r.Messages {
					at := r.End
					if j < len(r.Messages)-1 {
						at = r.Start
					}
					heap.Push(&q, event{at: at, seq: seq, body: m, run: r, round: next, last: j == len(r.Messages)-1})
					seq++
				}
			}
			next++
		}
		if len(q) == 0 {
			return nil
		}
		ev := heap.Pop(&q).(event)
		if d := time.Until(ev.at); d > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
		}
		if err := pub.Publish(ctx, ev.body, nil); err != nil {
			return fmt.Errorf("run %s of %s: %w", ev.run.ID, ev.run.Node.Name, err)
		}
		if ev.last {
			if left[ev.round]--; left[ev.round] == 0 {
				logRound(log, ev.round, pending[ev.round], t0.Add(time.Duration(ev.round)*interval))
				delete(pending, ev.round)
				delete(left, ev.round)
			}
		}
	}
}
