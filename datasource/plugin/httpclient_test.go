package plugin

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/httpclient"
)

// authLog records, per host, the Authorization headers received.
type authLog struct {
	mu   sync.Mutex
	seen map[string][]string
}

func (l *authLog) add(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string][]string{}
	}
	l.seen[r.Host] = append(l.seen[r.Host], r.Header.Get("Authorization"))
}

func (l *authLog) get(host string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[host]
}

// Issue #13: Prometheus' and Alertmanager's credentials go to their own
// host only. A redirect from 127.0.0.1 to localhost (another host to
// net/http, which drops the Authorization header for it) reaches the
// other host without them; the SDK's own BasicAuthenticationMiddleware
// would put them back (shown here, so the test would catch a switch to
// it).
func TestBasicAuthStaysOnItsHost(t *testing.T) {
	log := &authLog{}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/query":
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"scalar","result":[0,"1"]}}`))
		default:
			_, _ = w.Write([]byte(`{"cluster":{"status":"ready","peers":[]},"config":{"original":""},"uptime":"2024-01-01T00:00:00Z",` +
				`"versionInfo":{"branch":"","buildDate":"","buildUser":"","goVersion":"","revision":"","version":"0.27"}}`))
		}
	}))
	defer other.Close()
	_, port, _ := net.SplitHostPort(other.Listener.Addr().String())
	elsewhere := "localhost:" + port
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		http.Redirect(w, r, "http://"+elsewhere+r.URL.RequestURI(), http.StatusFound)
	}))
	defer redirector.Close()
	here := redirector.Listener.Addr().String() // 127.0.0.1:…

	s := Settings{PrometheusURL: redirector.URL, PrometheusUser: "grafana", PrometheusPassword: "prom-secret",
		AlertmanagerURL: redirector.URL, AlertmanagerUser: "grafana", AlertmanagerPassword: "am-secret"}
	prom, err := newPromAPI(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prom.Query(context.Background(), "1", time.Now()); err != nil {
		t.Fatalf("query through the redirect: %v", err)
	}
	if err := checkPrometheus(context.Background(), s); err != nil {
		t.Fatalf("health probe through the redirect: %v", err)
	}
	if err := checkAlertmanager(context.Background(), s); err != nil {
		t.Fatalf("Alertmanager through the redirect: %v", err)
	}
	for _, a := range log.get(here) {
		if !strings.HasPrefix(a, "Basic ") {
			t.Errorf("the configured host got Authorization %q, want basic auth", a)
		}
	}
	if got := log.get(elsewhere); len(got) != 3 {
		t.Fatalf("the other host got %d requests, want 3", len(got))
	}
	for _, a := range log.get(elsewhere) {
		if a != "" {
			t.Errorf("the other host (%s) got Authorization %q", elsewhere, a)
		}
	}

	// The SDK's middleware, for comparison: it re-adds the header on the
	// redirected request.
	sdk, err := httpclient.New(httpclient.Options{BasicAuth: &httpclient.BasicAuthOptions{User: "grafana", Password: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := sdk.Get(redirector.URL + "/api/v1/query?query=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := log.get(elsewhere); got[len(got)-1] == "" {
		t.Error("the SDK's BasicAuthenticationMiddleware did not leak: this test's control is wrong")
	}
}

// Prometheus and Alertmanager over TLS from the settings: the CA, a client
// certificate the server requires, skip-verify.
func TestHTTPPeersTLS(t *testing.T) {
	pki := newTestPKI(t)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"scalar","result":[0,"1"]}}`))
	})
	mtls := httptest.NewUnstartedServer(ok)
	mtls.TLS = &tls.Config{Certificates: []tls.Certificate{pki.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.ca}
	mtls.StartTLS()
	defer mtls.Close()
	plain := httptest.NewTLSServer(ok) // its own self-signed certificate
	defer plain.Close()

	for _, tc := range []struct {
		name, url string
		tls       TLSSettings
		wantErr   string
	}{
		{"CA and client certificate", mtls.URL, TLSSettings{CACert: pki.caPEM, ClientCert: pki.clientCertPEM, ClientKey: pki.clientKeyPEM}, ""},
		{"no client certificate", mtls.URL, TLSSettings{CACert: pki.caPEM}, "certificate required"},
		{"no CA", mtls.URL, TLSSettings{ClientCert: pki.clientCertPEM, ClientKey: pki.clientKeyPEM}, "certificate signed by unknown authority"},
		{"skip verify", plain.URL, TLSSettings{SkipVerify: true}, ""},
		{"verify", plain.URL, TLSSettings{}, "certificate"},
	} {
		s := Settings{PrometheusURL: tc.url, PrometheusTLS: tc.tls}
		err := checkPrometheus(context.Background(), s)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.wantErr)
		}
		s = Settings{AlertmanagerURL: tc.url, AlertmanagerTLS: tc.tls}
		if _, err := newAlertmanagerAPI(s); err != nil {
			t.Errorf("%s: Alertmanager client: %v", tc.name, err)
		}
	}
}
