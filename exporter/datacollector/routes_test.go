package datacollector

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/exporter-toolkit/web"
)

// TestIsPath: the path forms Automate's load balancer sends on to its data
// collector handler (a prefix match on /data-collector/v0,
// components/automate-load-balancer/habitat/config/nginx.conf, taken by the
// gateway on /api/v0/events/data-collector and everything below it,
// components/automate-gateway/gateway/server.go), the path Chef Infra
// Server's proxy rewrites to (src/nginx/habitat/config/chef_http_lb_common:
// rewrite ^ /data-collector/v0/), and erchef's ping of a root_url that ends
// in "/" (opscoderl_httpc oc_httpc_worker:combine adds none, the "/" path
// keeps its own: "…/v0//").
func TestIsPath(t *testing.T) {
	for _, p := range []string{"/data-collector/v0", "/data-collector/v0/", "/data-collector/v0//", "/data-collector/v0/organizations/acme", "/data-collector/v0/x/y"} {
		if !IsPath(p) {
			t.Errorf("IsPath(%q) = false", p)
		}
	}
	for _, p := range []string{"/", "/data-collector", "/data-collector/", "/data-collector/v1/", "/data-collector/v0x", "/metrics", "/api/v0/events/data-collector"} {
		if IsPath(p) {
			t.Errorf("IsPath(%q) = true", p)
		}
	}
}

// TestFront: in front of the exporter's web handler (with exporter-toolkit's
// real landing page, which answers 200 to any method on /), POSTs reach the
// ingest handler on every data collector path and get 404, never 200,
// anywhere else, with a warning naming the path.
func TestFront(t *testing.T) {
	env := newEnv(t, nil)
	landing, err := web.NewLandingPage(web.LandingConfig{Name: "runlens-exporter", Links: []web.LandingLinks{{Address: "/metrics", Text: "Metrics"}}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", landing)
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics")) })
	srv := httptest.NewServer(Front(env.h, mux, "", env.h.log))
	t.Cleanup(srv.Close)

	// The landing page really answers a POST with 200: the guard is needed.
	resp, err := http.Post(srv.URL+"/", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rec := httptest.NewRecorder()
	landing.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{}")))
	if rec.Code != http.StatusOK || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("landing page alone answers POST / with %d (want 200: the reason for Front), behind Front %d (want 404)", rec.Code, resp.StatusCode)
	}

	post := func(path string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(`{"message_type":"run_start","node_name":"n","start_time":"2024-05-01T10:00:00Z"}`))
		req.Header.Set("x-data-collector-token", testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, p := range []string{"/data-collector/v0", "/data-collector/v0/", "/data-collector/v0//", "/data-collector/v0/organizations/acme"} {
		if code := post(p); code != http.StatusNoContent {
			t.Errorf("POST %s: %d, want 204", p, code)
		}
	}
	for _, p := range []string{"/", "/metrics", "/data-collector", "/data-collector/v1/", "/-/healthy"} {
		if code := post(p); code != http.StatusNotFound {
			t.Errorf("POST %s: %d, want 404", p, code)
		}
	}
	if n := len(env.pub.published()); n != 4 {
		t.Errorf("published %d, want 4", n)
	}
	if logs := env.logs.String(); !strings.Contains(logs, `path="\"/\""`) || !strings.Contains(logs, "answered 404") {
		t.Errorf("the 404 was not logged with its path:\n%s", logs)
	}
	// GETs still reach the web handler.
	for path, want := range map[string]int{"/": 200, "/metrics": 200, "/data-collector/v0/": 200, "/nope": 404} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// TestFrontWithoutIngest: ingest disabled (or on its own listener), a POST
// to the data collector path is a 404 whose warning says where ingest is;
// the ingest listener itself (next nil) serves nothing but ingest.
func TestFrontWithoutIngest(t *testing.T) {
	env := newEnv(t, nil)
	guard := Front(nil, http.NotFoundHandler(), "the data collector is served on --ingest.listen-address 127.0.0.1:9866", env.h.log)
	rec := httptest.NewRecorder()
	guard.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, strings.NewReader("{}")))
	if rec.Code != http.StatusNotFound || !strings.Contains(env.logs.String(), "--ingest.listen-address 127.0.0.1:9866") {
		t.Errorf("got %d; logs:\n%s", rec.Code, env.logs)
	}
	only := Front(env.h, nil, "", env.h.log)
	for _, p := range []string{"/metrics", "/"} {
		rec := httptest.NewRecorder()
		only.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("ingest listener GET %s: %d, want 404", p, rec.Code)
		}
	}
	rec = httptest.NewRecorder()
	only.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Path, nil))
	if rec.Code != http.StatusOK {
		t.Errorf("ingest listener GET %s: %d, want 200", Path, rec.Code)
	}
}

