package datacollector

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/internal/fixtures"
	"github.com/runlens/runlens/internal/testlog"
)

const testToken = "tok-3f9c2a7e-SECRET-d41d8cd98f00"

// fakePublisher records what it is given; err or block make it fail.
type fakePublisher struct {
	mu    sync.Mutex
	err   error
	block bool // wait for ctx to be done, then return its error
	msgs  []published
	ctxs  []context.Context
}

type published struct {
	body    []byte
	headers amqp.Table
}

func (f *fakePublisher) Publish(ctx context.Context, body []byte, headers amqp.Table) error {
	f.mu.Lock()
	f.ctxs = append(f.ctxs, ctx)
	block, err := f.block, f.err
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, published{body: bytes.Clone(body), headers: headers})
	return nil
}

func (f *fakePublisher) published() []published {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]published(nil), f.msgs...)
}

func (f *fakePublisher) set(err error, block bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err, f.block = err, block
}

type testEnv struct {
	h    *Handler
	pub  *fakePublisher
	logs *testlog.Buffer
	reg  *prometheus.Registry
}

func newEnv(t *testing.T, mod func(*Config)) *testEnv {
	t.Helper()
	env := &testEnv{pub: &fakePublisher{}, logs: &testlog.Buffer{}, reg: prometheus.NewRegistry()}
	cfg := Config{
		Token:      []byte(testToken),
		Publisher:  env.pub,
		MaxBytes:   1 << 20,
		Timeout:    2 * time.Second,
		Logger:     slog.New(slog.NewTextHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: env.reg,
	}
	if mod != nil {
		mod(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	env.h = h
	return env
}

type reqOpt func(*http.Request)

func withToken(tok string) reqOpt {
	return func(r *http.Request) { r.Header.Set("X-Data-Collector-Token", tok) }
}

func (e *testEnv) do(method string, body io.Reader, opts ...reqOpt) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, Path, body)
	req.Header.Set("Content-Type", "application/json")
	for _, o := range opts {
		o(req)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// post sends body with the right token.
func (e *testEnv) post(body string, opts ...reqOpt) *httptest.ResponseRecorder {
	return e.do(http.MethodPost, strings.NewReader(body), append([]reqOpt{withToken(testToken)}, opts...)...)
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(fixtures.Dir(t, "chef", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPublishesRunsByteForByte(t *testing.T) {
	env := newEnv(t, nil)
	var bodies [][]byte
	for _, name := range []string{"01-run_start-ubuntu-success.json", "01-run_converge-ubuntu-success-92res.json"} {
		body := readFixture(t, name)
		bodies = append(bodies, body)
		rec := env.post(string(body))
		if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
			t.Fatalf("%s: got %d %q, want 204 and no body", name, rec.Code, rec.Body.String())
		}
	}
	// Whitespace around the object and unusual but valid layouts are kept
	// as sent: the exporter decodes what Chef sent, not a re-encoding.
	odd := []byte("\n  {\"message_type\" : \"run_start\", \"x\": \"\\u00e9\"}  \n")
	bodies = append(bodies, odd)
	if rec := env.post(string(odd)); rec.Code != http.StatusNoContent {
		t.Fatalf("odd layout: got %d %q", rec.Code, rec.Body.String())
	}

	got := env.pub.published()
	if len(got) != len(bodies) {
		t.Fatalf("published %d messages, want %d", len(got), len(bodies))
	}
	for i, m := range got {
		if !bytes.Equal(m.body, bodies[i]) {
			t.Errorf("message %d: published body differs from the request body (%d vs %d bytes)", i, len(m.body), len(bodies[i]))
		}
		if len(m.headers) != 1 || m.headers["x-runlens-source"] != "data-collector" {
			t.Errorf("message %d: headers %v, want exactly x-runlens-source=data-collector", i, m.headers)
		}
	}
}

func TestOtherMessageTypesAcknowledgedNotPublished(t *testing.T) {
	env := newEnv(t, nil)
	for _, mt := range []string{"action", "compliance", "node_delete", "run_end", "RUN_CONVERGE", ""} {
		rec := env.post(`{"message_type":"` + mt + `","entity_type":"node"}`)
		if rec.Code != http.StatusNoContent {
			t.Errorf("message_type %q: got %d %q, want 204", mt, rec.Code, rec.Body.String())
		}
	}
	if n := len(env.pub.published()); n != 0 {
		t.Fatalf("published %d non-run messages, want none", n)
	}
}

// TestMethodNotAllowed: GET and HEAD are erchef's ping (TestPing); POST is
// a message; every other method is 405.
func TestMethodNotAllowed(t *testing.T) {
	env := newEnv(t, nil)
	for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodPatch} {
		for _, opts := range [][]reqOpt{nil, {withToken(testToken)}} {
			rec := env.do(m, strings.NewReader(`{"message_type":"run_start"}`), opts...)
			if rec.Code != http.StatusMethodNotAllowed {
				t.Errorf("%s: got %d, want 405", m, rec.Code)
			}
			if a := rec.Header().Get("Allow"); a != "GET, HEAD, POST" {
				t.Errorf("%s: Allow %q, want GET, HEAD, POST", m, a)
			}
		}
	}
	if n := len(env.pub.published()); n != 0 {
		t.Fatalf("published %d messages", n)
	}
}

// readSpy records whether the handler read the body.
type readSpy struct {
	r    io.Reader
	read bool
}

func (s *readSpy) Read(p []byte) (int, error) { s.read = true; return s.r.Read(p) }

func TestUnauthorized(t *testing.T) {
	env := newEnv(t, nil)
	same := strings.Repeat("x", len(testToken))
	cases := map[string][]reqOpt{
		"missing":          nil,
		"empty":            {withToken("")},
		"wrong same size":  {withToken(same)},
		"prefix":           {withToken(testToken[:len(testToken)-1])},
		"longer":           {withToken(testToken + "x")},
		"other case":       {withToken(strings.ToUpper(testToken))},
		"wrong header":     {func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+testToken) }},
		"sent twice":       {func(r *http.Request) { r.Header["X-Data-Collector-Token"] = []string{testToken, testToken} }},
		"wrong then right": {func(r *http.Request) { r.Header["X-Data-Collector-Token"] = []string{"nope", testToken} }},
	}
	var first string
	for name, opts := range cases {
		spy := &readSpy{r: strings.NewReader(`{"message_type":"run_converge"}`)}
		rec := env.do(http.MethodPost, spy, opts...)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s: got %d, want 401", name, rec.Code)
		}
		if spy.read {
			t.Errorf("%s: the body was read before the token was checked", name)
		}
		if first == "" {
			first = rec.Body.String()
		} else if rec.Body.String() != first {
			t.Errorf("%s: answer %q differs from %q: missing and wrong tokens must look alike", name, rec.Body.String(), first)
		}
	}
	if n := len(env.pub.published()); n != 0 {
		t.Fatalf("published %d unauthenticated messages", n)
	}
	// Sanity: the same request with the token passes.
	if rec := env.post(`{"message_type":"run_converge"}`); rec.Code != http.StatusNoContent {
		t.Fatalf("right token: got %d %q", rec.Code, rec.Body.String())
	}
}

func TestTooLarge(t *testing.T) {
	const limit = 100
	env := newEnv(t, func(c *Config) { c.MaxBytes = limit })
	fit := `{"message_type":"run_start","pad":"` // padded to exactly limit bytes
	fit += strings.Repeat("a", limit-len(fit)-2) + `"}`
	if len(fit) != limit {
		t.Fatalf("test body is %d bytes", len(fit))
	}
	if rec := env.post(fit); rec.Code != http.StatusNoContent {
		t.Fatalf("body of exactly MaxBytes: got %d %q, want 204", rec.Code, rec.Body.String())
	}
	over := fit[:len(fit)-2] + `a"}`
	// Announced by Content-Length: refused without reading.
	spy := &readSpy{r: strings.NewReader(over)}
	req := httptest.NewRequest(http.MethodPost, Path, spy)
	req.ContentLength = int64(len(over))
	withToken(testToken)(req)
	rec := httptest.NewRecorder()
	env.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge || spy.read {
		t.Errorf("Content-Length over the limit: got %d (body read: %v), want 413 unread", rec.Code, spy.read)
	}
	// Chunked (length unknown): cut off by http.MaxBytesReader.
	req = httptest.NewRequest(http.MethodPost, Path, strings.NewReader(over+strings.Repeat(" ", 1<<20)))
	req.ContentLength = -1
	withToken(testToken)(req)
	rec = httptest.NewRecorder()
	env.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked body over the limit: got %d %q, want 413", rec.Code, rec.Body.String())
	}
	if n := len(env.pub.published()); n != 1 {
		t.Fatalf("published %d messages, want only the one that fits", n)
	}
}

