// Package datacollector is the exporter's optional HTTP ingest for stock Chef
// Infra clients: the endpoint Chef's built-in data collector posts to
// (data_collector.server_url and data_collector.token in client.rb, or
// data_collector['root_url'] on a Chef Infra Server in proxy mode), and
// runlens' own Chef handler when it reports over HTTP.
//
// Run reports still travel through RabbitMQ: the handler publishes each
// accepted body to the fanout exchange and answers 2xx only once the broker
// confirmed it, or, when the broker cannot confirm in time, once the body is
// fsynced in the on-disk Spool, which is published in order, with confirms,
// as soon as the broker is back. Chef retries a 5xx about five times over
// one to two minutes and then stops reporting for the rest of the run
// (lib/chef/http.rb retrying_http_errors, lib/chef/data_collector.rb
// send_to_data_collector), so a 503 loses the run: it is answered only when
// the spool is full (or there is none and the broker is down).
//
// Status codes, on the data collector paths (IsPath):
//
//	200 GET or HEAD (erchef's data collector ping, data_collector:ping)
//	202 stored in the spool; published when the broker is back
//	204 confirmed by the broker, or a message that is not a run (skipped)
//	400 empty body, not JSON, not a JSON object, not a Chef message
//	401 missing or wrong x-data-collector-token (one answer for both)
//	404 (Front) any other path
//	405 another method (Allow: GET, HEAD, POST)
//	413 body larger than Config.MaxBytes
//	415 a Content-Encoding other than identity
//	503 not confirmed and not spooled (spool full, or no spool; Retry-After set)
package datacollector

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/pkg/report"
)

// RequestsMetric counts the endpoint's requests by the status answered.
const RequestsMetric = "runlens_ingest_requests_total"

// TokenHeader is the request header carrying the data collector token.
const TokenHeader = "x-data-collector-token"

// SourceHeader and SourceValue mark messages published by this handler:
// headers {"x-runlens-source": "data-collector"}.
const (
	SourceHeader = "x-runlens-source"
	SourceValue  = "data-collector"
)

// DefaultTimeout is how long a request waits for the broker's confirm when
// Config.Timeout is zero; then the body goes to the spool (or 503 without).
const DefaultTimeout = 5 * time.Second

// retryAfter is the Retry-After of a 503, in seconds: long enough for the
// publisher to connect again (it redials at most once a second), short
// enough not to hold a converging node's report back for long.
const retryAfter = 5

// logEvery is the least interval between two log lines of the same kind; the
// next line says how many were suppressed in between.
const logEvery = 10 * time.Second

// Publisher publishes one message and returns once the broker confirmed it.
// *broker.Publisher satisfies it.
type Publisher interface {
	Publish(ctx context.Context, body []byte, headers amqp.Table) error
}

// Config configures the handler.
type Config struct {
	// Token is the shared secret Chef sends in x-data-collector-token
	// (data_collector.token). Required, non-empty; compared in constant time.
	Token []byte
	// Publisher publishes to the run-report exchange. Required.
	Publisher Publisher
	// MaxBytes is the body limit (the exporter's --report.max-bytes); larger
	// bodies get 413. Zero or negative means report.DefaultMaxBytes.
	MaxBytes int64
	// Timeout bounds the wait for the broker's confirm before the body goes
	// to the spool (or, without one, the answer is 503); zero or negative
	// means DefaultTimeout.
	Timeout time.Duration
	// Spool, if not nil, stores what the broker did not confirm; Run
	// publishes it. Without a spool a broker outage answers 503.
	Spool *Spool
	// Strip reduces bodies to what runlens and the fanout's other consumers
	// need before they are published (see Strip).
	Strip bool
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer, if not nil, gets the runlens_ingest_* metrics.
	Registerer prometheus.Registerer
}

// codes are the status codes the handler answers with; the request counter
// is initialised with all of them so that rates are 0, not "no data".
var codes = []int{
	http.StatusOK,
	http.StatusAccepted,
	http.StatusNoContent,
	http.StatusBadRequest,
	http.StatusUnauthorized,
	http.StatusNotFound,
	http.StatusMethodNotAllowed,
	http.StatusRequestEntityTooLarge,
	http.StatusUnsupportedMediaType,
	http.StatusServiceUnavailable,
}

