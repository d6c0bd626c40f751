package plugin

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/httpclient"
	"github.com/grafana/grafana-plugin-sdk-go/backend/proxy"
)

// httpPeer is how to reach one of the HTTP peers (Prometheus,
// Alertmanager): its URL, basic auth, TLS options.
type httpPeer struct {
	name           string // the URL setting's name, for messages
	url            string
	user, password string
	tls            TLSSettings
}

func (s Settings) prometheusPeer() httpPeer {
	return httpPeer{"prometheusUrl", s.PrometheusURL, s.PrometheusUser, s.PrometheusPassword, s.PrometheusTLS}
}

func (s Settings) alertmanagerPeer() httpPeer {
	return httpPeer{"alertmanagerUrl", s.AlertmanagerURL, s.AlertmanagerUser, s.AlertmanagerPassword, s.AlertmanagerTLS}
}

// httpClient is the SDK's HTTP client (backend/httpclient: its default
// middlewares, TLS from the settings, Grafana's secure socks proxy when
// enableSecureSocksProxy) for one peer, with basic auth bound to the
// peer's own scheme and host.
//
// Not the SDK's BasicAuthenticationMiddleware: it sets the credentials on
// every request that has no Authorization header, and net/http drops that
// header when it follows a redirect to another host, so the middleware
// would send them to whatever host a redirect names (issue #13).
func httpClient(p httpPeer, px *proxy.Options, timeout time.Duration) (*http.Client, error) {
	base, err := url.Parse(p.url)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", p.name, err)
	}
	timeouts := httpclient.DefaultTimeoutOptions
	timeouts.Timeout = timeout
	opts := httpclient.Options{
		Timeouts:     &timeouts,
		ProxyOptions: px,
		Middlewares:  append(httpclient.DefaultMiddlewares(), hostBasicAuth(base, p.user, p.password)),
	}
	if p.tls.IsSet() {
		opts.TLS = &httpclient.TLSOptions{CACertificate: p.tls.CACert, ClientCertificate: p.tls.ClientCert,
			ClientKey: p.tls.ClientKey, InsecureSkipVerify: p.tls.SkipVerify, ServerName: p.tls.ServerName,
			MinVersion: 0x0303} // TLS 1.2
	}
	c, err := httpclient.New(opts)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v", p.name, redactHTTP(p.url), err)
	}
	return c, nil
}

// hostBasicAuth adds basic auth to requests for base's scheme and host
// only.
func hostBasicAuth(base *url.URL, user, password string) httpclient.Middleware {
	return httpclient.NamedMiddlewareFunc("runlensHostBasicAuth", func(_ httpclient.Options, next http.RoundTripper) http.RoundTripper {
		if user == "" && password == "" {
			return next
		}
		return httpclient.RoundTripperFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Scheme == base.Scheme && r.URL.Host == base.Host {
				r = r.Clone(r.Context())
				r.SetBasicAuth(user, password)
			}
			return next.RoundTrip(r)
		})
	})
}