func TestBadRequest(t *testing.T) {
	env := newEnv(t, nil)
	cases := map[string]struct{ body, reason string }{
		"empty":              {"", "empty body"},
		"blank":              {" \n\t ", "empty body"},
		"not JSON":           {"message_type=run_start", "invalid JSON"},
		"array":              {`[{"message_type":"run_start"}]`, "not a JSON object"},
		"string":             {`"run_start"`, "not a JSON object"},
		"truncated":          {`{"message_type":"run_converge","node":{`, "invalid JSON"},
		"trailing comma":     {string(readFixture(t, "05-run_start-MALFORMED-trailing-comma.json")), "invalid JSON"},
		"two objects":        {`{"message_type":"run_start"}{}`, "invalid JSON"},
		"no message_type":    {`{"hostname":"web-1","status":"success"}`, "no message_type"},
		"null message_type":  {`{"message_type":null}`, "no message_type"},
		"number message_typ": {`{"message_type":1}`, "message_type is not a string"},
		"object message_typ": {`{"message_type":{"a":"run_start"}}`, "message_type is not a string"},
	}
	for name, c := range cases {
		rec := env.post(c.body)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), c.reason) {
			t.Errorf("%s: got %d %q, want 400 with %q", name, rec.Code, rec.Body.String(), c.reason)
		}
	}
	if n := len(env.pub.published()); n != 0 {
		t.Fatalf("published %d bad messages", n)
	}
}

