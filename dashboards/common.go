// Package dashboards defines the runlens Grafana dashboards as code with the
// Grafana Foundation SDK. `go run ./dashboards/gen` writes them as JSON next to
// this file (fleet.json, topology.json, deploys.json), which Grafana loads
// through the dashboard provider in deploy/grafana/provisioning.
package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// Names other parts of runlens (provisioning, links between dashboards)
// depend on.
const (
	// FleetUID, TopologyUID and DeploysUID are the dashboards' stable UIDs.
	FleetUID    = "runlens-fleet"
	TopologyUID = "runlens-topology"
	DeploysUID  = "runlens-deploys"

	// PluginID is the runlens datasource plugin's id (its plugin.json).
	PluginID = "runlens-topology-datasource"
	// RunlensUID is the uid the runlens datasource is provisioned with.
	RunlensUID = "runlens"
	// PrometheusUID is the uid the Prometheus datasource is provisioned with:
	// the default of the dashboards' `datasource` variable.
	PrometheusUID = "prometheus"
	// PrometheusVar is the Prometheus datasource variable's name.
	PrometheusVar = "datasource"
)

// Dashboard is one generated dashboard: its file name in dashboards/ and the
// function that builds it.
type Dashboard struct {
	File  string
	Build func() (dashboard.Dashboard, error)
}

// All lists every dashboard, in a stable order.
func All() []Dashboard {
	return []Dashboard{
		{File: "fleet.json", Build: Fleet},
		{File: "topology.json", Build: Topology},
		{File: "deploys.json", Build: Deploys},
	}
}

// Marshal renders a dashboard as the committed JSON: two-space indented,
// with a final newline, HTML characters (<, >, &, common in PromQL) not
// escaped.
func Marshal(d dashboard.Dashboard) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// promDS is the Prometheus datasource, through the dashboard variable.
func promDS() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${" + PrometheusVar + "}")}
}

// runlensDS is the runlens topology datasource.
func runlensDS() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr(PluginID), Uid: cog.ToPtr(RunlensUID)}
}

// promVariable is the `datasource` variable: any Prometheus datasource,
// defaulting to the provisioned one.
func promVariable() *dashboard.DatasourceVariableBuilder {
	return dashboard.NewDatasourceVariableBuilder(PrometheusVar).
		Label("Prometheus").
		Type("prometheus").
		Current(dashboard.VariableOption{
			Text:  dashboard.StringOrArrayOfString{String: cog.ToPtr("Prometheus")},
			Value: dashboard.StringOrArrayOfString{String: cog.ToPtr(PrometheusUID)},
		})
}