// Kinds of message that are acknowledged and not published, the `type`
// label of runlens_ingest_skipped_messages_total.
const (
	skipCompliance = "inspec_report" // Chef >= 17 compliance phase reports
	skipAction     = "action"        // Chef Infra Server object changes (erchef)
	skipOther      = "other"         // any other message_type
)

// Handler serves the data collector paths; see the package comment. Mount it
// with Front.
type Handler struct {
	tokenSum  [sha256.Size]byte
	pub       Publisher
	maxBytes  int64
	timeout   time.Duration
	spool     *Spool
	strip     bool
	log       *slog.Logger
	limiter   *logLimiter
	unhealthy atomic.Bool // the last publish failed

	requests       map[int]prometheus.Counter
	skipped        *prometheus.CounterVec
	spoolWrites    prometheus.Counter
	spoolPublishes prometheus.Counter
	strippedBytes  prometheus.Counter

	// backlog serialises the choice between publishing at once and
	// spooling, so that nothing overtakes a message already spooled.
	backlog sync.Mutex
}

// New returns the handler.
func New(cfg Config) (*Handler, error) {
	if err := checkToken(cfg.Token); err != nil {
		return nil, fmt.Errorf("datacollector: %w", err)
	}
	if cfg.Publisher == nil {
		return nil, errors.New("datacollector: no Publisher")
	}
	h := &Handler{
		// Comparing SHA-256 digests keeps the comparison constant-time
		// whatever the length of the token sent: subtle.ConstantTimeCompare
		// alone returns early on a length mismatch, which leaks the length.
		tokenSum: sha256.Sum256(cfg.Token),
		pub:      cfg.Publisher,
		maxBytes: cfg.MaxBytes,
		timeout:  cfg.Timeout,
		spool:    cfg.Spool,
		strip:    cfg.Strip,
		log:      cfg.Logger,
		limiter:  newLogLimiter(logEvery, time.Now),
	}
	if h.maxBytes <= 0 {
		h.maxBytes = report.DefaultMaxBytes
	}
	if h.timeout <= 0 {
		h.timeout = DefaultTimeout
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.log = h.log.With("component", "data-collector")
	if err := h.metrics(cfg.Registerer); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *Handler) metrics(reg prometheus.Registerer) error {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: RequestsMetric,
		Help: "Requests to the Chef data collector HTTP ingest (" + Path + "), by HTTP status code answered.",
	}, []string{"code"})
	h.requests = make(map[int]prometheus.Counter, len(codes))
	for _, c := range codes {
		h.requests[c] = vec.WithLabelValues(strconv.Itoa(c))
	}
	h.skipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "runlens_ingest_skipped_messages_total",
		Help: "Data collector messages acknowledged and not published because they describe no run, by type (inspec_report: Chef compliance reports; action: Chef Infra Server object changes; other).",
	}, []string{"type"})
	for _, t := range []string{skipCompliance, skipAction, skipOther} {
		h.skipped.WithLabelValues(t)
	}
	h.spoolWrites = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "runlens_ingest_spool_writes_total",
		Help: "Messages the broker did not confirm in time, written (fsynced) to the ingest spool and answered 202.",
	})
	h.spoolPublishes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "runlens_ingest_spool_publishes_total",
		Help: "Spooled messages published to the broker (confirmed) and removed from the spool.",
	})
	h.strippedBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "runlens_ingest_stripped_bytes_total",
		Help: "Bytes removed from data collector bodies by --ingest.strip-bodies before publishing.",
	})
	cs := []prometheus.Collector{vec, h.skipped, h.spoolWrites, h.spoolPublishes, h.strippedBytes}
	if sp := h.spool; sp != nil {
		cs = append(cs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "runlens_ingest_spool_messages",
				Help: "Accepted data collector messages waiting in the ingest spool for the broker.",
			}, func() float64 { return float64(sp.Len()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "runlens_ingest_spool_bytes",
				Help: "Bytes of the messages waiting in the ingest spool.",
			}, func() float64 { return float64(sp.Bytes()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "runlens_ingest_spool_max_bytes",
				Help: "The ingest spool's byte limit (--ingest.spool.max-bytes); past it requests get 503.",
			}, func() float64 { return float64(sp.MaxBytes()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "runlens_ingest_spool_oldest_message_age_seconds",
				Help: "How long the oldest message in the ingest spool has waited for the broker; 0 when the spool is empty.",
			}, func() float64 { return sp.OldestAge().Seconds() }),
		)
	}
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("datacollector: register metrics: %w", err)
		}
	}
	return nil
}

