// Package datacollector is the exporter's optional HTTP ingest for stock Chef
// Infra clients: the endpoint Chef's built-in data collector posts to
// (data_collector.server_url and data_collector.token in client.rb).
//
// Run reports still travel through RabbitMQ: the handler publishes each
// run_start and run_converge body, unchanged, to the fanout exchange and
// answers 2xx only once the broker confirmed it. Chef treats any 2xx as
// delivered and retries otherwise, so a broker outage answers 503 (with
// Retry-After) and loses nothing; the exporter consumes the message from its
// queue like any other report.
//
// Status codes:
//
//	204 run_start/run_converge confirmed by the broker, or another message type (not published)
//	400 empty body, not JSON, not a JSON object, no message_type or a non-string one
//	401 missing or wrong x-data-collector-token (one answer for both)
//	405 not POST (Allow: POST)
//	413 body larger than Config.MaxBytes
//	415 a Content-Encoding other than identity
//	503 the broker did not confirm within Config.Timeout (Retry-After set)
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

// Path is where Chef's data collector posts
// (data_collector.server_url = https://host:9865/data-collector/v0/).
const Path = "/data-collector/v0/"

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
// Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

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
	// Timeout bounds the wait for the broker's confirm before answering
	// 503; zero or negative means DefaultTimeout.
	Timeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer, if not nil, gets runlens_ingest_requests_total{code}.
	Registerer prometheus.Registerer
}

// codes are the status codes the handler answers with; the request counter
// is initialised with all of them so that rates are 0, not "no data".
var codes = []int{
	http.StatusNoContent,
	http.StatusBadRequest,
	http.StatusUnauthorized,
	http.StatusMethodNotAllowed,
	http.StatusRequestEntityTooLarge,
	http.StatusUnsupportedMediaType,
	http.StatusServiceUnavailable,
}

type handler struct {
	tokenSum  [sha256.Size]byte
	pub       Publisher
	maxBytes  int64
	timeout   time.Duration
	log       *slog.Logger
	requests  map[int]prometheus.Counter
	limiter   *logLimiter
	unhealthy atomic.Bool // the last publish failed
}

// New returns the handler for Path. The caller mounts it (for example on the
// exporter's web listener, which adds TLS and basic auth from
// --web.config.file).
func New(cfg Config) (http.Handler, error) {
	if err := checkToken(cfg.Token); err != nil {
		return nil, fmt.Errorf("datacollector: %w", err)
	}
	if cfg.Publisher == nil {
		return nil, errors.New("datacollector: no Publisher")
	}
	h := &handler{
		// Comparing SHA-256 digests keeps the comparison constant-time
		// whatever the length of the token sent: subtle.ConstantTimeCompare
		// alone returns early on a length mismatch, which leaks the length.
		tokenSum: sha256.Sum256(cfg.Token),
		pub:      cfg.Publisher,
		maxBytes: cfg.MaxBytes,
		timeout:  cfg.Timeout,
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

	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: RequestsMetric,
		Help: "Requests to the Chef data collector HTTP ingest (" + Path + "), by HTTP status code answered.",
	}, []string{"code"})
	h.requests = make(map[int]prometheus.Counter, len(codes))
	for _, c := range codes {
		h.requests[c] = vec.WithLabelValues(strconv.Itoa(c))
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(vec); err != nil {
			return nil, fmt.Errorf("datacollector: register metrics: %w", err)
		}
	}
	return h, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, http.StatusMethodNotAllowed, "only POST is allowed")
		return
	}
	// The token is checked before the body is read: an unauthenticated
	// client cannot make the exporter read (or answer 100-continue to)
	// megabytes. Missing and wrong tokens get the same answer.
	if !h.authorized(r) {
		if ok, n := h.limiter.allow("unauthorized"); ok {
			h.log.Warn("rejected a request without the right "+TokenHeader+
				"; check data_collector.token in the client's client.rb",
				"remote", r.RemoteAddr, "suppressed", n)
		}
		h.fail(w, http.StatusUnauthorized, "missing or wrong "+TokenHeader)
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
	messageType, reason := parseMessageType(body)
	if reason != "" {
		if ok, n := h.limiter.allow("bad request"); ok {
			h.log.Warn("rejected a data collector request", "reason", reason, "remote", r.RemoteAddr, "suppressed", n)
		}
		h.fail(w, http.StatusBadRequest, reason)
		return
	}

	switch messageType {
	case "run_start", "run_converge":
	default:
		// Chef (and Automate setups) send more than runs to this endpoint:
		// action messages for every Chef Server object change, compliance
		// reports, node_delete… They describe no run, so the exporter's
		// decoder rejects them, and publishing them would only fill the
		// exporter's dead-letter queue. They are acknowledged (Chef must
		// not retry them) and dropped here.
		h.log.Debug("ignored a data collector message that is not a run",
			"message_type", truncate(messageType, 64), "remote", r.RemoteAddr)
		h.reply(w, http.StatusNoContent)
		return
	}

	// The request's context: a client that gives up cancels the wait.
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	err := h.pub.Publish(ctx, body, amqp.Table{SourceHeader: SourceValue})
	if err != nil {
		h.publishFailed(r, err)
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		h.fail(w, http.StatusServiceUnavailable, "the message could not be stored; retry later")
		return
	}
	if h.unhealthy.CompareAndSwap(true, false) {
		h.log.Info("publishing data collector messages to the broker again")
	}
	h.reply(w, http.StatusNoContent)
}

