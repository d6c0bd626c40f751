package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/internal/benchutil"
	"github.com/runlens/runlens/pkg/broker"
)

// ---------------------------------------------------------------- 1. drain

// A drain pass is one consumer draining one queue preloaded with a report
// set. Each pass has a queue of its own, declared and preloaded just before
// it and deleted after it, so every consumer starts the same way: right
// after a preload, on a queue holding nothing else. The rate is reports /
// time from the first delivery to the last report handled, as the seed
// bridge's client measures it.
type drainKind struct {
	family   string // a row of the summary
	prefetch int
	classic  bool // on a classic queue (the seed bridge's type) instead of a quorum queue
}

const (
	famExporter      = "exporter (decode, fleet state, metrics, ack)"
	famBareJSON      = "bare: encoding/json into map[string]any"
	famBareRunlens   = "bare: report.Decode, runlens' decoder"
	famBareAck       = "bare: ack only, no decode (the broker's limit)"
	famExporterClass = "exporter"
	famBridge        = "seed bridge (Node.js: amqplib, JSON.parse, socket.io)"
)

func (k drainKind) String() string {
	q := "quorum"
	if k.classic {
		q = "classic"
	}
	name, _, _ := strings.Cut(k.family, " (")
	if k.family == famBridge {
		return fmt.Sprintf("%-40s %-7s", "seed bridge", q)
	}
	return fmt.Sprintf("%-40s %-7s prefetch %-4d", name, q, k.prefetch)
}

// drain measures every report set against every baseline, in one run.
func drain(w io.Writer, cfg config, log *slog.Logger) error {
	small := handlerReports(cfg.reports, cfg.nodes)
	large, err := collectorReports(cfg.largeReports, cfg.nodes)
	if err != nil {
		return err
	}
	var br *bridge
	if cfg.bridge != "off" {
		if br, err = setupBridge(w, cfg.bridge == "on"); err != nil {
			return err
		}
		if br != nil {
			defer br.close()
		}
	}
	fmt.Fprintf(w, "   Every pass drains a queue of its own, declared and preloaded just before it and deleted after it; rates are\n"+
		"   reports / (last handled − first delivery). Bare consumers: one amqp091-go goroutine, basic.qos prefetch as shown,\n"+
		"   an ack with multiple=true every %d deliveries; the best of their prefetch sweep is the baseline. Each kind runs once\n"+
		"   to warm up, then %d times in an order that rotates and reverses between rounds; figures are medians.\n",
		bareAckEvery, cfg.repeat)
	for _, set := range []reportSet{small, large} {
		if err := drainSet(w, cfg, set, br, log); err != nil {
			return fmt.Errorf("%s reports: %w", set.name, err)
		}
	}
	return nil
}

func drainSet(w io.Writer, cfg config, set reportSet, br *bridge, log *slog.Logger) error {
	fmt.Fprintf(w, "-- %s: %d %s, %.1f KiB average, %d nodes\n", set.name, len(set.bodies), set.what, set.avgKiB(), cfg.nodes)
	var kinds []drainKind
	for _, p := range cfg.exporterPrefetch {
		kinds = append(kinds, drainKind{family: famExporter, prefetch: p})
	}
	for _, fam := range []string{famBareJSON, famBareRunlens, famBareAck} {
		for _, p := range cfg.barePrefetch {
			kinds = append(kinds, drainKind{family: fam, prefetch: p})
		}
	}
	if br != nil {
		kinds = append(kinds, drainKind{family: famExporterClass, prefetch: cfg.prefetch, classic: true}, drainKind{family: famBridge, classic: true})
	}
	warm := set.bodies[:max(1, min(len(set.bodies), max(len(set.bodies)/10, 200)))]
	for _, k := range kinds {
		if _, err := drainPass(cfg, k, warm, br, log, false); err != nil {
			return fmt.Errorf("warm-up %s: %w", k, err)
		}
	}
	rates := map[drainKind][]float64{}
	for round := range cfg.repeat {
		order := slices.Clone(kinds)
		shift := round * len(order) / cfg.repeat
		order = append(order[shift:], order[:shift]...)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, k := range order {
			profile := cfg.cpuProfile != "" && k.family == famExporter && k.prefetch == cfg.prefetch && round == cfg.repeat-1 && set.name == "small"
			r, err := drainPass(cfg, k, set.bodies, br, log, profile)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			rates[k] = append(rates[k], r)
			fmt.Fprintf(w, "  round %d  %s  %8.0f msg/s\n", round+1, k, r)
		}
	}
	printDrainSummary(w, cfg, set, kinds, rates)
	return nil
}

