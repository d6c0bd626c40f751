package collector

import (
	"bufio"
	"compress/gzip"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// HandlerOpts bound the work and the time scrapes may take.
type HandlerOpts struct {
	// MaxInFlight is how many scrapes are gathered and written at once
	// (--web.max-requests); default 4. As many more wait for a slot, in
	// order of arrival; further scrapes get 503.
	MaxInFlight int
	// WriteTimeout is the server's write timeout (--web.write-timeout). A
	// scrape gets it again, from the moment it has a slot, so time spent
	// waiting for one does not eat into its writing; a scrape therefore
	// holds a slot for at most WriteTimeout, however slowly its client reads.
	// Twice it bounds the wait for a slot. Zero: no deadline of the
	// handler's own.
	WriteTimeout time.Duration
	// Registerer, if not nil, gets runlens_scrapes_refused_total and
	// runlens_scrapes_timed_out_total.
	Registerer prometheus.Registerer
}

// Handler serves /metrics: the registry's families (Go runtime, process,
// ingest, build info) encoded by client_golang, then the FleetWriter's. It
// always answers in the text format 0.0.4, which every Prometheus accepts,
// gzipped at the fastest level when the scraper asks for gzip: at 10,000
// nodes the body is about 7 MiB and compresses to a thirtieth, and the
// fastest level takes half the time of the default for about the same size.
func Handler(reg prometheus.Gatherer, fleet *FleetWriter, log *slog.Logger, opts HandlerOpts) http.Handler {
	n := opts.MaxInFlight
	if n <= 0 {
		n = 4
	}
	h := &handler{
		reg: reg, fleet: fleet, log: log, writeTimeout: opts.WriteTimeout,
		slots: make(chan struct{}, n), waiting: make(chan struct{}, n),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "scrapes_refused_total",
			Help: "Scrapes answered 503 because --web.max-requests scrapes were running and as many waiting.",
		}),
		timedOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "scrapes_timed_out_total",
			Help: "Scrapes cut off by --web.write-timeout: the client stopped reading, or read too slowly.",
		}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(h.refused, h.timedOut)
	}
	return h
}

type handler struct {
	reg          prometheus.Gatherer
	fleet        *FleetWriter
	log          *slog.Logger
	writeTimeout time.Duration
	// slots bounds the scrapes at work (each holds a copy of the fleet's
	// samples while it writes); waiting bounds those queued for a slot.
	// Blocked senders on a channel are served in order, so a real scrape
	// queued behind clients that stalled gets the first slot they free.
	slots, waiting    chan struct{}
	refused, timedOut prometheus.Counter
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.acquire(r) {
		h.refused.Inc()
		http.Error(w, "Too many concurrent scrapes.", http.StatusServiceUnavailable)
		return
	}
	defer func() { <-h.slots }()
	if h.writeTimeout > 0 {
		// The deadline the server set when it read the request's header
		// included the wait for a slot; give the writing its full time.
		// Without support (an unusual ResponseWriter) the server's own
		// deadline still holds.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.writeTimeout))
	}
	err := h.write(w, r)
	if err == nil {
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		h.timedOut.Inc()
	}
	h.log.Debug("writing metrics", "err", err)
}

// acquire takes a scrape slot, waiting for one (bounded by the request's
// context and twice the write timeout) when all are taken and fewer than
// MaxInFlight scrapes wait already.
func (h *handler) acquire(r *http.Request) bool {
	select {
	case h.slots <- struct{}{}:
		return true
	default:
	}
	select {
	case h.waiting <- struct{}{}:
		defer func() { <-h.waiting }()
	default:
		return false
	}
	// Every scrape at work is done within the write timeout of taking its
	// slot, and at most as many wait as there are slots: a waiter has one
	// within about one write timeout. Twice that is the margin.
	var expired <-chan time.Time
	if h.writeTimeout > 0 {
		t := time.NewTimer(2 * h.writeTimeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case h.slots <- struct{}{}:
		return true
	case <-r.Context().Done():
		return false
	case <-expired:
		return false
	}
}

// write gathers and writes the whole answer, and returns the first write
// error.
func (h *handler) write(w http.ResponseWriter, r *http.Request) error {
	mfs, err := h.reg.Gather()
	if err != nil {
		// Gather returns what it could alongside the error; serve
		// that, as promhttp's ContinueOnError does.
		h.log.Error("gathering metrics", "err", err)
	}
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	w.Header().Set("Content-Type", string(format))
	var out io.Writer = w
	var zw *gzip.Writer
	if gzipAccepted(r) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Add("Vary", "Accept-Encoding")
		zw, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
		out = zw
	}
	body := bufio.NewWriterSize(out, 64<<10)
	enc := expfmt.NewEncoder(body, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	if _, err := h.fleet.WriteTo(body); err != nil {
		return err
	}
	if err := body.Flush(); err != nil {
		return err
	}
	if zw != nil {
		return zw.Close()
	}
	return nil
}

func gzipAccepted(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) == "gzip" && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}