func TestContentEncoding(t *testing.T) {
	env := newEnv(t, nil)
	rec := env.post(`{"message_type":"run_start"}`, func(r *http.Request) { r.Header.Set("Content-Encoding", "gzip") })
	if rec.Code != http.StatusUnsupportedMediaType {
		t.Fatalf("gzip: got %d, want 415", rec.Code)
	}
	rec = env.post(`{"message_type":"run_start"}`, func(r *http.Request) { r.Header.Set("Content-Encoding", "identity") })
	if rec.Code != http.StatusNoContent {
		t.Fatalf("identity: got %d, want 204", rec.Code)
	}
}

func TestPublishFailureAnswers503AndLogsOnce(t *testing.T) {
	env := newEnv(t, nil)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	env.h.limiter.now = func() time.Time { return clock }
	env.pub.set(errors.New("broker: publisher: connect to amqp://runlens:xxxxx@mq:5672/: connection refused"), false)

	body := `{"message_type":"run_converge","node_name":"web-1"}`
	for range 5 {
		rec := env.post(body)
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("got %d, want 503", rec.Code)
		}
		if ra := rec.Header().Get("Retry-After"); ra != "5" {
			t.Fatalf("Retry-After %q, want 5", ra)
		}
	}
	if n := strings.Count(env.logs.String(), "could not publish"); n != 1 {
		t.Fatalf("logged %d publish failures for 5 requests, want 1 (rate-limited):\n%s", n, env.logs)
	}
	clock = clock.Add(logEvery)
	env.post(body)
	if logs := env.logs.String(); strings.Count(logs, "could not publish") != 2 || !strings.Contains(logs, "suppressed=4") {
		t.Fatalf("after the interval: want a second line saying 4 were suppressed:\n%s", logs)
	}

	env.pub.set(nil, false)
	if rec := env.post(body); rec.Code != http.StatusNoContent {
		t.Fatalf("after recovery: got %d", rec.Code)
	}
	env.post(body)
	if n := strings.Count(env.logs.String(), "to the broker again"); n != 1 {
		t.Fatalf("recovery logged %d times, want once:\n%s", n, env.logs)
	}
	if n := len(env.pub.published()); n != 2 {
		t.Fatalf("published %d, want 2", n)
	}
}