// drainPass preloads a queue for kind k with bodies and drains it.
func drainPass(cfg config, k drainKind, bodies [][]byte, br *bridge, log *slog.Logger, profile bool) (float64, error) {
	if k.family == famBridge {
		return br.drain(cfg.url, bodies, log)
	}
	topo, cleanup, err := preload(cfg.url, bodies, k.classic, log)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	if profile {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, err
		}
		defer pprof.StopCPUProfile()
	}
	switch k.family {
	case famExporter, famExporterClass:
		return drainExporter(cfg.url, topo, len(bodies), exporterOpts{prefetch: k.prefetch, noDeclare: k.classic}, log)
	case famBareJSON:
		return drainBare(cfg.url, topo.Queue, len(bodies), k.prefetch, decodeMap)
	case famBareRunlens:
		return drainBare(cfg.url, topo.Queue, len(bodies), k.prefetch, decodeRunlens)
	case famBareAck:
		return drainBare(cfg.url, topo.Queue, len(bodies), k.prefetch, nil)
	}
	return 0, fmt.Errorf("unknown kind %s", k)
}

// preload declares a fresh exchange and queue (quorum, as the exporter
// declares it, or classic), publishes bodies with confirms and returns the
// topology and a function deleting it.
func preload(url string, bodies [][]byte, classic bool, log *slog.Logger) (broker.Topology, func(), error) {
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	topo := broker.Topology{Exchange: "runlens.bench." + suffix, Queue: "runlens.bench." + suffix}.Defaults()
	conn, err := amqp.Dial(url)
	if err != nil {
		return topo, nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return topo, nil, err
	}
	cleanup := func() {
		deleteTopology(conn, topo.Exchange, []broker.Topology{topo})
		conn.Close()
	}
	for attempt := 1; ; attempt++ {
		if classic {
			err = declareClassic(ch, topo)
		} else {
			err = broker.Declare(ch, topo)
		}
		// A busy broker sometimes refuses a quorum queue for a moment
		// (541 INTERNAL_ERROR cluster_not_formed): the channel is closed,
		// try again on a new one.
		var ae *amqp.Error
		if err == nil || attempt == 5 || !errors.As(err, &ae) || ae.Code != amqp.InternalError {
			break
		}
		time.Sleep(time.Second)
		if ch, err = conn.Channel(); err != nil {
			break
		}
	}
	if err == nil {
		err = publish(url, topo.Exchange, bodies, log)
	}
	if err != nil {
		cleanup()
		return topo, nil, err
	}
	return topo, cleanup, nil
}

// declareClassic declares topo with a classic queue, for the exporter's
// consumer to consume without declaring (broker.ConsumerConfig.NoDeclare).
func declareClassic(ch *amqp.Channel, t broker.Topology) error {
	for _, ex := range []string{t.Exchange, t.DeadLetterExchange} {
		if err := ch.ExchangeDeclare(ex, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
			return err
		}
	}
	for _, q := range []struct{ name, exchange string }{{t.DeadLetterQueue, t.DeadLetterExchange}, {t.Queue, t.Exchange}} {
		if _, err := ch.QueueDeclare(q.name, true, false, false, false, nil); err != nil {
			return err
		}
		if err := ch.QueueBind(q.name, "", q.exchange, false, nil); err != nil {
			return err
		}
	}
	return nil
}

