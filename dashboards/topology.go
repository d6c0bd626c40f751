package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/nodegraph"
	"github.com/grafana/grafana-foundation-sdk/go/table"
)

// Topology is the runlens-topology dashboard: the live Node Graph of the
// fleet from the runlens datasource (updated over Grafana Live), the runs in
// the time range, and a few fleet figures from Prometheus for context.
//
// The variables filter both datasources: environment (Prometheus label
// values; the runlens datasource receives them comma-separated), role (empty
// for every role) and node (the datasource's node regex, matched against the
// whole name, empty for every node). Two graphs show the fleet grouped by
// role and by node. A node's or a role's data link sets the variable to its
// id: the datasource anchors the regex, so var-node=web1 shows web1 alone,
// not web10 too.
func Topology() (dashboard.Dashboard, error) {
	filtered := func(refID, queryType string) Query {
		q := runlens(refID, queryType)
		q.Environment = "$environment"
		q.Role = "$role"
		q.Node = "$node"
		return q
	}
	// groupBy is fixed per panel: the datasource's frontend interpolates
	// only environment, role and node.
	byNode := filtered("A", "topology")
	byNode.GroupBy = "node"
	byRole := filtered("A", "topology")
	byRole.GroupBy = "role"

	nodeLinks := []cog.Builder[dashboard.DashboardLink]{
		link("Fleet dashboard for ${__data.fields.id}",
			"/d/"+FleetUID+"/runlens-fleet?var-node=${__data.fields.id}&${environment:queryparam}&${__url_time_range}"),
		link("Only ${__data.fields.id} and its runs",
			"/d/"+TopologyUID+"/runlens-topology?var-node=${__data.fields.id}&${environment:queryparam}&${__url_time_range}"),
	}
	roleLinks := []cog.Builder[dashboard.DashboardLink]{
		link("Only role ${__data.fields.id} and its runs",
			"/d/"+TopologyUID+"/runlens-topology?var-role=${__data.fields.id}&${environment:queryparam}&${__url_time_range}"),
		link("Deploys and APM of ${__data.fields.id}",
			"/d/"+DeploysUID+"/runlens-deploys?var-service=${__data.fields.id}&${__url_time_range}"),
	}
	arcs := nodegraph.NewNodeOptionsBuilder().Arcs([]cog.Builder[nodegraph.ArcOption]{
		nodegraph.NewArcOptionBuilder().Field("arc__success").Color("green"),
		nodegraph.NewArcOptionBuilder().Field("arc__failed").Color("red"),
		nodegraph.NewArcOptionBuilder().Field("arc__converging").Color("blue"),
	})

	b := dashboard.NewDashboardBuilder("runlens / Topology").
		Uid(TopologyUID).
		Description("The live fleet topology from the runlens datasource: every node (or role), what it depends on, and how its latest runs went.").
		Tags([]string{"runlens"}).
		Time("now-1h", "now").
		Timezone("browser").
		Annotation(builtinAnnotations()).
		Link(dashboardLinks()).
		WithVariable(promVariable()).
		WithVariable(labelVariable("environment", "Environment", "label_values(runlens_node_info, environment)").
			Description("Environments to show. The runlens datasource gets them comma-separated (All: every one), Prometheus as a regex.").
			Multi(true).IncludeAll(true).
			Current(allOption())).
		WithVariable(dashboard.NewTextBoxVariableBuilder("role").
			Label("Role").
			Description("Only nodes with this role (several: comma-separated; empty: every role).").
			DefaultValue(dashboard.StringOrMap{String: cog.ToPtr("")})).
		WithVariable(dashboard.NewTextBoxVariableBuilder("node").
			Label("Node").
			Description("A regular expression (RE2) the whole node name must match, such as web-.* or web-1 (the datasource's node filter; empty: every node).").
			DefaultValue(dashboard.StringOrMap{String: cog.ToPtr("")}))

	b = b.
		WithPanel(statPanel("Nodes", "Nodes known in the selected environments (Prometheus).",
			`sum(environment:runlens_nodes:count{`+envSel+`})`, "short").
			GridPos(gridPos(0, 0, 6, 3)).Thresholds(steps("blue")).GraphMode(common.BigValueGraphModeNone)).
		WithPanel(statPanel("Failing nodes", "Nodes whose latest run failed.",
			`sum(environment:runlens_nodes_failing:count{`+envSel+`})`, "short").
			GridPos(gridPos(6, 0, 6, 3)).Thresholds(steps("green", 1, "red")).GraphMode(common.BigValueGraphModeNone)).
		WithPanel(statPanel("Nodes changed (10m)", "Nodes that changed at least one resource in the last 10 minutes.",
			`sum(environment:runlens_nodes_changed:count10m{`+envSel+`})`, "short").
			GridPos(gridPos(12, 0, 6, 3)).Thresholds(steps("blue", 10, "orange")).GraphMode(common.BigValueGraphModeNone)).
		WithPanel(statPanel("Failure rate (15m)", "Share of the runs that failed over 15 minutes.",
			`sum(environment:runlens_run_failures:increase15m{`+envSel+`}) / (sum(environment:runlens_runs:increase15m{`+envSel+`}) > 0)`, "percentunit").
			GridPos(gridPos(18, 0, 6, 3)).Thresholds(steps("green", 0.05, "orange", 0.2, "red")).Decimals(1).GraphMode(common.BigValueGraphModeNone)).
		WithPanel(nodegraph.NewPanelBuilder().
			Title("Roles (live)").
			Description("One node per role, with the dependencies between roles, updated live. Arcs: share of the role's nodes whose latest run succeeded (green), failed (red) or is converging (blue). Click a role to filter by it or to see its service's APM.").
			Datasource(runlensDS()).
			WithTarget(byRole).
			Nodes(arcs).
			ZoomMode(nodegraph.ZoomModeCooperative).
			DataLinks(roleLinks).
			GridPos(gridPos(0, 3, 8, 18))).
		WithPanel(nodegraph.NewPanelBuilder().
			Title("Nodes (live)").
			Description("Every node and what it depends on, updated live as runs finish. Arcs: its latest runs succeeded (green), failed (red) or it is converging (blue). Click a node for its details.").
			Datasource(runlensDS()).
			WithTarget(byNode).
			Nodes(arcs).
			ZoomMode(nodegraph.ZoomModeCooperative).
			DataLinks(nodeLinks).
			GridPos(gridPos(8, 3, 16, 18))).
		WithPanel(table.NewPanelBuilder().
			Title("Runs").
			Description("Runs in the time range from the runlens datasource, with the same filters.").
			Datasource(runlensDS()).
			WithTarget(filtered("A", "runs")).
			Filterable(true).
			OverrideByName("node", []dashboard.DynamicConfigValue{
				{Id: "links", Value: []map[string]any{{
					"title": "Fleet dashboard for ${__value.raw}",
					"url":   "/d/" + FleetUID + "/runlens-fleet?var-node=${__value.raw}&${environment:queryparam}&${__url_time_range}",
				}}},
			}).
			GridPos(gridPos(0, 21, 24, 12)))

	return finish(b)
}
