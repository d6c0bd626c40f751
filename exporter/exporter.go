package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/runlens/runlens/exporter/collector"
	"github.com/runlens/runlens/exporter/datacollector"
	"github.com/runlens/runlens/exporter/ingest"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

func contextBackground() context.Context { return context.Background() }

// DefaultListenAddress is the exporter's port.
const DefaultListenAddress = ":9865"

// DefaultSpoolDir is where the data collector endpoint spools what the
// broker cannot confirm: on by default, because without a spool a broker
// outage answers Chef 503, and Chef's data collector gives up on the run
// after its retries (lib/chef/data_collector.rb). Relative to the working
// directory, as Prometheus' data/ is.
const DefaultSpoolDir = "data/ingest-spool"

type config struct {
	amqpURL, amqpPasswordFile string
	exchange, queue           string
	deadLetterExchange, dlq   string
	prefetch, deliveryLimit   int
	maxInflightBytes          int64
	historyStream             string
	historyReplay, historyAge time.Duration
	snapshotStream            string
	snapshotInterval          time.Duration
	nodeTTL                   time.Duration
	maxBytes                  int
	dedupWindow, maxTypes     int
	maxEnvs                   int
	maxNodes, maxRoles        int
	maxRoleBytes              int
	dlqMaxLength, dlqMaxBytes int64
	httpTimeouts              httpTimeouts
	maxRequests               int
	telemetryPath             string
	ingestTokenFile           string
	ingestListenAddress       string
	ingestWebConfigFile       string
	ingestSpoolDir            string
	ingestSpoolMaxBytes       units.Base2Bytes
	ingestStripBodies         bool
	ingestPublishTimeout      time.Duration
	web                       *web.FlagConfig
	log                       *promslog.Config
}