// labelVariable is a query variable over a Prometheus label's values.
func labelVariable(name, label, query string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(promDS()).
		Query(dashboard.StringOrMap{Map: map[string]any{
			"qryType": 1,
			"query":   query,
			"refId":   "PrometheusVariableQueryEditor-VariableQuery",
		}}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
}

// prom is a Prometheus range query.
func prom(refID, expr, legend string) *prometheus.DataqueryBuilder {
	q := prometheus.NewDataqueryBuilder().
		Datasource(promDS()).
		RefId(refID).
		Expr(expr).
		Range()
	if legend != "" {
		q = q.LegendFormat(legend)
	}
	return q
}

// promTable is an instant Prometheus query shown as a table.
func promTable(refID, expr string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		Datasource(promDS()).
		RefId(refID).
		Expr(expr).
		Instant().
		Format(prometheus.PromQueryFormatTable)
}

// Query is a query of the runlens datasource (the plugin's query JSON).
type Query struct {
	RefID      string                `json:"refId"`
	Datasource *common.DataSourceRef `json:"datasource,omitempty"`
	Hide       *bool                 `json:"hide,omitempty"`
	// QueryType is topology, runs, changes or impact.
	QueryType   string `json:"queryType"`
	Environment string `json:"environment,omitempty"`
	Role        string `json:"role,omitempty"`
	// Node is a regular expression over node names.
	Node string `json:"node,omitempty"`
	// GroupBy (topology only) is node or role.
	GroupBy string `json:"groupBy,omitempty"`
}

// ImplementsDataqueryVariant makes Query a dataquery of the SDK.
func (Query) ImplementsDataqueryVariant() {}

// DataqueryType is the plugin id.
func (Query) DataqueryType() string { return PluginID }

// Validate checks the query type.
func (q Query) Validate() error {
	switch q.QueryType {
	case "topology", "runs", "changes", "impact":
	default:
		return fmt.Errorf("runlens query %q: unknown queryType %q", q.RefID, q.QueryType)
	}
	if q.GroupBy != "" && q.QueryType != "topology" {
		return fmt.Errorf("runlens query %q: groupBy only applies to topology", q.RefID)
	}
	return nil
}

// Equals compares two dataqueries.
func (q Query) Equals(other variants.Dataquery) bool {
	o, ok := other.(Query)
	return ok && reflect.DeepEqual(q, o)
}

// Build makes Query its own builder.
func (q Query) Build() (variants.Dataquery, error) {
	if err := q.Validate(); err != nil {
		return nil, cog.MakeBuildErrors("runlens.query", err)
	}
	return q, nil
}

// runlens is a query of the runlens datasource.
func runlens(refID, queryType string) Query {
	return Query{RefID: refID, Datasource: cog.ToPtr(runlensDS()), QueryType: queryType}
}

// gridPos places a panel.
func gridPos(x, y, w, h uint32) dashboard.GridPos {
	return dashboard.GridPos{X: x, Y: y, W: w, H: h}
}

// steps is an absolute threshold set: base color, then value/color pairs.
func steps(base string, more ...any) *dashboard.ThresholdsConfigBuilder {
	s := []dashboard.Threshold{{Color: base}}
	for i := 0; i+1 < len(more); i += 2 {
		v := toFloat(more[i])
		s = append(s, dashboard.Threshold{Value: &v, Color: more[i+1].(string)})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(s)
}

func toFloat(v any) float64 {
	switch n := v.(type) {
	case int:
		return float64(n)
	case float64:
		return n
	}
	panic(fmt.Sprintf("threshold value %v is not a number", v))
}

// valueMap maps exact values to text and color.
func valueMap(pairs ...[3]string) []dashboard.ValueMapping {
	opts := map[string]dashboard.ValueMappingResult{}
	for i, p := range pairs {
		opts[p[0]] = dashboard.ValueMappingResult{Text: cog.ToPtr(p[1]), Color: cog.ToPtr(p[2]), Index: cog.ToPtr(int32(i))}
	}
	return []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: opts}}}
}

// link is a data link (field config) or dashboard link to a URL.
func link(title, url string) *dashboard.DashboardLinkBuilder {
	return dashboard.NewDashboardLinkBuilder(title).Type(dashboard.DashboardLinkTypeLink).Url(url)
}

// legend is a table legend at the bottom with the given calcs.
func legend(calcs ...string) *common.VizLegendOptionsBuilder {
	return common.NewVizLegendOptionsBuilder().
		DisplayMode(common.LegendDisplayModeTable).
		Placement(common.LegendPlacementBottom).
		ShowLegend(true).
		Calcs(calcs)
}

// lastValue reduces a series to its last non-null value (stat panels).
func lastValue() *common.ReduceDataOptionsBuilder {
	return common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false)
}

// finish builds the dashboard and numbers its panels and rows 1, 2, … in
// grid order, so that panel ids (and links such as viewPanel=3) are stable.
func finish(b *dashboard.DashboardBuilder) (dashboard.Dashboard, error) {
	d, err := b.Build()
	if err != nil {
		return d, err
	}
	// Links and annotation toggles go where Grafana puts them by default (the
	// dashboard's top bar), not into the controls menu the SDK defaults to.
	for i := range d.Links {
		d.Links[i].Placement = nil
	}
	for i := range d.Annotations.List {
		d.Annotations.List[i].Placement = nil
	}
	id := uint32(0)
	for _, p := range d.Panels {
		if p.Panel != nil && p.Panel.FieldConfig != nil {
			for i := range p.Panel.FieldConfig.Defaults.Links {
				p.Panel.FieldConfig.Defaults.Links[i].Placement = nil
			}
		}
		switch {
		case p.Panel != nil:
			id++
			p.Panel.Id = cog.ToPtr(id)
		case p.RowPanel != nil:
			id++
			p.RowPanel.Id = id
			for i := range p.RowPanel.Panels {
				id++
				p.RowPanel.Panels[i].Id = cog.ToPtr(id)
			}
		}
	}
	return d, nil
}