// Run publishes the spool (what a previous process left, then whatever the
// broker does not confirm in time) until ctx is done. Without a spool it
// returns at once.
func (h *Handler) Run(ctx context.Context) {
	if h.spool == nil {
		return
	}
	if n := h.spool.Len(); n > 0 {
		h.log.Info("publishing the messages a previous run left in the spool", "messages", n, "dir", h.spool.Dir())
	}
	h.spool.Drain(ctx, h.pub, amqp.Table{SourceHeader: SourceValue}, h.timeout, h.log,
		func(spoolEntry) { h.spoolPublishes.Inc() })
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == MetasearchPath && r.Method == http.MethodPost:
		h.metasearch(w, r)
	case r.URL.Path == MetasearchPath:
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, http.StatusMethodNotAllowed, "only POST is allowed")
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		h.ping(w, r)
	case r.Method == http.MethodPost:
		h.post(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		h.fail(w, http.StatusMethodNotAllowed, "only GET, HEAD and POST are allowed")
	}
}

// ping answers erchef's data collector health check: a GET of
// <root_url>/ with x-data-collector-token and no body, where any 2xx is
// "pong" and anything else makes erchef's /_status answer 500 for the whole
// server (chef/chef-server src/oc_erchef/apps/data_collector/src/
// data_collector.erl ping/0, data_collector_http.erl). A request that sends
// a token must send the right one, so a wrong data_collector token shows in
// /_status; one without (a load balancer's health check) gets 200.
func (h *Handler) ping(w http.ResponseWriter, r *http.Request) {
	if len(r.Header.Values(TokenHeader)) > 0 && !h.authorized(r) {
		h.unauthorized(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	h.requests[http.StatusOK].Inc()
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	}
}

// metasearch answers the compliance phase's question which profiles the
// server lacks with "none": runlens skips compliance reports, so Chef may as
// well leave the profiles' metadata out of them
// (lib/chef/compliance/reporter/automate.rb strip_profiles_meta).
func (h *Handler) metasearch(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) {
		h.unauthorized(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	h.requests[http.StatusOK].Inc()
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(`{"missing_sha256":[]}` + "\n"))
}

func (h *Handler) unauthorized(w http.ResponseWriter, r *http.Request) {
	if ok, n := h.limiter.allow("unauthorized"); ok {
		h.log.Warn("rejected a request without the right "+TokenHeader+
			"; check data_collector.token in the client's client.rb",
			"remote", r.RemoteAddr, "suppressed", n)
	}
	h.fail(w, http.StatusUnauthorized, "missing or wrong "+TokenHeader)
}

func (h *Handler) post(w http.ResponseWriter, r *http.Request) {
	// The token is checked before the body is read: an unauthenticated
	// client cannot make the exporter read (or answer 100-continue to)
	// megabytes. Missing and wrong tokens get the same answer.
	if !h.authorized(r) {
		h.unauthorized(w, r)
		return
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		h.fail(w, http.StatusUnsupportedMediaType, "Content-Encoding "+strconv.Quote(ce)+" is not supported")
		return
	}
	body, status, reason := h.readBody(w, r)
	if status != 0 {
		h.fail(w, status, reason)
		return
	}
	kind, reason := classify(body)
	if reason != "" {
		if ok, n := h.limiter.allow("bad request"); ok {
			h.log.Warn("rejected a data collector request", "reason", reason, "remote", r.RemoteAddr, "suppressed", n)
		}
		h.fail(w, http.StatusBadRequest, reason)
		return
	}
	if kind.skip != "" {
		// Chef (and Automate setups) send more than runs to this
		// endpoint: compliance reports (type inspec_report, Chef >= 17),
		// action messages for every Chef Server object change,
		// node_delete… They describe no run, so the exporter's decoder
		// would reject them, and publishing them would only fill the
		// dead-letter queue. They are acknowledged (Chef must not retry
		// them), counted and dropped here.
		h.skipped.WithLabelValues(kind.skip).Inc()
		h.log.Debug("skipped a data collector message that is not a run",
			"type", truncate(kind.name, 64), "remote", r.RemoteAddr)
		h.reply(w, http.StatusNoContent)
		return
	}
	if h.strip {
		if stripped, err := Strip(body, kind.name); err == nil {
			h.strippedBytes.Add(float64(max(len(body)-len(stripped), 0)))
			body = stripped
		}
	}
	h.store(w, r, body)
}

// store publishes body, or spools it, and answers.
func (h *Handler) store(w http.ResponseWriter, r *http.Request, body []byte) {
	if h.spool != nil {
		h.backlog.Lock()
		waiting := h.spool.Len() > 0
		if waiting {
			// Messages wait for the broker: this one goes behind them,
			// so the spool drains in the order the messages came.
			err := h.spool.Put(body)
			h.backlog.Unlock()
			h.spooled(w, r, err, nil)
			return
		}
		h.backlog.Unlock()
	}
	// The request's context: a client that gives up cancels the wait.
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	err := h.pub.Publish(ctx, body, amqp.Table{SourceHeader: SourceValue})
	if err == nil {
		if h.unhealthy.CompareAndSwap(true, false) {
			h.log.Info("publishing data collector messages to the broker again")
		}
		h.reply(w, http.StatusNoContent)
		return
	}
	if r.Context().Err() != nil {
		// The client hung up: nobody reads the answer, and the broker may
		// well be fine. Chef sends the message again.
		h.log.Debug("client went away before the broker confirmed its message", "remote", r.RemoteAddr, "err", err)
		h.fail(w, http.StatusServiceUnavailable, "the client went away")
		return
	}
	h.unhealthy.Store(true)
	if h.spool == nil {
		h.publishFailed(err, "answered 503 so the client retries")
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		h.fail(w, http.StatusServiceUnavailable, "the message could not be stored; retry later")
		return
	}
	h.spooled(w, r, h.spool.Put(body), err)
}

// spooled answers a message sent to the spool: 202 once it is durable, 503
// when the spool refused it.
func (h *Handler) spooled(w http.ResponseWriter, r *http.Request, err, publishErr error) {
	if err == nil {
		h.spoolWrites.Inc()
		if publishErr != nil {
			h.publishFailed(publishErr, "spooled it; it is published when the broker is back")
		}
		h.reply(w, http.StatusAccepted)
		return
	}
	if ok, n := h.limiter.allow("spool"); ok {
		h.log.Error("could not spool a data collector message; answered 503", "err", err,
			"spool_bytes", h.spool.Bytes(), "spool_max_bytes", h.spool.MaxBytes(), "remote", r.RemoteAddr, "suppressed", n)
	}
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	h.fail(w, http.StatusServiceUnavailable, "the message could not be stored; retry later")
}

// messageKind is what classify found a body to be.
type messageKind struct {
	name string // message_type, "inspec_report" or "chef_handler"
	skip string // a skipped-message type label; "" to publish
}

// classify checks that body is a JSON object that Chef sends to a data
// collector and says what it is, or gives a short reason for a 400:
// run_start and run_converge (lib/chef/data_collector/run_*_message.rb) and
// runlens' handler payload (node_name, no message_type) are published; a
// compliance report (type inspec_report and no message_type,
// lib/chef/compliance/reporter/automate.rb enriched_report) and any other
// message_type are skipped.
func classify(body []byte) (messageKind, string) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return messageKind{}, "empty body"
	}
	if trimmed[0] != '{' {
		if json.Valid(trimmed) {
			return messageKind{}, "not a JSON object"
		}
		return messageKind{}, "invalid JSON"
	}
	var env struct {
		MessageType json.RawMessage `json:"message_type"`
		Type        json.RawMessage `json:"type"`
		NodeName    json.RawMessage `json:"node_name"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			return messageKind{}, fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, se.Error())
		}
		return messageKind{}, "invalid JSON"
	}
	if len(env.MessageType) == 0 || string(env.MessageType) == "null" {
		var typ string
		switch {
		case json.Unmarshal(env.Type, &typ) == nil && typ == skipCompliance:
			return messageKind{name: typ, skip: skipCompliance}, ""
		case len(env.NodeName) > 0 && string(env.NodeName) != "null":
			return messageKind{name: string(report.FormatChefHandler)}, ""
		}
		return messageKind{}, "no message_type: not a Chef data collector message"
	}
	var mt string
	if err := json.Unmarshal(env.MessageType, &mt); err != nil {
		return messageKind{}, "message_type is not a string"
	}
	switch mt {
	case "run_start", "run_converge":
		return messageKind{name: mt}, ""
	case skipAction:
		return messageKind{name: mt, skip: skipAction}, ""
	}
	return messageKind{name: mt, skip: skipOther}, ""
}

// authorized compares the token sent with the configured one in constant
// time (digests of equal length, whatever was sent).
func (h *Handler) authorized(r *http.Request) bool {
	vals := r.Header.Values(TokenHeader)
	if len(vals) != 1 || vals[0] == "" {
		return false
	}
	sum := sha256.Sum256([]byte(vals[0]))
	return subtle.ConstantTimeCompare(sum[:], h.tokenSum[:]) == 1
}

// readBody reads at most maxBytes; status is 0 on success.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) (body []byte, status int, reason string) {
	tooLarge := fmt.Sprintf("body larger than %d bytes", h.maxBytes)
	if r.ContentLength > h.maxBytes {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	rd := http.MaxBytesReader(w, r.Body, h.maxBytes)
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := buf.ReadFrom(rd); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, http.StatusRequestEntityTooLarge, tooLarge
		}
		return nil, http.StatusBadRequest, "cannot read the request body"
	}
	return buf.Bytes(), 0, ""
}

func (h *Handler) publishFailed(err error, what string) {
	reason := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		reason = fmt.Sprintf("the broker did not confirm within %s: %v", h.timeout, err)
	}
	// Errors from pkg/broker carry the AMQP URL redacted, never a password;
	// nothing from the request (token, body) is logged.
	if ok, n := h.limiter.allow("publish"); ok {
		h.log.Warn("could not publish a data collector message; "+what, "err", reason, "suppressed", n)
	}
}

func (h *Handler) count(code int) {
	if c, ok := h.requests[code]; ok {
		c.Inc()
	}
}

func (h *Handler) reply(w http.ResponseWriter, code int) {
	h.count(code)
	w.WriteHeader(code)
}

func (h *Handler) fail(w http.ResponseWriter, code int, reason string) {
	h.count(code)
	http.Error(w, reason, code)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// logLimiter lets one log line of each kind through per interval and
// counts the rest.
type logLimiter struct {
	every time.Duration
	now   func() time.Time

	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

func newLogLimiter(every time.Duration, now func() time.Time) *logLimiter {
	return &logLimiter{every: every, now: now, last: map[string]time.Time{}, suppressed: map[string]int{}}
}

// allow reports whether to log a line of this kind now and how many were
// suppressed since the last one that got through.
func (l *logLimiter) allow(kind string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if last, ok := l.last[kind]; ok && now.Sub(last) < l.every {
		l.suppressed[kind]++
		return false, 0
	}
	n := l.suppressed[kind]
	l.last[kind], l.suppressed[kind] = now, 0
	return true, n
}