func parseFlags(args []string, stdout, stderr io.Writer) (*config, error) {
	c := &config{log: &promslog.Config{}}
	app := newApp(c)
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	// --help and --version must not os.Exit from inside a library call:
	// run() returns instead, so tests can call it.
	stopped := false
	app.Terminate(func(int) { stopped = true })
	if _, err := app.Parse(args); err != nil {
		return nil, err
	}
	if stopped {
		return nil, nil
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// newApp declares every flag of the exporter, writing into c: the one list
// that --help prints and that the README's Flags table is held to
// (readme_test.go).
func newApp(c *config) *kingpin.Application {
	app := kingpin.New("runlens-exporter", "Consumes Chef and Salt run reports from RabbitMQ and exposes per-node run metrics for Prometheus.")
	app.HelpFlag.Short('h')
	// The URL may carry a password: kingpin prints a flag's default in its
	// help, so the default has none (amqp091 then logs in as guest/guest),
	// and the value is never echoed back.
	app.Flag("amqp.url", "AMQP URL of the broker (amqp:// or amqps://; for TLS add ?cacertfile=…&certfile=…&keyfile=… to verify the broker with a CA and present a client certificate). Also read from RUNLENS_AMQP_URL; prefer that, or --amqp.password-file, over a password on the command line.").
		Envar("RUNLENS_AMQP_URL").Default("amqp://127.0.0.1:5672/").StringVar(&c.amqpURL)
	app.Flag("amqp.password-file", "File holding the AMQP password; replaces any password in --amqp.url.").
		Envar("RUNLENS_AMQP_PASSWORD_FILE").StringVar(&c.amqpPasswordFile)
	app.Flag("amqp.exchange", "Fanout exchange the producers publish run reports to.").Default("chef_reports").StringVar(&c.exchange)
	app.Flag("amqp.queue", "Durable quorum queue the exporter consumes; replicas share it as competing consumers.").Default("runlens.exporter").StringVar(&c.queue)
	app.Flag("amqp.dead-letter-exchange", "Exchange rejected reports are dead-lettered to (default: <queue>.dlx).").StringVar(&c.deadLetterExchange)
	app.Flag("amqp.dead-letter-queue", "Queue bound to the dead-letter exchange (default: <queue>.dead).").StringVar(&c.dlq)
	app.Flag("amqp.prefetch", "Unacknowledged deliveries the broker may send ahead (basic.qos).").Default(fmt.Sprint(broker.DefaultPrefetch)).IntVar(&c.prefetch)
	app.Flag("amqp.max-inflight-bytes", "Bytes of received deliveries held before the exporter stops reading from the broker until it has handled some (the broker keeps the rest queued).").
		Default(fmt.Sprint(broker.DefaultMaxInflightBytes)).Int64Var(&c.maxInflightBytes)
	app.Flag("amqp.delivery-limit", "Deliveries after which the broker dead-letters a message that keeps failing (x-delivery-limit).").Default("20").IntVar(&c.deliveryLimit)
	app.Flag("history.stream", "Stream of every report, followed for the per-node gauges and replayed at start after the newest fleet snapshot.").Default("runlens.history").StringVar(&c.historyStream)
	app.Flag("history.replay", "How far back to replay the history stream at start when no fleet snapshot is usable; 0 disables the history (no replay, following or snapshots).").Default("24h").DurationVar(&c.historyReplay)
	app.Flag("snapshot.stream", "Stream of fleet snapshots, shared by every replica and the datasource (default: <history.stream>.snapshots).").StringVar(&c.snapshotStream)
	app.Flag("snapshot.interval", "Write a fleet snapshot this often while the history moves (and at shutdown), so a restart replays only the history after it; 0 disables snapshots.").Default("5m").DurationVar(&c.snapshotInterval)
	app.Flag("history.max-age", "Retention (x-max-age) of the history stream, used when this exporter is the first to declare it.").Default("168h").DurationVar(&c.historyAge)
	app.Flag("node.ttl", "A node not heard from for this long loses all its series; 0 keeps nodes for ever.").Default("24h").DurationVar(&c.nodeTTL)
	app.Flag("report.max-bytes", "Reports larger than this are rejected.").Default(fmt.Sprint(report.DefaultMaxBytes)).IntVar(&c.maxBytes)
	app.Flag("report.dedup-window", "How many recent report ids are remembered to drop redeliveries.").Default("100000").IntVar(&c.dedupWindow)
	app.Flag("metrics.max-resource-types", "Distinct resource_type label values; further types are counted as \"other\".").Default("100").IntVar(&c.maxTypes)
	app.Flag("metrics.max-environments", "Distinct environment label values of the aggregate series (run_duration_seconds, resource_updates_total); further environments are counted as \"other\". An environment's series go when its last node expires.").
		Default(fmt.Sprint(collector.DefaultMaxEnvironments)).IntVar(&c.maxEnvs)
	app.Flag("node.max-nodes", "Nodes tracked at most; reports of further nodes are dead-lettered until tracked nodes expire.").Default("250000").IntVar(&c.maxNodes)
	app.Flag("node.max-roles", "Roles kept per node (the first in sorted order); further roles are dropped.").Default("32").IntVar(&c.maxRoles)
	app.Flag("node.max-role-bytes", "Roles longer than this are dropped from the node's identity.").Default("128").IntVar(&c.maxRoleBytes)
	app.Flag("amqp.dead-letter-max-length", "Messages the dead-letter queue holds at most (x-max-length, with x-overflow reject-publish: further rejected reports are dropped and counted); 0 sets no argument (bound it with a policy).").
		Default(fmt.Sprint(broker.DefaultDeadLetterMaxLength)).Int64Var(&c.dlqMaxLength)
	app.Flag("amqp.dead-letter-max-bytes", "Bytes of message bodies the dead-letter queue holds at most (x-max-length-bytes); 0 sets no argument.").
		Default(fmt.Sprint(broker.DefaultDeadLetterMaxBytes)).Int64Var(&c.dlqMaxBytes)
	app.Flag("web.max-requests", "Scrapes of the telemetry path served at once; as many more wait for a slot, further ones get 503.").Default("4").IntVar(&c.maxRequests)
	c.httpTimeouts.addFlags(app)
	app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&c.telemetryPath)
	app.Flag("ingest.token-file", "Enables the Chef data collector endpoint "+datacollector.Path+" (on the web listener, or on --ingest.listen-address); the file holds the token Chef sends in x-data-collector-token.").
		Envar("RUNLENS_INGEST_TOKEN_FILE").StringVar(&c.ingestTokenFile)
	app.Flag("ingest.listen-address", "Serve the data collector endpoint on this address of its own instead of the web listener, so /metrics can keep basic auth while Chef posts with its token.").StringVar(&c.ingestListenAddress)
	app.Flag("ingest.web-config.file", "exporter-toolkit web configuration (TLS only) for --ingest.listen-address; default: the tls_server_config of --web.config.file.").StringVar(&c.ingestWebConfigFile)
	app.Flag("ingest.spool.dir", "Directory where accepted data collector messages the broker cannot confirm in time are fsynced and kept until it does (answered 202); created if missing, relative to the working directory like Prometheus' data/. Empty: no spool, answer 503 instead (Chef then drops the run after its retries).").Default(DefaultSpoolDir).StringVar(&c.ingestSpoolDir)
	app.Flag("ingest.spool.max-bytes", "Bytes of messages the ingest spool holds at most; past it requests get 503.").Default("1GiB").BytesVar(&c.ingestSpoolMaxBytes)
	app.Flag("ingest.strip-bodies", "Strip data collector messages to what runlens and a node inventory need (node attributes, resource states and diffs removed; errors capped and scrubbed) before publishing.").BoolVar(&c.ingestStripBodies)
	app.Flag("ingest.publish-timeout", "How long an ingest request waits for the broker's confirm before the message goes to the spool (or 503 without one).").Default(datacollector.DefaultTimeout.String()).DurationVar(&c.ingestPublishTimeout)
	c.web = kingpinflag.AddFlags(app, DefaultListenAddress)
	promslogflag.AddFlags(app, c.log)
	app.Version(versionString())
	return app
}

// check validates the parsed flags and reads the AMQP password file.
func (c *config) check() error {
	if c.ingestSpoolMaxBytes <= 0 || c.ingestPublishTimeout <= 0 {
		return errors.New("--ingest.spool.max-bytes and --ingest.publish-timeout must be positive")
	}
	if c.prefetch < 1 || c.maxInflightBytes < 1 || c.maxBytes < 1 || c.dedupWindow < 1 || c.maxTypes < 1 {
		return errors.New("--amqp.prefetch, --amqp.max-inflight-bytes, --report.max-bytes, --report.dedup-window and --metrics.max-resource-types must be positive")
	}
	if c.maxEnvs < 1 || c.maxNodes < 1 || c.maxRoles < 1 || c.maxRoleBytes < 1 || c.maxRequests < 1 || c.dlqMaxLength < 0 || c.dlqMaxBytes < 0 {
		return errors.New("--metrics.max-environments, --node.max-nodes, --node.max-roles, --node.max-role-bytes and --web.max-requests must be positive, --amqp.dead-letter-max-length and --amqp.dead-letter-max-bytes at least 0")
	}
	if err := c.httpTimeouts.validate(); err != nil {
		return err
	}
	if c.amqpPasswordFile != "" {
		u, err := withPasswordFile(c.amqpURL, c.amqpPasswordFile)
		if err != nil {
			return err
		}
		c.amqpURL = u
	}
	return nil
}

func versionString() string {
	v, r := collector.BuildInfo()
	return fmt.Sprintf("runlens-exporter %s (revision %s)", v, r)
}

// withPasswordFile puts the password read from file into the URL's userinfo.
func withPasswordFile(raw, file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--amqp.password-file: %w", err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("--amqp.url is not a URL: %s", broker.RedactURL(raw))
	}
	user := "guest"
	if u.User != nil {
		user = u.User.Username()
	}
	u.User = url.UserPassword(user, strings.TrimRight(string(b), "\r\n"))
	return u.String(), nil
}

