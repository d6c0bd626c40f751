package report

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestIgnoreFailureIsNotAFailure: a resource with ignore_failure (true or
// :quiet, which the data collector sends as "quiet":
// lib/chef/data_collector/run_end_message.rb "ignore_failure" =>
// new_resource.ignore_failure) failed without failing the run.
func TestIgnoreFailureIsNotAFailure(t *testing.T) {
	for _, ignore := range []any{true, "quiet"} {
		r := mustDecode(t, edit(t, convergeOK, func(m map[string]any) {
			m["resources"] = []any{
				map[string]any{"type": "execute", "name": "optional", "status": "failed", "ignore_failure": ignore, "error_message": "nope"},
				map[string]any{"type": "file", "name": "/a", "status": "updated", "ignore_failure": false},
			}
		}))
		if r.Status != StatusSuccess || r.FailedCount != 0 || len(r.Failed) != 0 || r.Error != nil || r.TotalResources != 2 || r.UpdatedCount != 1 {
			t.Errorf("ignore_failure %v: status %s, %d failed %v, error %+v, total %d", ignore, r.Status, r.FailedCount, r.Failed, r.Error, r.TotalResources)
		}
	}
	// ignore_failure false (or absent): a failure.
	r := mustDecode(t, edit(t, convergeOK, func(m map[string]any) {
		m["status"] = "failure"
		m["resources"] = []any{map[string]any{"type": "execute", "name": "x", "status": "failed", "ignore_failure": false, "error_message": "boom"}}
	}))
	if r.FailedCount != 1 || r.Error == nil || r.Error.Message != "boom" {
		t.Errorf("a real failure: %d failed, error %+v", r.FailedCount, r.Error)
	}
}

// TestHandlerCountsEachResourceOnce: the handler's lists name a resource
// once per action record (lib/chef/handler.rb updated_resources is
// action_collection...resources, one per record); the decoder counts it
// once, as for the data collector.
func TestHandlerCountsEachResourceOnce(t *testing.T) {
	r := mustDecode(t, edit(t, handlerOK, func(m map[string]any) {
		m["status"] = "failure"
		m["updated_resources"] = []any{"service[nginx]", "template[/etc/x]", "service[nginx]"}
		m["failed_resources"] = []any{"execute[migrate]", "execute[migrate]"}
		m["failed_resources_count"] = 7 // the list wins
		m["total_resources_count"] = 40
	}))
	if r.UpdatedCount != 2 || r.FailedCount != 1 || r.TotalResources != 40 || len(r.Failed) != 1 || r.Failed[0] != (Resource{"execute", "migrate"}) {
		t.Errorf("updated %d failed %d %v total %d", r.UpdatedCount, r.FailedCount, r.Failed, r.TotalResources)
	}
	// Counts without lists; a total below what they name is raised to it.
	r = mustDecode(t, edit(t, handlerOK, func(m map[string]any) {
		m["failed_resources_count"] = 3
		m["total_resources_count"] = 0
	}))
	if r.FailedCount != 3 || r.TotalResources != 3 {
		t.Errorf("failed %d total %d, want 3 and 3 (the failed count)", r.FailedCount, r.TotalResources)
	}
	// An old payload without a total: unknown, 0.
	if r := mustDecode(t, []byte(handlerOK)); r.TotalResources != 0 || r.FailedCount != 0 {
		t.Errorf("old payload: total %d failed %d", r.TotalResources, r.FailedCount)
	}
}

// TestSaltStatesOncePerResource: two states on the same module and name
// (file.managed and file.append on one path) are one resource.
func TestSaltStatesOncePerResource(t *testing.T) {
	r := mustDecode(t, saltEdit(t, func(_ *string, d map[string]any) {
		d["retcode"] = 2
		d["return"] = map[string]any{
			"file_|-conf_|-/etc/x_|-managed":  map[string]any{"result": true, "changes": map[string]any{"diff": "y"}, "__run_num__": 0},
			"file_|-extra_|-/etc/x_|-append":  map[string]any{"result": false, "comment": "no", "__run_num__": 1},
			"file_|-other_|-/etc/y_|-managed": map[string]any{"result": false, "comment": "no", "__run_num__": 2},
		}
	}))
	if r.TotalResources != 2 || r.UpdatedCount != 1 || r.FailedCount != 2 {
		t.Errorf("total %d updated %d failed %d, want 2/1/2", r.TotalResources, r.UpdatedCount, r.FailedCount)
	}
}

// TestDryRuns: the forms salt.utils.args.test_mode takes as test mode, and
// the state functions that only run in it (salt/modules/state.py test,
// request); Chef's why_run in the handler payload.
func TestDryRuns(t *testing.T) {
	cases := map[string]struct {
		fun     string
		funArgs any
		dry     bool
	}{
		"kwarg true":          {"state.apply", []any{"web", map[string]any{"test": true, "__kwarg__": true}}, true},
		"kwarg TEST":          {"state.apply", []any{map[string]any{"TEST": "True"}}, true},
		"kwarg 1":             {"state.highstate", []any{map[string]any{"test": 1}}, true},
		"string test=True":    {"state.sls", []any{"web", "test=True"}, true},
		"string test=yes":     {"state.sls", []any{"test=yes"}, true},
		"kwarg false":         {"state.apply", []any{map[string]any{"test": false}}, false},
		"kwarg string no":     {"state.apply", []any{map[string]any{"test": "no"}}, false},
		"string test=False":   {"state.apply", []any{"test=False"}, false},
		"other kwarg":         {"state.apply", []any{map[string]any{"testing": true}}, false},
		"state.test":          {"state.test", []any{"web"}, true},
		"state.request":       {"state.request", []any{"web"}, true},
		"state.run_request":   {"state.run_request", nil, false},
		"plain state.apply":   {"state.apply", []any{"web"}, false},
		"fun_args not a list": {"state.apply", "test=True", false},
	}
	for name, c := range cases {
		r := mustDecode(t, saltEdit(t, func(_ *string, d map[string]any) { d["fun"], d["fun_args"] = c.fun, c.funArgs }))
		if (r.Kind == KindDryRun) != c.dry {
			t.Errorf("%s: Kind %s, want dry run %v", name, r.Kind, c.dry)
		}
	}
	r := mustDecode(t, edit(t, handlerOK, func(m map[string]any) { m["why_run"] = true }))
	if r.Kind != KindDryRun || r.Key() == mustDecode(t, []byte(handlerOK)).Key() {
		t.Errorf("why_run: Kind %s key %s", r.Kind, r.Key())
	}
	if r := mustDecode(t, edit(t, handlerOK, func(m map[string]any) { m["why_run"] = false })); r.Kind != KindRun {
		t.Errorf("why_run false: Kind %s", r.Kind)
	}
	var test map[string]any
	_ = json.Unmarshal(orchestration(t, "m_master"), &test)
	test["data"].(map[string]any)["fun_args"] = []any{"orch.x", "test=True"}
	b, _ := json.Marshal(test)
	if r := mustDecode(t, b); r.Kind != KindDryRun {
		t.Errorf("orchestration test=True: Kind %s", r.Kind)
	}
}

// TestSaltGrains: runlens' returner adds the minion's grains; they give the
// node's identity.
func TestSaltGrains(t *testing.T) {
	r := mustDecode(t, saltEdit(t, func(_ *string, d map[string]any) {
		d["grains"] = map[string]any{"fqdn": "web1.example.com", "ipv4": []any{"127.0.0.1", "10.0.0.5"}, "os": "Ubuntu",
			"osrelease": "24.04", "saltversion": "3007.1", "roles": []any{"web", "", "lb"}}
	}))
	if r.FQDN != "web1.example.com" || r.IPAddress != "10.0.0.5" || r.Platform != "Ubuntu 24.04" || r.ClientVersion != "3007.1" ||
		len(r.Roles) != 2 || r.Roles[0] != "web" || r.Roles[1] != "lb" {
		t.Errorf("identity from grains: %+v", r)
	}
}

// TestSaltRunnerShapes: orchestrate_single and orchestrate_high return
// {<master>: <states>} without the "data" wrapper (salt/runners/state.py);
// other runners and malformed orchestration returns are rejected.
func TestSaltRunnerShapes(t *testing.T) {
	single := []byte(`{"tag":"salt/run/1/ret","data":{"fun":"runner.state.orchestrate_single","jid":"1","_stamp":"2024-05-01T10:00:00",
		"return":{"m_master":{"salt_|-x_|-x_|-function":{"result":true,"changes":{"ret":1}}}}}}`)
	if r := mustDecode(t, single); r.Node != "m_master" || r.UpdatedCount != 1 || r.ID != "1/m_master" {
		t.Errorf("orchestrate_single: %+v", r)
	}
	compile := []byte(`{"tag":"salt/run/1/ret","data":{"fun":"runner.state.orch","jid":"1","_stamp":"2024-05-01T10:00:00",
		"return":{"data":{"m_master":["Rendering SLS 'base:orch.x' failed: mapping values are not allowed here"]},"outputter":"highstate","retcode":1}}}`)
	if r := mustDecode(t, compile); r.Status != StatusFailure || r.Error == nil || r.Error.Class != "salt.retcode.1" {
		t.Errorf("orchestration compile error: %+v", r)
	}
	for name, c := range map[string]struct{ body, reason string }{
		"other runner":  {`{"tag":"salt/run/1/ret","data":{"fun":"runner.jobs.lookup_jid","jid":"1","_stamp":"2024-05-01T10:00:00","return":{}}}`, "salt runner event, not a minion job return"},
		"runner new":    {`{"tag":"salt/run/1/new","data":{"fun":"runner.state.orchestrate","jid":"1"}}`, "salt runner event, not a minion job return"},
		"two masters":   {`{"tag":"salt/run/1/ret","data":{"fun":"runner.state.orch","jid":"1","_stamp":"2024-05-01T10:00:00","return":{"data":{"a":{},"b":{}}}}}`, "names 2 masters"},
		"no return":     {`{"tag":"salt/run/1/ret","data":{"fun":"runner.state.orch","jid":"1","_stamp":"2024-05-01T10:00:00"}}`, "has no return"},
		"jid mismatch":  {`{"tag":"salt/run/1/ret","data":{"fun":"runner.state.orch","jid":"2","_stamp":"2024-05-01T10:00:00","return":{"data":{"a":{}}}}}`, "does not match"},
		"list return":   {`{"tag":"salt/run/1/ret","data":{"fun":"runner.state.orch","jid":"1","_stamp":"2024-05-01T10:00:00","return":["x"]}}`, "is not a state result"},
		"ssh no fun":    {`{"tag":"salt/job/1/ret/web3","data":{"stderr":"ssh: connect to host","retcode":255,"_stamp":"2024-05-01T10:00:00"}}`, `salt function "" is not a state run`},
		"ssh ping fail": {`{"tag":"salt/job/1/ret/web3","data":{"stderr":"ssh: connect","retcode":255,"fun":"test.ping","_stamp":"2024-05-01T10:00:00"}}`, `"test.ping" is not a state run`},
	} {
		_, err := Decode([]byte(c.body))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if rj := checkRejected(t, err); !strings.Contains(rj.Reason, c.reason) {
			t.Errorf("%s: reason %q, want %q", name, rj.Reason, c.reason)
		}
	}
}
