package plugin

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	httptransport "github.com/go-openapi/runtime/client"
	"github.com/go-openapi/strfmt"
	amclient "github.com/prometheus/alertmanager/api/v2/client"
	"github.com/prometheus/alertmanager/api/v2/client/alert"
	"github.com/prometheus/alertmanager/api/v2/client/general"

	"github.com/runlens/runlens/pkg/fleet"
)

const (
	alertsTTL     = 15 * time.Second
	alertsTimeout = 5 * time.Second
)

// alertCache holds the firing alerts by host (node label, else instance
// without its port, else host), fetched from Alertmanager at most every
// alertsTTL.
type alertCache struct {
	api *amclient.AlertmanagerAPI
	url string // redacted, for messages
	log *slog.Logger

	fetchMu sync.Mutex // one fetch at a time

	mu      sync.Mutex
	byHost  map[string][]string
	fetched time.Time
	ver     uint64
	failing bool
}

func newAlertmanagerAPI(s Settings) (*amclient.AlertmanagerAPI, error) {
	u, err := url.Parse(s.AlertmanagerURL)
	if err != nil {
		return nil, fmt.Errorf("alertmanagerUrl: %v", err)
	}
	base := strings.TrimRight(u.Path, "/") + amclient.DefaultBasePath
	c, err := httpClient(s.alertmanagerPeer(), s.Proxy, alertsTimeout)
	if err != nil {
		return nil, err
	}
	rt := httptransport.NewWithClient(u.Host, base, []string{u.Scheme}, c)
	return amclient.New(rt, strfmt.Default), nil
}

func newAlertCache(s Settings, log *slog.Logger) (*alertCache, error) {
	api, err := newAlertmanagerAPI(s)
	if err != nil {
		return nil, err
	}
	return &alertCache{api: api, url: redactHTTP(s.AlertmanagerURL), log: log}, nil
}

// alertHost is the host an alert is about: its node label, else its
// instance label without the port, else its host label.
func alertHost(labels map[string]string) string {
	if v := labels["node"]; v != "" {
		return v
	}
	if v := labels["instance"]; v != "" {
		if h, _, err := net.SplitHostPort(v); err == nil {
			return h
		}
		return v
	}
	return labels["host"]
}

// fetch returns the firing (active, not silenced, not inhibited) alerts by
// host.
func fetchAlerts(ctx context.Context, api *amclient.AlertmanagerAPI) (map[string][]string, error) {
	ctx, cancel := context.WithTimeout(ctx, alertsTimeout)
	defer cancel()
	yes, no := true, false
	params := alert.NewGetAlertsParamsWithContext(ctx)
	params.Active, params.Silenced, params.Inhibited = &yes, &no, &no
	ok, err := api.Alert.GetAlerts(params)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, a := range ok.Payload {
		if a == nil {
			continue
		}
		host := alertHost(a.Labels)
		if host == "" {
			continue
		}
		name := a.Labels["alertname"]
		if name == "" {
			name = "alert"
		}
		out[host] = append(out[host], name)
	}
	for h, names := range out {
		sort.Strings(names)
		out[h] = slices.Compact(names)
	}
	return out, nil
}

// refresh fetches the alerts if the cache is older than alertsTTL. On error
// the previous alerts stay (and the error is logged once per outage).
func (c *alertCache) refresh(ctx context.Context) {
	c.mu.Lock()
	fresh := time.Since(c.fetched) < alertsTTL
	c.mu.Unlock()
	if fresh {
		return
	}
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	c.mu.Lock()
	fresh = time.Since(c.fetched) < alertsTTL
	c.mu.Unlock()
	if fresh {
		return
	}
	byHost, err := fetchAlerts(ctx, c.api)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fetched = time.Now()
	if err != nil {
		if !c.failing {
			c.log.Warn("cannot fetch alerts from Alertmanager; the topology shows the last alerts known", "alertmanager_url", c.url, "err", err)
		}
		c.failing = true
		return
	}
	if c.failing {
		c.log.Info("Alertmanager reachable again", "alertmanager_url", c.url)
	}
	c.failing = false
	if !equalAlerts(c.byHost, byHost) {
		c.byHost = byHost
		c.ver++
	}
}

func equalAlerts(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}

func (c *alertCache) version() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ver
}

// forNodes maps the firing alerts onto node names: an alert about a host
// matches the node of that name, FQDN or IP address.
func (c *alertCache) forNodes(ctx context.Context, nodes []fleet.Node) map[string][]string {
	c.refresh(ctx)
	c.mu.Lock()
	byHost := c.byHost
	c.mu.Unlock()
	if len(byHost) == 0 {
		return nil
	}
	out := map[string][]string{}
	for i := range nodes {
		n := &nodes[i]
		var names []string
		for _, h := range []string{n.Name, n.FQDN, n.IPAddress} {
			if h != "" {
				names = append(names, byHost[h]...)
			}
		}
		if len(names) > 0 {
			sort.Strings(names)
			out[n.Name] = slices.Compact(names)
		}
	}
	return out
}

// checkAlertmanager is the health check's probe: GET /api/v2/status.
func checkAlertmanager(ctx context.Context, s Settings) error {
	api, err := newAlertmanagerAPI(s)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, alertsTimeout)
	defer cancel()
	_, err = api.General.GetStatus(general.NewGetStatusParamsWithContext(ctx))
	return err
}
