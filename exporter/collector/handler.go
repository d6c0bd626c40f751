package collector

import (
	"bufio"
	"compress/gzip"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// Handler serves /metrics: the registry's families (Go runtime, process,
// ingest, build info) encoded by client_golang, then the FleetWriter's. It
// always answers in the text format 0.0.4, which every Prometheus accepts,
// gzipped at the fastest level when the scraper asks for gzip: at 10,000
// nodes the body is about 7 MiB and compresses to a thirtieth, and the
// fastest level takes half the time of the default for about the same size.
func Handler(reg prometheus.Gatherer, fleet *FleetWriter, log *slog.Logger, maxInFlight int) http.Handler {
	sem := make(chan struct{}, max(maxInFlight, 1))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		default:
			http.Error(w, "Too many concurrent scrapes.", http.StatusServiceUnavailable)
			return
		}
		mfs, err := reg.Gather()
		if err != nil {
			// Gather returns what it could alongside the error; serve
			// that, as promhttp's ContinueOnError does.
			log.Error("gathering metrics", "err", err)
		}
		format := expfmt.NewFormat(expfmt.TypeTextPlain)
		w.Header().Set("Content-Type", string(format))
		out := http.ResponseWriter(w)
		var body *bufio.Writer
		if gzipAccepted(r) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Add("Vary", "Accept-Encoding")
			zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
			defer zw.Close()
			body = bufio.NewWriterSize(zw, 64<<10)
		} else {
			body = bufio.NewWriterSize(out, 64<<10)
		}
		defer body.Flush()
		enc := expfmt.NewEncoder(body, format)
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				log.Debug("writing metrics", "err", err)
				return
			}
		}
		if _, err := fleet.WriteTo(body); err != nil {
			log.Debug("writing per-node metrics", "err", err)
		}
	})
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