type ctxKey struct{}

func TestPublishTimeoutUsesRequestContext(t *testing.T) {
	const timeout = 150 * time.Millisecond
	env := newEnv(t, func(c *Config) { c.Timeout = timeout })
	env.pub.set(nil, true)

	req := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(`{"message_type":"run_start"}`))
	req = req.WithContext(context.WithValue(req.Context(), ctxKey{}, "from-request"))
	withToken(testToken)(req)
	rec := httptest.NewRecorder()
	start := time.Now()
	env.h.ServeHTTP(rec, req)
	took := time.Since(start)

	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("got %d (Retry-After %q), want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if took < timeout || took > timeout+2*time.Second {
		t.Fatalf("answered after %s, want about %s", took, timeout)
	}
	env.pub.mu.Lock()
	ctx := env.pub.ctxs[0]
	env.pub.mu.Unlock()
	if ctx.Value(ctxKey{}) != "from-request" {
		t.Error("Publish did not get the request's context")
	}
	if _, ok := ctx.Deadline(); !ok {
		t.Error("Publish's context has no deadline")
	}
	if !strings.Contains(env.logs.String(), "did not confirm within 150ms") {
		t.Errorf("the log does not say the broker timed out:\n%s", env.logs)
	}
}

func TestDefaults(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Timeout, c.MaxBytes, c.Logger, c.Registerer = 0, 0, nil, nil })
	if env.h.timeout != DefaultTimeout || env.h.maxBytes != 8<<20 || env.h.log == nil {
		t.Fatalf("defaults: timeout %s, max bytes %d", env.h.timeout, env.h.maxBytes)
	}
	if rec := env.post(`{"message_type":"run_start"}`); rec.Code != http.StatusNoContent {
		t.Fatalf("got %d", rec.Code)
	}
}

func TestClientGoneIsNotABrokerFailure(t *testing.T) {
	env := newEnv(t, nil)
	env.pub.set(nil, true)
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, Path, strings.NewReader(`{"message_type":"run_start"}`))
	withToken(testToken)(req)
	time.AfterFunc(50*time.Millisecond, cancel)
	env.h.ServeHTTP(httptest.NewRecorder(), req)
	if strings.Contains(env.logs.String(), "could not publish") {
		t.Fatalf("a client hanging up was logged as a broker failure:\n%s", env.logs)
	}
	if env.h.unhealthy.Load() {
		t.Fatal("a client hanging up marked the broker unhealthy")
	}
}

func TestTokenNeverLogged(t *testing.T) {
	const wrong = "WRONG-9a8b7c6d-not-the-token"
	env := newEnv(t, nil)
	env.pub.set(errors.New("broker down"), false)
	var answers strings.Builder
	record := func(rec *httptest.ResponseRecorder) {
		answers.WriteString(rec.Body.String())
		for k, v := range rec.Header() {
			answers.WriteString(k + strings.Join(v, ","))
		}
	}
	record(env.do(http.MethodPost, strings.NewReader(`{}`), withToken(wrong)))
	record(env.do(http.MethodGet, nil, withToken(testToken)))
	record(env.post(`{"message_type":"run_start"}`))
	record(env.post(`{"message_type":"action"}`))
	record(env.post(`not json ` + testToken))
	record(env.post(`{"message_type":"run_start"}`, func(r *http.Request) { r.Header.Set("Content-Encoding", "br") }))
	env.pub.set(nil, true)
	env.h.timeout = 20 * time.Millisecond
	record(env.post(`{"message_type":"run_converge"}`))

	logs := env.logs.String()
	if logs == "" {
		t.Fatal("nothing logged: the test would prove nothing")
	}
	for _, secret := range []string{testToken, "SECRET", wrong} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs contain %q:\n%s", secret, logs)
		}
		if strings.Contains(answers.String(), secret) {
			t.Errorf("an answer contains %q", secret)
		}
	}
}

