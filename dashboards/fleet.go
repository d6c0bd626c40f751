package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Selectors the fleet panels share.
const (
	envSel     = `environment=~"$environment"`
	envNodeSel = `environment=~"$environment", node=~"$node"`
)

// Fleet is the runlens-fleet dashboard: runs and failures per environment,
// failing and stale nodes, what changed, and the exporter's ingest health.
//
// Counters are read through the recording rules of alerts/runlens.rules.yml,
// which sum rate()/increase() across exporter replicas; last-run timestamps
// take the max across replicas. Every panel sums or maxes again by its own
// labels, so extra target labels (job, cluster) never split a line.
func Fleet() (dashboard.Dashboard, error) {
	// The change sets of the selected environments and nodes (a multi-value
	// node variable reaches the datasource as (?:a|b), All as no filter):
	// regions on every panel, and ranked in the Changes row, each linked
	// to its nodes.
	changeSets := runlens("Changes", "changes")
	changeSets.Environment = "$environment"
	changeSets.Node = "$node"
	ranked := runlens("A", "impact")
	ranked.Environment = "$environment"
	ranked.Node = "$node"

	b := dashboard.NewDashboardBuilder("runlens / Fleet").
		Uid(FleetUID).
		Description("Configuration-management runs across the fleet: runs, failures, changes, convergence and the runlens exporter's ingest health.").
		Tags([]string{"runlens"}).
		Refresh("30s").
		Time("now-6h", "now").
		Timezone("browser").
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Annotation(builtinAnnotations()).
		Annotation(dashboard.NewAnnotationQueryBuilder().
			Name("Change sets").
			Datasource(runlensDS()).
			Enable(true).
			IconColor("orange").
			Target(changeSets)).
		Link(dashboardLinks()).
		WithVariable(promVariable()).
		WithVariable(labelVariable("environment", "Environment", "label_values(runlens_node_info, environment)").
			Multi(true).IncludeAll(true).AllValue(".*").
			Current(allOption())).
		WithVariable(labelVariable("node", "Node", `label_values(runlens_node_info{environment=~"$environment"}, node)`).
			Multi(true).IncludeAll(true).AllValue(".*").
			Current(allOption()))

	// Overview.
	b = b.WithRow(dashboard.NewRowBuilder("Overview").GridPos(gridPos(0, 0, 24, 1)))
	b = b.
		WithPanel(statPanel("Nodes", "Nodes known per environment, across exporter replicas.",
			`sum(environment:runlens_nodes:count{`+envSel+`})`, "short").
			GridPos(gridPos(0, 1, 4, 4)).Thresholds(steps("blue"))).
		WithPanel(statPanel("Failing nodes", "Nodes whose latest run failed.",
			`sum(environment:runlens_nodes_failing:count{`+envSel+`})`, "short").
			GridPos(gridPos(4, 1, 4, 4)).Thresholds(steps("green", 1, "red"))).
		WithPanel(statPanel("Runs per minute", "Finished runs per minute (5-minute rate), all replicas.",
			`60 * sum(environment:runlens_runs:rate5m{`+envSel+`})`, "short").
			GridPos(gridPos(8, 1, 4, 4)).Thresholds(steps("blue")).Decimals(1)).
		WithPanel(statPanel("Failure rate (15m)", "Share of the runs that failed over 15 minutes; RunlensRunFailureRateHigh fires above 20%.",
			`sum(environment:runlens_run_failures:increase15m{`+envSel+`}) / (sum(environment:runlens_runs:increase15m{`+envSel+`}) > 0)`, "percentunit").
			GridPos(gridPos(12, 1, 4, 4)).Thresholds(steps("green", 0.05, "orange", 0.2, "red")).Decimals(1)).
		WithPanel(statPanel("Nodes changed (10m)", "Nodes that changed at least one resource in the last 10 minutes: a roll-out under way.",
			`sum(environment:runlens_nodes_changed:count10m{`+envSel+`})`, "short").
			GridPos(gridPos(16, 1, 4, 4)).Thresholds(steps("blue", 10, "orange"))).
		WithPanel(statPanel("Nodes not converging", "Nodes without a finished run for more than 3 expected run intervals (RunlensNodeNotConverging).",
			`count(`+notConverging+`) or vector(0)`, "short").
			GridPos(gridPos(20, 1, 4, 4)).Thresholds(steps("green", 1, "orange")))

	// Runs.
	b = b.WithRow(dashboard.NewRowBuilder("Runs").GridPos(gridPos(0, 5, 24, 1)))
	b = b.
		WithPanel(timeseries.NewPanelBuilder().
			Title("Runs by environment").
			Description("Finished and failed runs per minute (5-minute rate), summed across exporter replicas.").
			Datasource(promDS()).
			WithTarget(prom("A", `60 * sum by (environment) (environment:runlens_runs:rate5m{`+envSel+`})`, "{{environment}} runs")).
			WithTarget(prom("B", `60 * sum by (environment) (environment:runlens_run_failures:rate5m{`+envSel+`})`, "{{environment}} failed")).
			Unit("short").Min(0).FillOpacity(10).
			Legend(legend("mean", "max", "lastNotNull")).
			OverrideByRegexp(".* failed", []dashboard.DynamicConfigValue{
				{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": "red"}},
			}).
			GridPos(gridPos(0, 6, 12, 8))).
		WithPanel(timeseries.NewPanelBuilder().
			Title("Failure rate by environment").
			Description("Share of the runs that failed over 15 minutes. The dashed line is RunlensRunFailureRateHigh's threshold (20%).").
			Datasource(promDS()).
			WithTarget(prom("A", `sum by (environment) (environment:runlens_run_failures:increase15m{`+envSel+`}) / (sum by (environment) (environment:runlens_runs:increase15m{`+envSel+`}) > 0)`, "{{environment}}")).
			Unit("percentunit").Min(0).Max(1).
			Thresholds(steps("green", 0.2, "red")).
			ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
			Legend(legend("mean", "max", "lastNotNull")).
			GridPos(gridPos(12, 6, 12, 8))).
		WithPanel(table.NewPanelBuilder().
			Title("Top failing nodes (1h)").
			Description("Nodes with failed runs in the last hour, most failures first. Click a node for its place in the topology.").
			Datasource(promDS()).
			WithTarget(promTable("A", `topk(20, sum by (node, environment) (node:runlens_run_failures:increase1h{`+envNodeSel+`}) > 0)`)).
			WithTarget(promTable("B", `max by (node, environment) (node:runlens_run_failures:ratio_rate1h{`+envNodeSel+`}) and on (node, environment) topk(20, sum by (node, environment) (node:runlens_run_failures:increase1h{`+envNodeSel+`}) > 0)`)).
			WithTarget(promTable("C", `max by (node, environment) (node:runlens_last_run_success:latest{`+envNodeSel+`}) and on (node, environment) topk(20, sum by (node, environment) (node:runlens_run_failures:increase1h{`+envNodeSel+`}) > 0)`)).
			WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}).
			WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
				"excludeByName": map[string]any{"Time": true},
				"indexByName":   map[string]any{"node": 0, "environment": 1, "Value #A": 2, "Value #B": 3, "Value #C": 4},
				"renameByName":  map[string]any{"Value #A": "Failed runs", "Value #B": "Failure ratio", "Value #C": "Latest run"},
			}}).
			SortBy([]cog.Builder[common.TableSortByFieldState]{
				common.NewTableSortByFieldStateBuilder().DisplayName("Failed runs").Desc(true),
			}).
			OverrideByName("Failure ratio", []dashboard.DynamicConfigValue{
				{Id: "unit", Value: "percentunit"},
				{Id: "custom.cellOptions", Value: map[string]any{"type": "gauge", "mode": "basic"}},
				{Id: "min", Value: 0}, {Id: "max", Value: 1},
				{Id: "thresholds", Value: map[string]any{"mode": "absolute", "steps": []any{
					map[string]any{"color": "orange", "value": nil}, map[string]any{"color": "red", "value": 0.5},
				}}},
			}).
			OverrideByName("Latest run", []dashboard.DynamicConfigValue{
				{Id: "mappings", Value: valueMap([3]string{"0", "failed", "red"}, [3]string{"1", "succeeded", "green"})},
				{Id: "custom.cellOptions", Value: map[string]any{"type": "color-text"}},
			}).
			OverrideByName("node", []dashboard.DynamicConfigValue{
				{Id: "links", Value: []map[string]any{{
					"title": "Show ${__value.raw} in the topology",
					"url":   "/d/" + TopologyUID + "/runlens-topology?var-node=${__value.raw}&var-environment=${__data.fields.environment}&${__url_time_range}",
				}}},
			}).
			GridPos(gridPos(0, 14, 12, 10))).
		WithPanel(timeseries.NewPanelBuilder().
			Title("Run duration").
			Description("Median and 95th percentile run duration per environment over 15 minutes.").
			Datasource(promDS()).
			WithTarget(prom("A", `max by (environment) (environment:runlens_run_duration_seconds:p50_rate15m{`+envSel+`})`, "{{environment}} p50")).
			WithTarget(prom("B", `max by (environment) (environment:runlens_run_duration_seconds:p95_rate15m{`+envSel+`})`, "{{environment}} p95")).
			Unit("s").Min(0).
			Legend(legend("mean", "max", "lastNotNull")).
			GridPos(gridPos(12, 14, 12, 10)))

	// Changes.
	b = b.WithRow(dashboard.NewRowBuilder("Changes").GridPos(gridPos(0, 24, 24, 1)))
	b = b.
		WithPanel(timeseries.NewPanelBuilder().
			Title("Changed resources by type").
			Description("Resources changed per minute by resource type (runlens_resource_updates_total, 5-minute rate, all replicas). Types beyond the exporter's --metrics.max-resource-types count as `other`.").
			Datasource(promDS()).
			WithTarget(prom("A", `60 * sum by (resource_type) (environment_resource_type:runlens_resource_updates:rate5m{`+envSel+`})`, "{{resource_type}}")).
			Unit("short").Min(0).
			DrawStyle(common.GraphDrawStyleBars).FillOpacity(80).LineWidth(1).
			Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
			Legend(legend("sum", "max").SortBy("Total").SortDesc(true).Placement(common.LegendPlacementRight)).
			GridPos(gridPos(0, 25, 12, 8))).
		WithPanel(timeseries.NewPanelBuilder().
			Title("Nodes that changed something (10m)").
			Description("Nodes per environment that changed at least one resource in the last 10 minutes. RunlensChangeBurst fires at 10 nodes and 30% of the environment.").
			Datasource(promDS()).
			WithTarget(prom("A", `sum by (environment) (environment:runlens_nodes_changed:count10m{`+envSel+`})`, "{{environment}} changed")).
			WithTarget(prom("B", `sum by (environment) (environment:runlens_nodes_failing:count{`+envSel+`})`, "{{environment}} failing")).
			Unit("short").Min(0).
			Legend(legend("max", "lastNotNull")).
			OverrideByRegexp(".* failing", []dashboard.DynamicConfigValue{
				{Id: "custom.lineStyle", Value: map[string]any{"fill": "dash", "dash": []int{10, 10}}},
			}).
			GridPos(gridPos(12, 25, 12, 8))).
		WithPanel(impactTable("Change sets",
			"The change sets of the selected environments and nodes in the time range (runlens datasource: runs of one role that changed the same resources, in waves), "+
				"best suspect first by what they did to their role's error rate. Click nodes to show the set's nodes on this dashboard or on the topology.", ranked).
			GridPos(gridPos(0, 33, 24, 8)))

	// Convergence.
	b = b.WithRow(dashboard.NewRowBuilder("Convergence").GridPos(gridPos(0, 41, 24, 1)))
	b = b.
		WithPanel(table.NewPanelBuilder().
			Title("Nodes not converging").
			Description("Nodes without a finished run for more than 3 expected run intervals (node:runlens_run_interval_seconds:configured), longest first. The same condition as RunlensNodeNotConverging, without its 5 minutes of `for`.").
			Datasource(promDS()).
			WithTarget(promTable("A", notConverging)).
			WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
				"excludeByName": map[string]any{"Time": true},
				"indexByName":   map[string]any{"node": 0, "environment": 1, "Value": 2},
				"renameByName":  map[string]any{"Value": "Since last finished run"},
			}}).
			SortBy([]cog.Builder[common.TableSortByFieldState]{
				common.NewTableSortByFieldStateBuilder().DisplayName("Since last finished run").Desc(true),
			}).
			OverrideByName("Since last finished run", []dashboard.DynamicConfigValue{{Id: "unit", Value: "s"}}).
			OverrideByName("node", []dashboard.DynamicConfigValue{
				{Id: "links", Value: []map[string]any{{
					"title": "Show ${__value.raw} in the topology",
					"url":   "/d/" + TopologyUID + "/runlens-topology?var-node=${__value.raw}&var-environment=${__data.fields.environment}&${__url_time_range}",
				}}},
			}).
			NoValue("Every node converges").
			GridPos(gridPos(0, 42, 12, 8))).
		WithPanel(timeseries.NewPanelBuilder().
			Title("Oldest last run").
			Description("Per environment, the time since the least recent node finished a run, against 3 expected run intervals.").
			Datasource(promDS()).
			WithTarget(prom("A", `max by (environment) (time() - node:runlens_last_run_timestamp_seconds:max{`+envNodeSel+`})`, "{{environment}}")).
			WithTarget(prom("B", `max by (environment) (3 * node:runlens_run_interval_seconds:configured{`+envNodeSel+`})`, "{{environment}} threshold")).
			Unit("s").Min(0).
			Legend(legend("max", "lastNotNull")).
			OverrideByRegexp(".* threshold", []dashboard.DynamicConfigValue{
				{Id: "custom.lineStyle", Value: map[string]any{"fill": "dash", "dash": []int{10, 10}}},
				{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": "red"}},
			}).
			GridPos(gridPos(12, 42, 12, 8)))

	// Ingest health.
	b = b.WithRow(dashboard.NewRowBuilder("Ingest health").GridPos(gridPos(0, 50, 24, 1)))
	b = b.
		WithPanel(timeseries.NewPanelBuilder().
			Title("Reports by outcome").
			Description("Run reports per second by format and outcome (processed, duplicate, rejected), all replicas. Rejected reports are in the dead-letter queue with the reason in a header.").
			Datasource(promDS()).
			WithTarget(prom("A", `sum by (format, outcome) (format_outcome:runlens_reports:rate5m)`, "{{format}} {{outcome}}")).
			Unit("reqps").Min(0).
			Legend(legend("mean", "max", "lastNotNull")).
			OverrideByRegexp(".* rejected", []dashboard.DynamicConfigValue{
				{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": "red"}},
			}).
			GridPos(gridPos(0, 51, 10, 8))).
		WithPanel(timeseries.NewPanelBuilder().
			Title("Report delay").
			Description("Time from a run's end (node clock) to the exporter processing its report: p50, p95, p99 across replicas.").
			Datasource(promDS()).
			WithTarget(prom("A", `histogram_quantile(0.5, sum by (le) (rate(runlens_report_delay_seconds_bucket[$__rate_interval])))`, "p50")).
			WithTarget(prom("B", `histogram_quantile(0.95, sum by (le) (rate(runlens_report_delay_seconds_bucket[$__rate_interval])))`, "p95")).
			WithTarget(prom("C", `histogram_quantile(0.99, sum by (le) (rate(runlens_report_delay_seconds_bucket[$__rate_interval])))`, "p99")).
			Unit("s").Min(0).
			Legend(legend("mean", "max", "lastNotNull")).
			GridPos(gridPos(10, 51, 8, 8))).
		WithPanel(stat.NewPanelBuilder().
			Title("AMQP connection").
			Description("runlens_amqp_up per exporter replica: connected to RabbitMQ or not (RunlensAMQPDown).").
			Datasource(promDS()).
			WithTarget(prom("A", `max by (instance) (runlens_amqp_up)`, "{{instance}}")).
			ReduceOptions(lastValue()).
			Mappings(valueMap([3]string{"0", "down", "red"}, [3]string{"1", "connected", "green"})).
			Thresholds(steps("red", 1, "green")).
			ColorMode(common.BigValueColorModeBackground).
			Orientation(common.VizOrientationAuto).
			GraphMode(common.BigValueGraphModeNone).
			NoValue("no exporter").
			GridPos(gridPos(18, 51, 6, 4))).
		WithPanel(stat.NewPanelBuilder().
			Title("Exporter").
			Description("Exporter replicas scraped (job runlens) and nodes each tracks.").
			Datasource(promDS()).
			WithTarget(prom("A", `sum(up{job="runlens"})`, "replicas up")).
			WithTarget(prom("B", `max(runlens_nodes)`, "nodes tracked")).
			ReduceOptions(lastValue()).
			Thresholds(steps("blue")).
			ColorMode(common.BigValueColorModeNone).
			Orientation(common.VizOrientationAuto).
			GraphMode(common.BigValueGraphModeArea).
			TextMode(common.BigValueTextModeValueAndName).
			GridPos(gridPos(18, 55, 6, 4)))

	return finish(b)
}

// notConverging is the RunlensNodeNotConverging condition, per node.
const notConverging = `time() - max by (node, environment) (node:runlens_last_run_timestamp_seconds:max{` + envNodeSel + `}) > on (node, environment) 3 * max by (node, environment) (node:runlens_run_interval_seconds:configured{` + envNodeSel + `})`

// statPanel is a single-value panel over a Prometheus expression.
func statPanel(title, description, expr, unit string) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(promDS()).
		WithTarget(prom("A", expr, "")).
		Unit(unit).
		ReduceOptions(lastValue()).
		ColorMode(common.BigValueColorModeValue).
		GraphMode(common.BigValueGraphModeArea).
		Orientation(common.VizOrientationAuto)
}

// allOption is the current value "All" of a variable that includes it.
func allOption() dashboard.VariableOption {
	return dashboard.VariableOption{
		Text:  dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
		Value: dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
	}
}

// builtinAnnotations is Grafana's own "Annotations & Alerts".
func builtinAnnotations() *dashboard.AnnotationQueryBuilder {
	return dashboard.NewAnnotationQueryBuilder().
		Name("Annotations & Alerts").
		Datasource(common.DataSourceRef{Type: cog.ToPtr("grafana"), Uid: cog.ToPtr("-- Grafana --")}).
		Enable(true).
		Hide(true).
		IconColor("rgba(0, 211, 255, 1)").
		Type("dashboard").
		BuiltIn(1)
}

// dashboardLinks links every runlens dashboard to the others, keeping the
// time range and the variables they share.
func dashboardLinks() *dashboard.DashboardLinkBuilder {
	return dashboard.NewDashboardLinkBuilder("runlens").
		Type(dashboard.DashboardLinkTypeDashboards).
		Tags([]string{"runlens"}).
		AsDropdown(false).
		KeepTime(true).
		IncludeVars(true)
}
