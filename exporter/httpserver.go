package main

import (
	"errors"
	"net/http"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

// httpTimeouts are the web listener's timeouts. Without them a client that
// stops reading holds its connection, and a scrape slot, for ever, and a
// client that stops sending mid-body holds the body read so far.
type httpTimeouts struct {
	read, write, idle time.Duration
}

// maxReadHeaderTimeout bounds reading a request's header, whatever
// --web.read-timeout allows for the whole request.
const maxReadHeaderTimeout = 10 * time.Second

func (t *httpTimeouts) addFlags(app *kingpin.Application) {
	app.Flag("web.read-timeout", "Time to read a whole request, body included (a POST to the data collector endpoint stalled mid-body is cut off after it).").
		Default("30s").DurationVar(&t.read)
	app.Flag("web.write-timeout", "Time to write a response; a scrape holds its slot for at most this long, however slowly the client reads. Keep it above the slowest scrape (about 6 s at 1,000,000 nodes on 2 cores) and Prometheus' scrape_timeout.").
		Default("1m").DurationVar(&t.write)
	app.Flag("web.idle-timeout", "Time a keep-alive connection may stay idle between requests; above the scrape interval, so Prometheus keeps its connection.").
		Default("2m").DurationVar(&t.idle)
}

func (t *httpTimeouts) validate() error {
	if t.read <= 0 || t.write <= 0 || t.idle <= 0 {
		return errors.New("--web.read-timeout, --web.write-timeout and --web.idle-timeout must be positive")
	}
	return nil
}

// server returns the HTTP server of every listener the exporter opens, so
// that each has the same timeouts.
func (t *httpTimeouts) server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(maxReadHeaderTimeout, t.read),
		ReadTimeout:       t.read,
		WriteTimeout:      t.write,
		IdleTimeout:       t.idle,
	}
}

// unsetIfZero maps a flag's 0 ("no argument") to broker.Topology's negative
// ("leave unset"; zero there means the default).
func unsetIfZero(v int64) int64 {
	if v == 0 {
		return -1
	}
	return v
}