func TestMetrics(t *testing.T) {
	env := newEnv(t, nil)
	if n := testutil.CollectAndCount(env.reg, "runlens_ingest_requests_total"); n != len(codes) {
		t.Fatalf("%d series right after New, want %d pre-initialised", n, len(codes))
	}
	env.post(`{"message_type":"run_start"}`)
	env.post(`{"message_type":"run_converge"}`)
	env.post(`{"message_type":"action"}`)
	env.post(`[]`)
	env.do(http.MethodPost, strings.NewReader(`{}`))
	env.do(http.MethodGet, nil)
	env.do(http.MethodPut, nil)
	env.post(`{"message_type":"run_start"}`, func(r *http.Request) { r.Header.Set("Content-Encoding", "gzip") })
	env.pub.set(errors.New("down"), false)
	env.post(`{"message_type":"run_start"}`)
	env.post(`{"message_type":"run_start"}`)

	want := `
# HELP runlens_ingest_requests_total Requests to the Chef data collector HTTP ingest (/data-collector/v0/), by HTTP status code answered.
# TYPE runlens_ingest_requests_total counter
runlens_ingest_requests_total{code="200"} 1
runlens_ingest_requests_total{code="202"} 0
runlens_ingest_requests_total{code="204"} 3
runlens_ingest_requests_total{code="400"} 1
runlens_ingest_requests_total{code="401"} 1
runlens_ingest_requests_total{code="404"} 0
runlens_ingest_requests_total{code="405"} 1
runlens_ingest_requests_total{code="413"} 0
runlens_ingest_requests_total{code="415"} 1
runlens_ingest_requests_total{code="503"} 2
`
	if err := testutil.GatherAndCompare(env.reg, strings.NewReader(want), "runlens_ingest_requests_total"); err != nil {
		t.Fatal(err)
	}
	if probs, err := testutil.GatherAndLint(env.reg); err != nil || len(probs) > 0 {
		t.Fatalf("lint: %v %v", probs, err)
	}

	// A second handler on the same registry is a configuration error.
	if _, err := New(Config{Token: []byte(testToken), Publisher: env.pub, Registerer: env.reg}); err == nil {
		t.Fatal("registering the metrics twice: no error")
	}
}

func TestNewValidates(t *testing.T) {
	pub := &fakePublisher{}
	cases := map[string]Config{
		"no token":         {Publisher: pub},
		"empty token":      {Token: []byte{}, Publisher: pub},
		"newline in token": {Token: []byte("SECRET-a\nb"), Publisher: pub},
		"space around":     {Token: []byte(" SECRET-a"), Publisher: pub},
		"no publisher":     {Token: []byte(testToken)},
	}
	for name, c := range cases {
		_, err := New(c)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%s: the error quotes the token: %v", name, err)
		}
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for content, want := range map[string]string{
		"SECRET-tok\n":   "SECRET-tok",
		"SECRET-tok\r\n": "SECRET-tok",
		"SECRET-tok":     "SECRET-tok",
		"SECRET-tok\n\n": "SECRET-tok",
	} {
		got, err := LoadToken(write("ok", content))
		if err != nil || string(got) != want {
			t.Errorf("%q: got %q, %v; want %q", content, got, err, want)
		}
	}
	bad := map[string]string{
		"empty":         "",
		"only newline":  "\n",
		"two lines":     "SECRET-one\nSECRET-two\n",
		"leading space": " SECRET-tok\n",
		"trailing tab":  "SECRET-tok\t\n",
		"too large":     strings.Repeat("SECRET", 1000),
	}
	for name, content := range bad {
		_, err := LoadToken(write("bad", content))
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%s: the error quotes the token: %v", name, err)
		}
	}
	if _, err := LoadToken(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := LoadToken(dir); err == nil {
		t.Error("a directory: no error")
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if c := m.GetCounter(); c != nil {
						return c.GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
			if label == "" {
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}