// TestPing: erchef's data_collector:ping is a GET of <root_url>/ with
// Content-Type application/json and x-data-collector-token, and any 2xx is
// "pong" (src/oc_erchef/apps/data_collector/src/data_collector.erl,
// data_collector_http.erl request_with_caught_errors: {ok, [$2 | _], …}).
func TestPing(t *testing.T) {
	env := newEnv(t, nil)
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		for name, opts := range map[string][]reqOpt{"erchef": {withToken(testToken)}, "no token": nil} {
			rec := env.do(m, nil, opts...)
			if rec.Code/100 != 2 {
				t.Errorf("%s %s: %d, want 2xx", name, m, rec.Code)
			}
		}
		if rec := env.do(m, nil, withToken("wrong")); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d, want 401 (so /_status shows the misconfiguration)", m, rec.Code)
		}
	}
}

// TestSkippedMessages: compliance reports (Chef >= 17 posts type
// inspec_report, no message_type, to data_collector.server_url:
// lib/chef/compliance/reporter/automate.rb enriched_report) and other
// message types get 204, are counted, and are not published; runlens'
// handler payload (node_name, no message_type) is published; the
// compliance phase's metasearch gets an empty list.
func TestSkippedMessages(t *testing.T) {
	env := newEnv(t, nil)
	for body, want := range map[string]int{
		`{"type":"inspec_report","node_name":"web-1","profiles":[],"report_uuid":"r1"}`:  http.StatusNoContent,
		`{"message_type":"action","task":"update"}`:                                      http.StatusNoContent,
		`{"message_type":"node_delete"}`:                                                 http.StatusNoContent,
		`{"node_name":"web-1","status":"success","run_end_time":"2024-05-01T10:00:00Z"}`: http.StatusNoContent,
		`{"type":"other","hostname":"x"}`:                                                http.StatusBadRequest,
	} {
		if rec := env.post(body); rec.Code != want {
			t.Errorf("%s: %d, want %d", body, rec.Code, want)
		}
	}
	got := env.pub.published()
	if len(got) != 1 || !strings.Contains(string(got[0].body), `"run_end_time"`) {
		t.Errorf("published %d messages, want only the handler payload", len(got))
	}
	for typ, want := range map[string]float64{"inspec_report": 1, "action": 1, "other": 1} {
		if n := counterValue(t, env.reg, "runlens_ingest_skipped_messages_total", "type", typ); n != want {
			t.Errorf("skipped %s = %v, want %v", typ, n, want)
		}
	}
	req := httptest.NewRequest(http.MethodPost, MetasearchPath, strings.NewReader(`{"sha256": ["abc"]}`))
	withToken(testToken)(req)
	rec := httptest.NewRecorder()
	env.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"missing_sha256":[]}` {
		t.Errorf("metasearch: %d %q", rec.Code, rec.Body.String())
	}
	req = httptest.NewRequest(http.MethodPost, MetasearchPath, strings.NewReader(`{}`))
	rec = httptest.NewRecorder()
	env.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("metasearch without token: %d", rec.Code)
	}
}