// authorized compares the token sent with the configured one in constant
// time (digests of equal length, whatever was sent).
func (h *handler) authorized(r *http.Request) bool {
	vals := r.Header.Values(TokenHeader)
	if len(vals) != 1 || vals[0] == "" {
		return false
	}
	sum := sha256.Sum256([]byte(vals[0]))
	return subtle.ConstantTimeCompare(sum[:], h.tokenSum[:]) == 1
}

// readBody reads at most maxBytes; status is 0 on success.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) (body []byte, status int, reason string) {
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

// parseMessageType checks that body is a JSON object and returns its
// message_type, or a short reason for a 400.
func parseMessageType(body []byte) (messageType, reason string) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return "", "empty body"
	}
	if trimmed[0] != '{' {
		if json.Valid(trimmed) {
			return "", "not a JSON object"
		}
		return "", "invalid JSON"
	}
	var env struct {
		MessageType json.RawMessage `json:"message_type"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			return "", fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, se.Error())
		}
		return "", "invalid JSON"
	}
	if len(env.MessageType) == 0 || string(env.MessageType) == "null" {
		return "", "no message_type: not a Chef data collector message"
	}
	if err := json.Unmarshal(env.MessageType, &messageType); err != nil {
		return "", "message_type is not a string"
	}
	return messageType, ""
}

func (h *handler) publishFailed(r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client hung up: nobody reads the answer, and the broker may
		// well be fine. Chef sends the message again.
		h.log.Debug("client went away before the broker confirmed its message", "remote", r.RemoteAddr, "err", err)
		return
	}
	h.unhealthy.Store(true)
	reason := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		reason = fmt.Sprintf("the broker did not confirm within %s: %v", h.timeout, err)
	}
	// Errors from pkg/broker carry the AMQP URL redacted, never a password;
	// nothing from the request (token, body) is logged.
	if ok, n := h.limiter.allow("publish"); ok {
		h.log.Warn("could not publish a data collector message; answered 503 so the client retries",
			"err", reason, "suppressed", n)
	}
}

func (h *handler) reply(w http.ResponseWriter, code int) {
	h.requests[code].Inc()
	w.WriteHeader(code)
}

func (h *handler) fail(w http.ResponseWriter, code int, reason string) {
	h.requests[code].Inc()
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
