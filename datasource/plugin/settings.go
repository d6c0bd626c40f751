package plugin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/proxy"

	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/changeset"
	"github.com/runlens/runlens/pkg/topology"
)

// DefaultImpactQuery is the PromQL template of the impact query: the APM
// error ratio of the role's service in the node's environment.
const DefaultImpactQuery = `sum(rate(http_requests_total{code=~"5..",service="$role",environment="$environment"}[5m]))` +
	` / sum(rate(http_requests_total{service="$role",environment="$environment"}[5m]))`

// Defaults of the settings.
const (
	DefaultReplay       = 24 * time.Hour
	DefaultLiveInterval = time.Second
	DefaultImpactWindow = 15 * time.Minute
	// minLiveInterval keeps a mistyped "1ms" from turning the stream into a
	// busy loop.
	minLiveInterval = 100 * time.Millisecond
	// DefaultGroupByRoleAbove is the Node Graph panel's own node limit: a
	// by-node view of more nodes would have some hidden.
	DefaultGroupByRoleAbove = topology.NodeGraphLimit
	// DefaultHighlightScore is the impact score from which a change set's
	// nodes light up on the live topology (highlight.go), chosen by the
	// threshold sweep of TestHighlightScenarios: over 324 scenario
	// incidents, 8 lit the culprit in 311 and another set in 13; 10 lit
	// the culprit in 307, 6 in 310 with 14 others.
	DefaultHighlightScore = 8.0
)

// jsonData is the datasource's jsonData as Grafana stores it.
type jsonData struct {
	AMQPURL          string `json:"amqpUrl"`
	Exchange         string `json:"exchange"`
	Stream           string `json:"stream"`
	Replay           string `json:"replay"`
	LiveInterval     string `json:"liveInterval"`
	PrometheusURL    string `json:"prometheusUrl"`
	PrometheusUser   string `json:"prometheusUser"`
	ImpactQuery      string `json:"impactQuery"`
	ImpactWindow     string `json:"impactWindow"`
	ChangeGap        string `json:"changeGap"`
	AlertmanagerURL  string `json:"alertmanagerUrl"`
	AlertmanagerUser string `json:"alertmanagerUser"`
	Topology         string `json:"topology"`

	AMQPTLSSkipVerify bool   `json:"amqpTlsSkipVerify"`
	AMQPTLSServerName string `json:"amqpTlsServerName"`
	AMQPTLSCACert     string `json:"amqpTlsCaCert"`
	AMQPTLSClientCert string `json:"amqpTlsClientCert"`

	PrometheusTLSSkipVerify bool   `json:"prometheusTlsSkipVerify"`
	PrometheusTLSCACert     string `json:"prometheusTlsCaCert"`
	PrometheusTLSClientCert string `json:"prometheusTlsClientCert"`

	AlertmanagerTLSSkipVerify bool   `json:"alertmanagerTlsSkipVerify"`
	AlertmanagerTLSCACert     string `json:"alertmanagerTlsCaCert"`
	AlertmanagerTLSClientCert string `json:"alertmanagerTlsClientCert"`

	GroupByRoleAbove json.RawMessage `json:"groupByRoleAbove"`
	HighlightScore   json.RawMessage `json:"highlightScore"`
}

// TLSSettings are the TLS options of one connection, as set: PEM text.
type TLSSettings struct {
	CACert, ClientCert, ClientKey string
	SkipVerify                    bool
	ServerName                    string
}

// IsSet reports whether any option is.
func (t TLSSettings) IsSet() bool {
	return t.CACert != "" || t.ClientCert != "" || t.ClientKey != "" || t.SkipVerify || t.ServerName != ""
}

