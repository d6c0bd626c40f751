package datacollector

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Path is where Chef's data collector posts by default
// (data_collector.server_url = https://host:9865/data-collector/v0/).
const Path = "/data-collector/v0/"

// pathRoot is the data collector's path without the trailing slash.
const pathRoot = "/data-collector/v0"

// MetasearchPath is where Chef's compliance phase asks which profiles the
// server lacks, on the host of data_collector.server_url, before it sends a
// compliance report (lib/chef/compliance/reporter/automate.rb
// missing_automate_profiles). Answered with an empty list so the reports
// (which runlens skips) leave their profile metadata out.
const MetasearchPath = "/compliance/profiles/metasearch"

// IsPath reports whether p is one of the data collector paths Chef Automate
// serves: /data-collector/v0, with or without the trailing slash, and
// anything below it. Automate's load balancer proxies the prefix
// /data-collector/v0 to the gateway, which handles
// /api/v0/events/data-collector and everything under
// /api/v0/events/data-collector/ alike (chef/automate
// components/automate-load-balancer/habitat/config/nginx.conf,
// components/automate-gateway/gateway/server.go). Chef Infra Server in proxy
// mode rewrites /organizations/<org>/data-collector to /data-collector/v0/
// (chef/chef-server src/nginx/habitat/config/chef_http_lb_common), and
// erchef's ping requests <root_url>/ (data_collector:ping). The raw path is
// matched, not a cleaned one: net/http's ServeMux answers a path with "//"
// (a root_url ending in "/" plus erchef's "/") with a redirect, and neither
// Chef nor erchef takes a redirect for an answer.
func IsPath(p string) bool {
	return p == pathRoot || strings.HasPrefix(p, pathRoot+"/")
}

// notFoundLogEvery bounds the warnings about POSTs to unknown paths.
const notFoundLogEvery = 10 * time.Second

// Front puts the data collector's routes in front of next, the web
// listener's own handler (metrics, health, the landing page):
//
//   - the data collector paths (IsPath) and MetasearchPath go to the
//     ingest handler h, whatever next would do with them;
//   - a request with a body (any method but GET, HEAD and OPTIONS) anywhere
//     else is answered 404 and logged as a warning naming the path, because
//     exporter-toolkit's landing page answers 200 to a POST on / and
//     promhttp to a POST on /metrics, which would make a Chef client with a
//     wrong server_url drop every report without an error (Chef logs a 404
//     at debug level only: lib/chef/data_collector.rb
//     send_to_data_collector);
//   - the rest goes to next.
//
// h may be nil (ingest disabled, or served on its own listener): the data
// collector paths are then 404 too, with a warning saying where ingest is.
// next may be nil (the ingest listener): everything but the data collector
// routes is 404.
func Front(h *Handler, next http.Handler, where string, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return &front{h: h, next: next, where: where, log: log, limiter: newLogLimiter(notFoundLogEvery, time.Now)}
}

type front struct {
	h       *Handler
	next    http.Handler
	where   string // says where ingest is when h is nil
	log     *slog.Logger
	limiter *logLimiter
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	ingestPath := IsPath(p) || p == MetasearchPath
	switch {
	case ingestPath && f.h != nil:
		f.h.ServeHTTP(w, r)
		return
	case !ingestPath && f.next != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions):
		f.next.ServeHTTP(w, r)
		return
	}
	if ok, n := f.limiter.allow("not found"); ok {
		hint := "check the client's data_collector.server_url: the data collector path is " + Path
		if ingestPath {
			hint = f.where
		}
		f.log.Warn("answered 404 to a request for an unknown path",
			"method", truncate(r.Method, 16), "path", strconv.QuoteToASCII(truncate(p, 200)),
			"remote", r.RemoteAddr, "hint", hint, "suppressed", n)
	}
	if f.h != nil {
		f.h.count(http.StatusNotFound)
	}
	http.NotFound(w, r)
}
