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
// latency with the change sets of its role as annotations (a region per
// roll-out, from its first run to its last), and the change sets ranked by
// what they did to the error rate, beside them.
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
			Name("Change sets").
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
			Description("Share of the service's requests answered with a 5xx status. Orange regions: the change sets of role $service, each from its first run to its last (hover for its waves, nodes and links).").
			Datasource(promDS()).
			WithTarget(prom("A", `sum(rate(`+apmRequests+`{`+apmSel+`, code=~"5.."}[$__rate_interval])) / sum(rate(`+apmRequests+`{`+apmSel+`}[$__rate_interval]))`, "5xx share")).
			Unit("percentunit").Min(0).
			Thresholds(steps("green", 0.01, "orange", 0.05, "red")).
			ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
			FillOpacity(15).
			Legend(legend("mean", "max", "lastNotNull")).
			GridPos(gridPos(0, 0, 16, 9))).
		WithPanel(impactTable("Change impact ($environment)",
			"Every change set in $environment in the time range (any role: a database change can break the application), best suspect first: "+
				"score is the rise of the role's error rate after the set's waves over the noise before it (a robust z-score), "+
				"weighed by how the rise follows the waves and when it began; detail says how it came about. "+
				"Click nodes for the set's nodes on the topology or the fleet dashboard.", impact).
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

// impactTable is a table of the runlens impact query: when, what, how many
// nodes and waves, the score (colored: 3 and 10 noise units) and its
// detail, with links from the node count to the set's nodes on the topology
// and the fleet dashboard, and from the title to the role's APM around it.
// The other fields of the frame are hidden.
func impactTable(title, description string, q Query) *table.PanelBuilder {
	return table.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(runlensDS()).
		WithTarget(q).
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
			"excludeByName": map[string]any{"timeEnd": true, "environment": true, "runs": true, "nodeList": true, "before": true,
				"after": true, "status": true, "set": true, "undoes": true, "nodeRegex": true, "nodeParams": true},
			"indexByName": map[string]any{"score": 0, "title": 1, "nodes": 2, "waves": 3, "role": 4, "delta": 5, "time": 6, "detail": 7},
		}}).
		OverrideByName("score", []dashboard.DynamicConfigValue{
			{Id: "decimals", Value: 1},
			{Id: "thresholds", Value: map[string]any{"mode": "absolute", "steps": []any{
				map[string]any{"color": "green", "value": nil}, map[string]any{"color": "orange", "value": 3}, map[string]any{"color": "red", "value": 10},
			}}},
			{Id: "custom.cellOptions", Value: map[string]any{"type": "color-background"}},
		}).
		OverrideByName("nodes", []dashboard.DynamicConfigValue{
			{Id: "links", Value: []map[string]any{
				{"title": "The set's nodes on the topology", "url": "/d/" + TopologyUID + "/runlens-topology?var-node=${__data.fields.nodeRegex}&var-environment=${__data.fields.environment}&${__url_time_range}"},
				{"title": "The set's nodes on the fleet dashboard", "url": "/d/" + FleetUID + "/runlens-fleet?${__data.fields.nodeParams:raw}&var-environment=${__data.fields.environment}&${__url_time_range}"},
			}},
		}).
		OverrideByName("title", []dashboard.DynamicConfigValue{
			{Id: "links", Value: []map[string]any{
				{"title": "Deploys and APM of ${__data.fields.role}", "url": "/d/" + DeploysUID + "/runlens-deploys?var-environment=${__data.fields.environment}&var-service=${__data.fields.role}&${__url_time_range}"},
			}},
		}).
		OverrideByName("detail", []dashboard.DynamicConfigValue{
			{Id: "custom.inspect", Value: true},
		})
}