// Settings are the validated datasource settings. AMQPURL carries the
// password: never log it, log broker.RedactURL(AMQPURL) (Redacted()).
type Settings struct {
	UID          string
	AMQPURL      string
	Exchange     string
	Stream       string
	Replay       time.Duration
	LiveInterval time.Duration

	PrometheusURL      string
	PrometheusUser     string
	PrometheusPassword string
	ImpactQuery        string
	ImpactWindow       time.Duration
	// ChangeGap splits change sets (changeset.Options.Gap).
	ChangeGap time.Duration
	// HighlightScore is the impact score from which the nodes of a change
	// set are highlighted on the live topology; 0 turns that off (so does
	// a missing prometheusUrl).
	HighlightScore float64

	AlertmanagerURL      string
	AlertmanagerUser     string
	AlertmanagerPassword string

	AMQPTLS, PrometheusTLS, AlertmanagerTLS TLSSettings
	// AMQPTLSConfig is AMQPTLS made into a config (nil: amqp091-go's own,
	// from the URL's query parameters, for amqps without settings).
	AMQPTLSConfig *tls.Config
	// Proxy is Grafana's secure socks proxy for the HTTP clients (nil:
	// off), from enableSecureSocksProxy.
	Proxy *proxy.Options

	GroupByRoleAbove int

	Topology topology.Config
}

// RedactedAMQPURL is the broker URL safe for logs and messages.
func (s Settings) RedactedAMQPURL() string { return broker.RedactURL(s.AMQPURL) }

// ParseSettings validates Grafana's instance settings. Its errors name the
// setting at fault, say what is wrong with it, and never repeat a secret.
// ctx carries Grafana's configuration (for its secure socks proxy).
func ParseSettings(ctx context.Context, is backend.DataSourceInstanceSettings) (Settings, error) {
	var jd jsonData
	if len(is.JSONData) > 0 {
		if err := json.Unmarshal(is.JSONData, &jd); err != nil {
			return Settings{}, &SettingsError{errs: []error{fmt.Errorf("jsonData is not a valid settings object: %v", err)}}
		}
	}
	secure := is.DecryptedSecureJSONData
	s := Settings{
		UID:                  is.UID,
		Exchange:             orDefault(strings.TrimSpace(jd.Exchange), broker.DefaultExchange),
		Stream:               orDefault(strings.TrimSpace(jd.Stream), broker.DefaultStream),
		PrometheusUser:       jd.PrometheusUser,
		PrometheusPassword:   secure["prometheusPassword"],
		ImpactQuery:          orDefault(strings.TrimSpace(jd.ImpactQuery), DefaultImpactQuery),
		AlertmanagerUser:     jd.AlertmanagerUser,
		AlertmanagerPassword: secure["alertmanagerPassword"],
		AMQPTLS: TLSSettings{CACert: jd.AMQPTLSCACert, ClientCert: jd.AMQPTLSClientCert, ClientKey: secure["amqpTlsClientKey"],
			SkipVerify: jd.AMQPTLSSkipVerify, ServerName: strings.TrimSpace(jd.AMQPTLSServerName)},
		PrometheusTLS: TLSSettings{CACert: jd.PrometheusTLSCACert, ClientCert: jd.PrometheusTLSClientCert,
			ClientKey: secure["prometheusTlsClientKey"], SkipVerify: jd.PrometheusTLSSkipVerify},
		AlertmanagerTLS: TLSSettings{CACert: jd.AlertmanagerTLSCACert, ClientCert: jd.AlertmanagerTLSClientCert,
			ClientKey: secure["alertmanagerTlsClientKey"], SkipVerify: jd.AlertmanagerTLSSkipVerify},
	}
	var errs []error
	var err error
	if s.AMQPURL, err = amqpURL(jd.AMQPURL, secure["amqpPassword"]); err != nil {
		errs = append(errs, err)
	}
	if s.Replay, err = duration("replay", jd.Replay, DefaultReplay, 0); err != nil {
		errs = append(errs, err)
	}
	if s.LiveInterval, err = duration("liveInterval", jd.LiveInterval, DefaultLiveInterval, minLiveInterval); err != nil {
		errs = append(errs, err)
	}
	if s.ImpactWindow, err = duration("impactWindow", jd.ImpactWindow, DefaultImpactWindow, 0); err != nil {
		errs = append(errs, err)
	}
	if s.ChangeGap, err = duration("changeGap", jd.ChangeGap, changeset.DefaultGap, time.Minute); err != nil {
		errs = append(errs, err)
	}
	if s.PrometheusURL, err = httpURL("prometheusUrl", jd.PrometheusURL); err != nil {
		errs = append(errs, err)
	}
	if s.AlertmanagerURL, err = httpURL("alertmanagerUrl", jd.AlertmanagerURL); err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(jd.Topology) != "" {
		if s.Topology, err = topology.ParseConfig(jd.Topology); err != nil {
			errs = append(errs, err) // "topology: line N: ..."
		}
	}
	if s.GroupByRoleAbove, err = positiveInt("groupByRoleAbove", jd.GroupByRoleAbove, DefaultGroupByRoleAbove); err != nil {
		errs = append(errs, err)
	}
	if s.HighlightScore, err = score("highlightScore", jd.HighlightScore, DefaultHighlightScore); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, s.checkTLS()...)
	if s.AMQPTLS.IsSet() && strings.HasPrefix(s.AMQPURL, "amqps:") {
		if s.AMQPTLSConfig, err = tlsConfig("amqpTls", s.AMQPTLS); err != nil {
			errs = append(errs, err)
		}
	}
	if s.Proxy, err = proxyOptions(ctx, is); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return Settings{}, &SettingsError{errs: errs}
	}
	return s, nil
}

