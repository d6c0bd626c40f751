package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

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

	AlertmanagerURL      string
	AlertmanagerUser     string
	AlertmanagerPassword string

	Topology topology.Config
}

// RedactedAMQPURL is the broker URL safe for logs and messages.
func (s Settings) RedactedAMQPURL() string { return broker.RedactURL(s.AMQPURL) }

// ParseSettings validates Grafana's instance settings. Its errors name the
// setting at fault and never repeat a secret.
func ParseSettings(is backend.DataSourceInstanceSettings) (Settings, error) {
	var jd jsonData
	if len(is.JSONData) > 0 {
		if err := json.Unmarshal(is.JSONData, &jd); err != nil {
			return Settings{}, fmt.Errorf("runlens datasource settings: jsonData is not a valid settings object: %v", err)
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
			errs = append(errs, fmt.Errorf("topology: %v", err))
		}
	}
	if len(errs) > 0 {
		return Settings{}, fmt.Errorf("runlens datasource settings: %w", errors.Join(errs...))
	}
	return s, nil
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
