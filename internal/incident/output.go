package incident

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

// Report is the run as a Chef data collector run_converge message (the
// format that lists failed resources, see ../shared/fixtures/chef), with id
// as its run id.
func (r Run) Report(id string) []byte {
	status := "success"
	if len(r.Failed) > 0 {
		status = "failure"
	}
	var resources []map[string]any
	add := func(res, st string) {
		typ, name, _ := strings.Cut(strings.TrimSuffix(res, "]"), "[")
		resources = append(resources, map[string]any{"type": typ, "name": name, "id": name, "status": st,
			"result": "create", "cookbook_name": "site", "recipe_name": "default", "duration": "12"})
	}
	add("package[openssh-server]", "up-to-date")
	for _, u := range r.Updated {
		add(u, "updated")
	}
	for _, f := range r.Failed {
		add(f, "failed")
	}
	runList := make([]string, len(r.Roles))
	for i, role := range r.Roles {
		runList[i] = "role[" + role + "]"
	}
	m := map[string]any{
		"message_type": "run_converge", "message_version": "1.1.0", "id": id, "run_id": id, "entity_uuid": id,
		"node_name": r.Node, "chef_server_fqdn": "chef.example.internal", "organization_name": "runlens", "source": "chef_client",
		"start_time": r.Start.UTC().Format(time.RFC3339), "end_time": r.End.UTC().Format(time.RFC3339),
		"status": status, "total_resource_count": len(resources), "updated_resource_count": len(r.Updated),
		"resources": resources, "run_list": runList,
		"node": map[string]any{
			"name": r.Node, "chef_environment": r.Environment,
			"automatic": map[string]any{"fqdn": r.Node + ".example.internal", "roles": r.Roles},
		},
	}
	if status == "failure" {
		m["error"] = map[string]any{"class": "Chef::Exceptions::Exec", "message": r.Error}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // maps of strings
	}
	return b
}

// Reports are every run's report, run ids unique across incidents.
func (inc *Incident) Reports() [][]byte {
	out := make([][]byte, len(inc.Runs))
	for i, r := range inc.Runs {
		out[i] = r.Report(inc.runID(i))
	}
	return out
}

// Changes counts the runs that change something or fail.
func (inc *Incident) Changes() int {
	n := 0
	for _, r := range inc.Runs {
		if r.IsChange() {
			n++
		}
	}
	return n
}

// WriteOpenMetrics writes the incidents' http_requests_total series (code
// 200 and 500, cumulative, with timestamps) as one OpenMetrics exposition,
// the input of `promtool tsdb create-blocks-from openmetrics`: one metric
// family, each series' samples in time order, "# EOF" at the end.
func WriteOpenMetrics(w io.Writer, incs ...*Incident) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	fmt.Fprintln(bw, "# HELP http_requests Requests served, by status code.")
	fmt.Fprintln(bw, "# TYPE http_requests counter")
	var line []byte
	for _, inc := range incs {
		for _, svc := range Services {
			for _, code := range []string{"200", "500"} {
				prefix := fmt.Sprintf(`http_requests_total{service=%q,environment=%q,code=%q} `, svc, inc.Environment, code)
				for i, t := range inc.samples {
					v := inc.errors[svc][i]
					if code == "200" {
						v = inc.requests[svc][i] - v
					}
					line = append(line[:0], prefix...)
					line = strconv.AppendFloat(line, v, 'f', -1, 64)
					line = append(line, ' ')
					line = strconv.AppendInt(line, t.Unix(), 10)
					line = append(line, '\n')
					bw.Write(line)
				}
			}
		}
	}
	fmt.Fprintln(bw, "# EOF")
	return bw.Flush()
}

// FirstSample and LastSample bound the incident's metrics.
func (inc *Incident) FirstSample() time.Time { return inc.samples[0] }
func (inc *Incident) LastSample() time.Time  { return inc.samples[len(inc.samples)-1] }

// Decoded is the run as pkg/report decodes its Report (the test of this
// package holds the two equal), for tests that feed a plugin's handler
// without the JSON round trip.
func (r Run) Decoded(id string) *report.Run {
	out := &report.Run{
		Format: report.FormatChefDataCollector, Kind: report.KindRun, Source: report.SourceChef, ID: id,
		Node: r.Node, FQDN: r.Node + ".example.internal", Environment: r.Environment, Roles: slices.Clone(r.Roles),
		RunList: make([]string, len(r.Roles)), Status: report.StatusSuccess, Start: r.Start, End: r.End, Duration: r.End.Sub(r.Start),
		UpdatedCount: len(r.Updated), FailedCount: len(r.Failed), TotalResources: 1 + len(r.Updated) + len(r.Failed),
	}
	for i, role := range r.Roles {
		out.RunList[i] = "role[" + role + "]"
	}
	for _, u := range r.Updated {
		typ, name, _ := strings.Cut(strings.TrimSuffix(u, "]"), "[")
		out.Updated = append(out.Updated, report.Resource{Type: typ, Name: name})
		if out.UpdatedByType == nil {
			out.UpdatedByType = map[string]int{}
		}
		out.UpdatedByType[typ]++
	}
	for _, f := range r.Failed {
		typ, name, _ := strings.Cut(strings.TrimSuffix(f, "]"), "[")
		out.Failed = append(out.Failed, report.Resource{Type: typ, Name: name})
	}
	if len(r.Failed) > 0 {
		out.Status = report.StatusFailure
		out.Error = &report.RunError{Class: "Chef::Exceptions::Exec", Message: r.Error}
	}
	return out
}

// DecodedRuns are every run as Decoded, with the ids of Reports.
func (inc *Incident) DecodedRuns() []*report.Run {
	out := make([]*report.Run, len(inc.Runs))
	for i, r := range inc.Runs {
		out[i] = r.Decoded(inc.runID(i))
	}
	return out
}

func (inc *Incident) runID(i int) string { return fmt.Sprintf("%s-%06d", inc.Environment, i) }
