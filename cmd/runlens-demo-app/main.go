// Command runlens-demo-app is a stand-in for an application's APM metrics, so
// runlens' change annotations and change-impact ranking have something to line
// changes up with. It serves no real traffic: it makes its own, in-process, for
// each service (a role of the simulated fleet) and environment, and exposes
//
//	http_requests_total{service,environment,code}             counter
//	http_request_duration_seconds{service,environment}        histogram
//
// on /metrics. It consumes the run reports exchange with its own exclusive,
// auto-delete queue (the demo needs no backlog: it reacts to what happens
// while it runs). When a run applies a bad service change to a node of a role
// (runlens-sim's marker, file[/etc/<role>/runlens-sim/bad/<change>], see
// simulator.ParseChangeMarker), that role's service in that environment
// degrades: its 5xx rate rises from --errors.normal to --errors.degraded and
// its latency goes up. It recovers once a later good change has reached every
// node that got the bad one (a rollback).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/simulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	listen, amqpURL, exchange string
	services, environments    []string
	rps                       float64
	normal, degraded          float64
	logLevel                  string
}

func parseFlags(args []string, stdout, stderr io.Writer) (*config, error) {
	c := &config{}
	app := kingpin.New("runlens-demo-app", "A demo application's APM metrics: synthetic traffic whose error rate rises when a bad change reaches its role.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	stopped := false
	app.Terminate(func(int) { stopped = true })
	app.HelpFlag.Short('h')
	var services, envs string
	app.Flag("web.listen-address", "Address to serve /metrics on.").Default(":9866").StringVar(&c.listen)
	app.Flag("amqp.url", "AMQP URL of the broker. Also read from RUNLENS_AMQP_URL; prefer that over a password on the command line.").
		Envar("RUNLENS_AMQP_URL").Default("amqp://127.0.0.1:5672/").StringVar(&c.amqpURL)
	app.Flag("amqp.exchange", "Fanout exchange the run reports are published to.").Default(broker.DefaultExchange).StringVar(&c.exchange)
	app.Flag("services", "Comma-separated services: the roles of the fleet whose changes affect them.").Default("app,web").StringVar(&services)
	app.Flag("environments", "Comma-separated environments.").Default("production,staging").StringVar(&envs)
	app.Flag("rps", "Synthetic requests per second for each service and environment.").Default("20").Float64Var(&c.rps)
	app.Flag("errors.normal", "Share of requests answered 5xx when healthy.").Default("0.005").Float64Var(&c.normal)
	app.Flag("errors.degraded", "Share of requests answered 5xx after a bad change.").Default("0.2").Float64Var(&c.degraded)
	app.Flag("log.level", "debug, info, warn or error.").Default("info").EnumVar(&c.logLevel, "debug", "info", "warn", "error")
	if _, err := app.Parse(args); err != nil {
		return nil, err
	}
	if stopped {
		return nil, nil
	}
	c.services, c.environments = splitList(services), splitList(envs)
	if len(c.services) == 0 || len(c.environments) == 0 {
		return nil, errors.New("--services and --environments must name at least one")
	}
	if c.rps <= 0 || c.normal < 0 || c.normal > 1 || c.degraded < 0 || c.degraded > 1 {
		return nil, errors.New("--rps must be positive, --errors.* between 0 and 1")
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// run is the whole program, so tests can run it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "runlens-demo-app:", err)
		return 2
	}
	if c == nil { // --help
		return 0
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.logLevel))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := serve(ctx, c, log); err != nil {
		log.Error("exiting", "err", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, c *config, log *slog.Logger) error {
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	log.Info("starting runlens-demo-app", "listen", ln.Addr().String(), "amqp", broker.RedactURL(c.amqpURL),
		"exchange", c.exchange, "services", c.services, "environments", c.environments)

	health := newHealth(c.services, c.environments, log)
	reg := prometheus.NewRegistry()
	traffic := newTraffic(reg, health, c)
	cons := &consumer{url: c.amqpURL, exchange: c.exchange, health: health, log: log}

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "OK\n") })
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !cons.ready.Load() {
			http.Error(w, "not consuming run reports yet", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "OK\n")
	})
	mux.HandleFunc("/state", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(health.Snapshot())
	})
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<html><head><title>runlens demo app</title></head><body><h1>runlens demo app</h1>
<p><a href="/metrics">Metrics</a> · <a href="/state">State</a> (JSON)</p></body></html>`)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() { traffic.run(ctx) })
	wg.Go(func() { cons.run(ctx) })
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			cancel()
		}
	})
	<-ctx.Done()
	log.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// key is one service in one environment.
type key struct{ service, environment string }

// health is the error-rate state machine: per service and environment, the
// nodes of that role carrying a bad change. A service is degraded while any
// node carries one; a good change reaching a node clears it.
type health struct {
	log *slog.Logger
	mu  sync.Mutex
	bad map[key]map[string]string // node → bad change; keys only for tracked services
}

func newHealth(services, envs []string, log *slog.Logger) *health {
	h := &health{log: log, bad: map[key]map[string]string{}}
	for _, s := range services {
		for _, e := range envs {
			h.bad[key{s, e}] = map[string]string{}
		}
	}
	return h
}

// Observe applies one decoded report.
func (h *health) Observe(r *report.Run) {
	if r.Kind != report.KindRun {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, res := range r.Updated {
		m, ok := simulator.ParseChangeMarker(res)
		if !ok {
			continue
		}
		k := key{m.Role, r.Environment}
		nodes, tracked := h.bad[k]
		if !tracked {
			continue
		}
		was := len(nodes) > 0
		if m.Bad {
			nodes[r.Node] = m.Change
		} else {
			delete(nodes, r.Node)
		}
		switch now := len(nodes) > 0; {
		case now && !was:
			h.log.Warn("service degraded: a bad change reached it", "service", k.service, "environment", k.environment,
				"change", m.Change, "node", r.Node)
		case !now && was:
			h.log.Info("service recovered: a good change reached every bad node", "service", k.service,
				"environment", k.environment, "change", m.Change, "node", r.Node)
		}
	}
}

// Degraded tells whether the service in the environment carries a bad change.
func (h *health) Degraded(k key) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.bad[k]) > 0
}

// State is one service's health for /state.
type State struct {
	Service     string   `json:"service"`
	Environment string   `json:"environment"`
	Degraded    bool     `json:"degraded"`
	BadNodes    int      `json:"bad_nodes"`
	Changes     []string `json:"bad_changes,omitempty"`
}

// Snapshot lists every service's state, sorted.
func (h *health) Snapshot() []State {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []State
	for k, nodes := range h.bad {
		st := State{Service: k.service, Environment: k.environment, Degraded: len(nodes) > 0, BadNodes: len(nodes)}
		for _, c := range nodes {
			if !slices.Contains(st.Changes, c) {
				st.Changes = append(st.Changes, c)
			}
		}
		slices.Sort(st.Changes)
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b State) int {
		return strings.Compare(a.Service+"\x00"+a.Environment, b.Service+"\x00"+b.Environment)
	})
	return out
}

// traffic makes the synthetic requests.
type traffic struct {
	health   *health
	keys     []key
	rps      float64
	normal   float64
	degraded float64
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	rng      *rand.Rand
	carry    map[key]float64
}

const tick = 100 * time.Millisecond

var codes = []string{"200", "404", "500", "502", "503"}

func newTraffic(reg prometheus.Registerer, h *health, c *config) *traffic {
	t := &traffic{
		health: h, rps: c.rps, normal: c.normal, degraded: c.degraded,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "HTTP requests served, by status code.",
		}, []string{"service", "environment", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_request_duration_seconds", Help: "HTTP request latency.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"service", "environment"}),
		rng:   rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1)),
		carry: map[key]float64{},
	}
	reg.MustRegister(t.requests, t.duration)
	for _, s := range c.services {
		for _, e := range c.environments {
			k := key{s, e}
			t.keys = append(t.keys, k)
			for _, code := range codes { // every series from the start, at 0
				t.requests.WithLabelValues(s, e, code)
			}
			t.duration.WithLabelValues(s, e)
		}
	}
	return t
}

func (t *traffic) run(ctx context.Context) {
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			t.step(tick.Seconds())
		}
	}
}

// step makes the requests of secs seconds for every service.
func (t *traffic) step(secs float64) {
	for _, k := range t.keys {
		t.carry[k] += t.rps * secs
		n := int(t.carry[k])
		t.carry[k] -= float64(n)
		degraded := t.health.Degraded(k)
		errRate, median := t.normal, 0.04
		if degraded {
			errRate, median = t.degraded, 0.25
		}
		for range n {
			code := "200"
			switch p := t.rng.Float64(); {
			case p < errRate:
				code = codes[2+t.rng.IntN(3)]
			case p < errRate+0.01:
				code = "404"
			}
			lat := median * math.Exp(0.5*t.rng.NormFloat64())
			if code[0] == '5' && degraded {
				lat *= 4 // timeouts behind the errors
			}
			t.requests.WithLabelValues(k.service, k.environment, code).Inc()
			t.duration.WithLabelValues(k.service, k.environment).Observe(lat)
		}
	}
}

// consumer reads the exchange with an exclusive, auto-delete, server-named
// queue, reconnecting with capped backoff.
type consumer struct {
	url, exchange string
	health        *health
	log           *slog.Logger
	ready         atomic.Bool
}

func (c *consumer) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		began := time.Now()
		err := c.session(ctx)
		c.ready.Store(false)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > 5*time.Second {
			backoff = 100 * time.Millisecond
		}
		c.log.Warn("run reports consumer stopped; reconnecting", "amqp", broker.RedactURL(c.url), "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (c *consumer) session(ctx context.Context) error {
	conn, err := amqp.DialConfig(c.url, amqp.Config{
		Dial:       amqp.DefaultDial(10 * time.Second),
		Properties: amqp.Table{"connection_name": "runlens-demo-app"},
	})
	if err != nil {
		return errors.New(strings.ReplaceAll(err.Error(), c.url, broker.RedactURL(c.url)))
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.ExchangeDeclare(c.exchange, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %q: %w", c.exchange, err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fmt.Errorf("declare queue: %w", err)
	}
	if err := ch.QueueBind(q.Name, "", c.exchange, false, nil); err != nil {
		return fmt.Errorf("bind queue: %w", err)
	}
	deliveries, err := ch.ConsumeWithContext(ctx, q.Name, "", true, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	c.ready.Store(true)
	c.log.Info("consuming run reports", "exchange", c.exchange, "queue", q.Name)
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-closed:
			return fmt.Errorf("connection closed: %v", e)
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("deliveries channel closed")
			}
			r, err := report.Decode(d.Body)
			if err != nil {
				c.log.Debug("ignoring a report that does not decode", "err", err)
				continue
			}
			c.health.Observe(r)
		}
	}
}