// run is the whole program; main only wires signals and the exit code, so
// tests can run the exporter in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "runlens-exporter:", err)
		return 2
	}
	if c == nil { // --help or --version
		return 0
	}
	c.log.Writer = stderr
	logger := promslog.New(c.log)
	if err := serve(ctx, c, logger); err != nil {
		logger.Error("exiting", "err", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, c *config, logger *slog.Logger) error {
	logger.Info("starting runlens-exporter", "version", versionString(), "amqp", broker.RedactURL(c.amqpURL),
		"exchange", c.exchange, "queue", c.queue)

	state := fleet.New(fleet.Options{DedupWindow: c.dedupWindow, MaxNodes: c.maxNodes, MaxRoles: c.maxRoles, MaxRoleBytes: c.maxRoleBytes})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	collector.RegisterBuildInfo(reg)
	metrics := collector.NewIngestMetrics(reg, c.maxTypes, c.maxEnvs)
	collector.RegisterFleetBounds(reg, state.Refusals)
	pipeline := ingest.New(report.Decoder{MaxBytes: c.maxBytes}, state, metrics, logger, nil)

	topo := broker.Topology{
		Exchange: c.exchange, Queue: c.queue,
		DeadLetterExchange: c.deadLetterExchange, DeadLetterQueue: c.dlq,
		DeliveryLimit:       c.deliveryLimit,
		DeadLetterMaxLength: unsetIfZero(c.dlqMaxLength), DeadLetterMaxBytes: unsetIfZero(c.dlqMaxBytes),
	}
	consumer := broker.NewConsumer(broker.ConsumerConfig{
		URL: c.amqpURL, Topology: topo, Prefetch: c.prefetch,
		ConnectionName: "runlens-exporter", Logger: logger, Prepare: pipeline.Prepare,
		// At most one report's worth of bytes is decoded at a time.
		PrepareBytes: c.maxBytes, MaxInflightBytes: c.maxInflightBytes,
	}, pipeline.Handle)
	collector.RegisterAMQPUp(reg, consumer.Connected)
	collector.RegisterDeadLettersDropped(reg, consumer.DeadLettersDropped)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)

	restored := func() bool { return true }
	if c.historyReplay > 0 {
		r := newRestorer(c, pipeline, state, logger)
		restored = r.Restored
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.run(ctx)
		}()
	}
	fleetWriter := collector.NewFleetWriter(state)
	fleetWriter.Gate(restored)

	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := consumer.Run(ctx); err != nil {
			errc <- fmt.Errorf("consumer: %w", err)
		}
	}()

	wg.Add(1)
	go func() {
		defer wg.Done()
		limitMemory(ctx, c, state.Len, logger)
	}()

	if c.nodeTTL > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			expireLoop(ctx, state, metrics, c.nodeTTL, logger)
		}()
	}

	mux := http.NewServeMux()
	mux.Handle(c.telemetryPath, collector.Handler(reg, fleetWriter, logger, collector.HandlerOpts{
		MaxInFlight: c.maxRequests, WriteTimeout: c.httpTimeouts.write, Registerer: reg,
	}))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "Healthy.") })
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case !consumer.Consuming():
			http.Error(w, "Not ready: not consuming from the AMQP queue.", http.StatusServiceUnavailable)
		case !restored():
			http.Error(w, "Not ready: restoring the fleet state (snapshot, then the history stream after it).", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "Ready.")
		}
	})
	if c.telemetryPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "runlens-exporter",
			Description: "Configuration-management run reports from RabbitMQ, as Prometheus metrics",
			Version:     versionString(),
			Links: []web.LandingLinks{
				{Address: c.telemetryPath, Text: "Metrics"},
				{Address: "/-/healthy", Text: "Health"},
				{Address: "/-/ready", Text: "Readiness"},
			},
		})
		if err != nil {
			return err
		}
		mux.Handle("/", landing)
	}
	dcIngest, err := startIngest(ctx, c, reg, logger, errc)
	if err != nil {
		return err
	}
	defer dcIngest.close()
	srv := c.httpTimeouts.server(dcIngest.front(mux))
	go func() {
		if err := web.ListenAndServe(srv, c.web, logger); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("web: %w", err)
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down: finishing in-flight reports")
	case runErr = <-errc:
	}
	// Stop consuming first, so every report received is applied and acked
	// while /metrics still answers, then close the listener.
	cancel()
	wg.Wait()
	shutdownCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	_ = srv.Shutdown(shutdownCtx)
	logger.Info("stopped")
	return runErr
}

func expireLoop(ctx context.Context, state *fleet.State, metrics *collector.IngestMetrics, ttl time.Duration, logger *slog.Logger) {
	every := min(max(ttl/10, time.Second), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if gone := state.Expire(now, ttl); len(gone) > 0 {
				logger.Info("nodes expired", "count", len(gone), "ttl", ttl)
			}
			// Every pass, not only when nodes expired: a node that moved
			// environment can leave its old one empty too.
			if n := metrics.ForgetEnvironments(state.Environments); n > 0 {
				logger.Info("environments without nodes removed", "count", n)
			}
		}
	}
}
