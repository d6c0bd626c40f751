package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// APM metrics the deploys dashboard reads: the RED metrics of an
// instrumented service (the demo app, cmd/runlens-demo-app, exposes them).
const (
	apmRequests = "http_requests_total"
	apmDuration = "http_request_duration_seconds"
	apmSel      = `service="$service", environment="$environment"`
)

// Deploys is the runlens-deploys dashboard: a service's error rate and
// latency with the configuration changes of its role as annotations, and the
// changes ranked by how much the error rate moved after them.
//
// $service is both the APM `service` label and the configuration-management
// role whose changes are annotated: name your roles after the services they
// deploy (the demo stack does).
func Deploys() (dashboard.Dashboard, error) {
	changes := runlens("Changes", "changes")
	changes.Environment = "$environment"
	changes.Role = "$service"

	impact := runlens("A", "impact")
	impact.Environment = "$environment"

	runs := runlens("A", "runs")
	runs.Environment = "$environment"
	runs.Role = "$service"

	b := dashboard.NewDashboardBuilder("runlens / Deploys").
		Uid(DeploysUID).
		Description("Does a configuration change line up with an error spike? A service's APM panels with the runlens change annotations of its role, and the changes ranked by their impact on the error rate.").
		Tags([]string{"runlens"}).
		Refresh("30s").
		Time("now-3h", "now").
		Timezone("browser").
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Annotation(builtinAnnotations()).
		Annotation(dashboard.NewAnnotationQueryBuilder().
			Name("Configuration changes").
			Datasource(runlensDS()).
			Enable(true).
			IconColor("orange").
			Target(changes)).
		Link(dashboardLinks()).
		WithVariable(promVariable()).
		WithVariable(labelVariable("environment", "Environment", `label_values(`+apmRequests+`, environment)`)).
		WithVariable(labelVariable("service", "Service", `label_values(`+apmRequests+`{environment="$environment"}, service)`).
			Description("The APM service, and the configuration-management role whose changes are annotated."))

	b = b.
		WithPanel(timeseries.NewPanelBuilder().
			Title("Error rate: $service ($environment)").
			Description("Share of the service's requests answered with a 5xx status. Orange marks: configuration changes of role $service.").
			Datasource(promDS()).
			WithTarget(prom("A", `sum(rate(`+apmRequests+`{`+apmSel+`, code=~"5.."}[$__rate_interval])) / sum(rate(`+apmRequests+`{`+apmSel+`}[$__rate_interval]))`, "5xx share")).
			Unit("percentunit").Min(0).
			Thresholds(steps("green", 0.01, "orange", 0.05, "red")).
			ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
			FillOpacity(15).
			Legend(legend("mean", "max", "lastNotNull")).
			GridPos(gridPos(0, 0, 16, 9))).
		WithPanel(table.NewPanelBuilder().
			Title("Change impact ($environment)").
			Description("Every configuration change in $environment in the time range (any role: a database change can break the application), ranked by how much the error rate changed after it (runlens datasource, impact query).").
			Datasource(runlensDS()).
			WithTarget(impact).
			GridPos(gridPos(16, 0, 8, 18))).
		WithPanel(timeseries.NewPanelBuilder().
			Title("Latency: $service ($environment)").
			Description("Request duration percentiles of the service.").
			Datasource(promDS()).
			WithTarget(prom("A", `histogram_quantile(0.5, sum by (le) (rate(`+apmDuration+`_bucket{`+apmSel+`}[$__rate_interval])))`, "p50")).
			WithTarget(prom("B", `histogram_quantile(0.95, sum by (le) (rate(`+apmDuration+`_bucket{`+apmSel+`}[$__rate_interval])))`, "p95")).
			Unit("s").Min(0).
			Legend(legend("mean", "max", "lastNotNull")).
			GridPos(gridPos(0, 9, 16, 9))).
		WithPanel(timeseries.NewPanelBuilder().
			Title("Requests by status: $service ($environment)").
			Datasource(promDS()).
			WithTarget(prom("A", `sum by (code) (rate(`+apmRequests+`{`+apmSel+`}[$__rate_interval]))`, "{{code}}")).
			Unit("reqps").Min(0).
			Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
			FillOpacity(30).
			Legend(legend("mean", "max")).
			OverrideByRegexp("5..", []dashboard.DynamicConfigValue{
				{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": "red"}},
			}).
			GridPos(gridPos(0, 18, 16, 8))).
		WithPanel(timeseries.NewPanelBuilder().
			Title("Configuration runs ($environment)").
			Description("Nodes that changed something in the last 10 minutes and nodes whose latest run failed, for the whole environment (runlens exporter).").
			Datasource(promDS()).
			WithTarget(prom("A", `sum(environment:runlens_nodes_changed:count10m{environment="$environment"})`, "nodes changed (10m)")).
			WithTarget(prom("B", `sum(environment:runlens_nodes_failing:count{environment="$environment"})`, "nodes failing")).
			Unit("short").Min(0).
			Legend(legend("max", "lastNotNull")).
			OverrideByName("nodes failing", []dashboard.DynamicConfigValue{
				{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": "red"}},
			}).
			GridPos(gridPos(16, 18, 8, 8))).
		WithPanel(table.NewPanelBuilder().
			Title("Runs of role $service ($environment)").
			Datasource(runlensDS()).
			WithTarget(runs).
			Filterable(true).
			OverrideByName("node", []dashboard.DynamicConfigValue{
				{Id: "links", Value: []map[string]any{{
					"title": "Show ${__value.raw} in the topology",
					"url":   "/d/" + TopologyUID + "/runlens-topology?var-node=${__value.raw}&var-environment=${environment}&${__url_time_range}",
				}}},
			}).
			GridPos(gridPos(0, 26, 24, 10)))

	return finish(b)
}