func publish(url, exchange string, bodies [][]byte, log *slog.Logger) error {
	ctx := context.Background()
	pub, err := broker.NewPublisher(ctx, url, exchange, log)
	if err != nil {
		return err
	}
	defer pub.Close()
	return pub.PublishAll(ctx, bodies, 0)
}

// deleteTopology deletes what a benchmark declared. A delete the broker
// refuses closes the channel, and a busy broker refuses quorum queue deletes
// for a moment (its coordinator unavailable): each delete gets a channel of
// its own and a few tries, so one refusal does not leave the rest behind.
func deleteTopology(conn *amqp.Connection, exchange string, queues []broker.Topology) {
	del := func(f func(*amqp.Channel) error) {
		for attempt := 0; attempt < 5; attempt++ {
			ch, err := conn.Channel()
			if err != nil {
				return
			}
			err = f(ch)
			_ = ch.Close()
			if err == nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for _, t := range queues {
		for _, q := range []string{t.Queue, t.DeadLetterQueue} {
			del(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
		}
		del(func(ch *amqp.Channel) error { return ch.ExchangeDelete(t.DeadLetterExchange, false, false) })
	}
	del(func(ch *amqp.Channel) error { return ch.ExchangeDelete(exchange, false, false) })
}

// printDrainSummary prints the medians, the bare baselines' best prefetch and
// the ratios.
func printDrainSummary(w io.Writer, cfg config, set reportSet, kinds []drainKind, rates map[drainKind][]float64) {
	median := func(k drainKind) float64 { return benchutil.Median(rates[k]) }
	best := map[string]drainKind{}
	for _, k := range kinds {
		if b, ok := best[k.family]; !ok || median(k) > median(b) {
			best[k.family] = k
		}
	}
	fmt.Fprintf(w, "%s reports (%.1f KiB), median of %d, msg/s\n", set.name, set.avgKiB(), cfg.repeat)
	fmt.Fprintf(w, "  quorum queues%*s", 36, "")
	for _, p := range cfg.barePrefetch {
		fmt.Fprintf(w, "  prefetch %-5d", p)
	}
	fmt.Fprintf(w, "\n")
	row := func(fam string, prefetches []int) {
		fmt.Fprintf(w, "    %-47s", fam)
		for _, p := range cfg.barePrefetch {
			k := drainKind{family: fam, prefetch: p}
			if slices.Contains(prefetches, p) {
				fmt.Fprintf(w, "  %14.0f", median(k))
			} else {
				fmt.Fprintf(w, "  %14s", "")
			}
		}
		fmt.Fprintf(w, "\n")
	}
	row(famExporter, cfg.exporterPrefetch)
	for _, fam := range []string{famBareJSON, famBareRunlens, famBareAck} {
		row(fam, cfg.barePrefetch)
	}
	exp := median(drainKind{family: famExporter, prefetch: cfg.prefetch})
	fmt.Fprintf(w, "  %s drain, exporter at its default prefetch %d: %.0f msg/s\n", set.name, cfg.prefetch, exp)
	for _, fam := range []string{famBareJSON, famBareRunlens, famBareAck} {
		b := best[fam]
		target := ""
		if fam == famBareJSON || fam == famBareRunlens {
			target = "  (target ≥ 0.90)"
		}
		fmt.Fprintf(w, "    vs %-47s best %8.0f msg/s (prefetch %d)  ratio %.2f%s\n", fam, median(b), b.prefetch, exp/median(b), target)
	}
	if e, ok := rates[drainKind{family: famExporterClass, prefetch: cfg.prefetch, classic: true}]; ok {
		ec, bb := benchutil.Median(e), median(drainKind{family: famBridge, classic: true})
		fmt.Fprintf(w, "  classic queues (the seed bridge declares its queue classic): exporter %.0f msg/s, %s %.0f msg/s  ratio %.2f  (target ≥ 1.00)\n",
			ec, famBridge, bb, ec/bb)
	}
	fmt.Fprintf(w, "\n")
}