// SettingsError lists every mistake in the settings.
type SettingsError struct{ errs []error }

func (e *SettingsError) Error() string {
	msgs := make([]string, len(e.errs))
	for i, err := range e.errs {
		msgs[i] = err.Error()
	}
	return "invalid runlens datasource settings: " + strings.Join(msgs, "; ")
}

func (e *SettingsError) Unwrap() []error { return e.errs }

// checkTLS finds TLS options that the URL they belong to would ignore, and
// a client certificate without its key (or the reverse).
func (s *Settings) checkTLS() []error {
	var errs []error
	for _, c := range []struct {
		prefix, urlName, url, scheme string
		t                            TLSSettings
	}{
		{"amqpTls", "amqpUrl", s.AMQPURL, "amqps", s.AMQPTLS},
		{"prometheusTls", "prometheusUrl", s.PrometheusURL, "https", s.PrometheusTLS},
		{"alertmanagerTls", "alertmanagerUrl", s.AlertmanagerURL, "https", s.AlertmanagerTLS},
	} {
		if !c.t.IsSet() || c.url == "" {
			continue
		}
		if !strings.HasPrefix(c.url, c.scheme+":") {
			errs = append(errs, fmt.Errorf("%s options are set but %s is not an %s:// URL, so they would not be used", c.prefix, c.urlName, c.scheme))
			continue
		}
		if c.prefix != "amqpTls" { // the AMQP config is built by ParseSettings itself
			if _, err := tlsConfig(c.prefix, c.t); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// tlsConfig checks and builds a TLS configuration; its errors name the
// settings (prefix + CaCert, ClientCert, ClientKey) and never quote a key.
func tlsConfig(prefix string, t TLSSettings) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.SkipVerify, ServerName: t.ServerName} // #nosec G402 -- skip-verify is the user's explicit setting
	if strings.TrimSpace(t.CACert) != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(t.CACert)) {
			return nil, fmt.Errorf("%sCaCert holds no PEM certificate (-----BEGIN CERTIFICATE-----)", prefix)
		}
		cfg.RootCAs = pool
	}
	hasCert, hasKey := strings.TrimSpace(t.ClientCert) != "", strings.TrimSpace(t.ClientKey) != ""
	switch {
	case hasCert && !hasKey:
		return nil, fmt.Errorf("%sClientCert is set but the secure setting %sClientKey is not", prefix, prefix)
	case hasKey && !hasCert:
		return nil, fmt.Errorf("the secure setting %sClientKey is set but %sClientCert is not", prefix, prefix)
	case hasCert:
		cert, err := tls.X509KeyPair([]byte(t.ClientCert), []byte(t.ClientKey))
		if err != nil {
			// crypto/tls's messages name the problem, never the key's bytes.
			return nil, fmt.Errorf("%sClientCert and %sClientKey: %v", prefix, prefix, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// proxyOptions reads Grafana's secure socks proxy option
// (enableSecureSocksProxy) the SDK's way, and fails when the datasource
// asks for the proxy but Grafana has not enabled it, rather than connect
// directly.
func proxyOptions(ctx context.Context, is backend.DataSourceInstanceSettings) (*proxy.Options, error) {
	opts, err := is.ProxyOptionsFromContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("enableSecureSocksProxy: %v", err)
	}
	if opts == nil {
		return nil, nil
	}
	if opts.ClientCfg == nil {
		return nil, errors.New("enableSecureSocksProxy is set but Grafana's secure socks proxy is not enabled " +
			"([secure_socks_datasource_proxy] enabled = true in grafana.ini)")
	}
	return opts, nil
}

// positiveInt reads a whole number >= 1 given as a JSON number or string.
func positiveInt(name string, raw json.RawMessage, def int) (int, error) {
	text := numberText(raw)
	if text == "" || text == "null" {
		return def, nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f != math.Trunc(f) || f < 1 || f > 1e9 {
		return 0, fmt.Errorf("%s %s is not a whole number from 1 to 1000000000", name, text)
	}
	return int(f), nil
}

// score reads a number of 0 or more (a JSON number or a string holding
// one, as provisioning files may give); empty or null is def.
func score(name string, raw json.RawMessage, def float64) (float64, error) {
	text := numberText(raw)
	if text == "" || text == "null" {
		return def, nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, fmt.Errorf("%s %s is not a number of 0 or more (0 turns highlighting off)", name, text)
	}
	return f, nil
}

// numberText is a numeric setting's text: a JSON number, or a string
// holding one (provisioning YAML may quote it).
func numberText(raw json.RawMessage) string {
	return strings.TrimSpace(strings.Trim(strings.TrimSpace(string(raw)), `"`))
}

// amqpURL checks jsonData amqpUrl and puts the password from secureJsonData
// into its userinfo.
func amqpURL(raw, password string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", errors.New("amqpUrl is not set (e.g. amqp://runlens@rabbitmq:5672/, with the password in amqpPassword)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("amqpUrl %s cannot be parsed (percent-encode reserved characters in the user name)", broker.RedactURL(raw))
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return "", fmt.Errorf("amqpUrl %s: scheme must be amqp or amqps", broker.RedactURL(raw))
	}
	if u.Host == "" {
		return "", fmt.Errorf("amqpUrl %s names no host", broker.RedactURL(raw))
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return "", fmt.Errorf("amqpUrl %s holds a password: jsonData is stored in clear, so put the password in the secure setting amqpPassword and remove it from the URL", broker.RedactURL(raw))
		}
	}
	if password != "" {
		if u.User == nil || u.User.Username() == "" {
			return "", fmt.Errorf("amqpPassword is set but amqpUrl %s names no user (amqp://user@host:5672/)", broker.RedactURL(raw))
		}
		u.User = url.UserPassword(u.User.Username(), password)
	}
	return u.String(), nil
}

func httpURL(name, raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%s %q is not an http(s) URL", name, redactHTTP(raw))
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return "", fmt.Errorf("%s %s holds a password: use the user setting and the secure password setting instead", name, u.Redacted())
		}
	}
	return strings.TrimRight(u.String(), "/"), nil
}

func redactHTTP(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return broker.RedactURL(raw)
}

func duration(name, raw string, def, minimum time.Duration) (time.Duration, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return def, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a Go duration such as 24h, 90m or 1s", name, raw)
	}
	if d < 0 {
		return 0, fmt.Errorf("%s %q is negative", name, raw)
	}
	if d < minimum {
		return 0, fmt.Errorf("%s %q is below the minimum of %s", name, raw, minimum)
	}
	return d, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
