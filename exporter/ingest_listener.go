package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"

	"github.com/runlens/runlens/exporter/datacollector"
	"github.com/runlens/runlens/pkg/broker"
)

// The ingest listener's HTTP timeouts. Chef posts one message of at most
// --report.max-bytes and waits for the answer: reading it may take a while on
// a slow link, answering takes at most the publish timeout plus a spool
// write; a connection idle for longer than Chef keeps one is closed.
const (
	ingestReadHeaderTimeout = 10 * time.Second
	ingestReadTimeout       = 2 * time.Minute
	ingestWriteTimeout      = 2 * time.Minute
	ingestIdleTimeout       = 2 * time.Minute
)

// ingestEndpoint is the Chef data collector endpoint as wired into the exporter: the
// handler, its spool drain, and its own listener when
// --ingest.listen-address is set.
type ingestEndpoint struct {
	handler *datacollector.Handler // nil when ingest is disabled
	where   string                 // for the web listener's 404 warnings
	log     *slog.Logger

	pub  *broker.Publisher
	srv  *http.Server
	wg   sync.WaitGroup
	stop context.CancelFunc
}

// startIngest sets up the data collector endpoint from the flags: nothing
// without --ingest.token-file. Serve errors of its own listener go to errc.
func startIngest(ctx context.Context, c *config, reg prometheus.Registerer, logger *slog.Logger, errc chan<- error) (*ingestEndpoint, error) {
	in := &ingestEndpoint{log: logger, where: "ingest is disabled: start the exporter with --ingest.token-file"}
	if c.ingestTokenFile == "" {
		return in, nil
	}
	token, err := datacollector.LoadToken(c.ingestTokenFile)
	if err != nil {
		return nil, err
	}
	var spool *datacollector.Spool
	if c.ingestSpoolDir != "" {
		if spool, err = datacollector.OpenSpool(c.ingestSpoolDir, int64(c.ingestSpoolMaxBytes)); err != nil {
			return nil, fmt.Errorf("--ingest.spool.dir: %w", err)
		}
	} else {
		logger.Warn("Chef data collector ingest without --ingest.spool.dir: while the broker cannot confirm, requests get 503, and Chef gives up on the run after its retries")
	}
	in.pub, err = broker.NewLazyPublisher(c.amqpURL, c.exchange, logger)
	if err != nil {
		return nil, err
	}
	in.handler, err = datacollector.New(datacollector.Config{
		Token: token, Publisher: in.pub, MaxBytes: int64(c.maxBytes), Timeout: c.ingestPublishTimeout,
		Spool: spool, Strip: c.ingestStripBodies, Logger: logger, Registerer: reg,
	})
	if err != nil {
		_ = in.pub.Close()
		return nil, err
	}
	runCtx, stop := context.WithCancel(ctx)
	in.stop = stop
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		in.handler.Run(runCtx)
	}()
	attrs := []any{"path", datacollector.Path, "strip_bodies", c.ingestStripBodies}
	if spool != nil {
		attrs = append(attrs, "spool", spool.Dir(), "spool_max_bytes", spool.MaxBytes(), "spooled", spool.Len())
	}

	if c.ingestListenAddress == "" {
		// On the web listener: basic auth from --web.config.file wraps it
		// too, and Chef sends only its token.
		if users, _ := webConfigUsers(*c.web.WebConfigFile); users > 0 {
			logger.Warn("basic_auth_users in --web.config.file also apply to the data collector endpoint, and Chef sends no basic-auth credentials: serve ingest on its own listener with --ingest.listen-address")
		}
		logger.Info("Chef data collector ingest enabled on the web listener", attrs...)
		return in, nil
	}

	in.where = "the data collector is served on --ingest.listen-address " + c.ingestListenAddress
	tlsConfig, err := ingestTLS(c)
	if err != nil {
		in.close()
		return nil, err
	}
	ln, err := net.Listen("tcp", c.ingestListenAddress)
	if err != nil {
		in.close()
		return nil, fmt.Errorf("--ingest.listen-address: %w", err)
	}
	in.srv = &http.Server{
		Handler:           datacollector.Front(in.handler, nil, "", logger),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: ingestReadHeaderTimeout,
		ReadTimeout:       ingestReadTimeout,
		WriteTimeout:      ingestWriteTimeout,
		IdleTimeout:       ingestIdleTimeout,
	}
	logger.Info("Chef data collector ingest enabled on its own listener", append(attrs, "address", ln.Addr().String(), "tls", tlsConfig != nil)...)
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		var err error
		if tlsConfig != nil {
			err = in.srv.ServeTLS(ln, "", "")
		} else {
			err = in.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			select {
			case errc <- fmt.Errorf("ingest listener: %w", err):
			default:
			}
		}
	}()
	return in, nil
}

// front wraps the web listener's handler: the data collector's routes come
// first, and no POST anywhere else gets a 200 (datacollector.Front).
func (in *ingestEndpoint) front(next http.Handler) http.Handler {
	h := in.handler
	if in.srv != nil {
		h = nil // served on its own listener
	}
	return datacollector.Front(h, next, in.where, in.log)
}

// close stops the ingest listener (letting requests in flight finish, up to
// 5 s), the spool drain and the publisher.
func (in *ingestEndpoint) close() {
	if in.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = in.srv.Shutdown(ctx)
		cancel()
	}
	if in.stop != nil {
		in.stop()
	}
	in.wg.Wait()
	if in.pub != nil {
		_ = in.pub.Close()
	}
}

// loadWebConfig reads an exporter-toolkit web configuration file as
// exporter-toolkit does (strict YAML, the same defaults, paths relative to
// the file).
func loadWebConfig(path string) (*web.Config, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := &web.Config{
		TLSConfig:  web.TLSConfig{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13},
		HTTPConfig: web.HTTPConfig{HTTP2: true},
	}
	if err := yaml.UnmarshalStrict(content, c); err != nil {
		return nil, err
	}
	c.TLSConfig.SetDirectory(filepath.Dir(path))
	return c, nil
}

func webConfigUsers(path string) (int, error) {
	if path == "" {
		return 0, nil
	}
	c, err := loadWebConfig(path)
	if err != nil {
		return 0, err
	}
	return len(c.Users), nil
}

// ingestTLS is the ingest listener's TLS: the tls_server_config of
// --ingest.web-config.file, else of --web.config.file; nil for plain HTTP.
// Basic auth never applies there (Chef authenticates with its token), so a
// dedicated file that sets basic_auth_users is an error rather than a
// silently ignored setting; those of --web.config.file are for /metrics.
// Certificate and key files are read again at each handshake
// (web.ConfigToTLSConfig), so renewed certificates are picked up.
func ingestTLS(c *config) (*tls.Config, error) {
	path, flag := c.ingestWebConfigFile, "--ingest.web-config.file"
	if path == "" {
		path, flag = *c.web.WebConfigFile, "--web.config.file"
	}
	if path == "" {
		return nil, nil
	}
	wc, err := loadWebConfig(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if flag == "--ingest.web-config.file" && len(wc.Users) > 0 {
		return nil, errors.New("--ingest.web-config.file: basic_auth_users are not supported on the ingest listener: Chef authenticates with x-data-collector-token")
	}
	if !wc.TLSConfig.IsEnabled() {
		return nil, nil
	}
	cfg, err := web.ConfigToTLSConfig(&wc.TLSConfig)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return cfg, nil
}
