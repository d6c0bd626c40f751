package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Minimal valid messages of each format; tests change one thing at a time.
const (
	handlerOK = `{"node_name":"web1","status":"success","environment":"prod",
		"run_start_time":"2024-05-01T10:00:00Z","run_end_time":"2024-05-01T10:01:00Z",
		"updated_resources":["file[/etc/hosts]"]}`
	convergeOK = `{"message_type":"run_converge","node_name":"web1","run_id":"r1","status":"success",
		"start_time":"2024-05-01T10:00:00Z","end_time":"2024-05-01T10:01:00Z","node":{},"resources":[]}`
	saltOK = `{"tag":"salt/job/20240501100000123456/ret/web1","data":{"jid":"20240501100000123456","id":"web1",
		"fun":"state.apply","retcode":0,"_stamp":"2024-05-01T10:01:00.000000",
		"return":{"file_|-hosts_|-/etc/hosts_|-managed":{"name":"/etc/hosts","result":true,"changes":{"diff":"x"},"duration":1000.5,"__run_num__":0}}}}`
)

// edit decodes a JSON object, applies f to it and encodes it again.
func edit(t testing.TB, doc string, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func saltEdit(t testing.TB, f func(tag *string, data map[string]any)) []byte {
	return edit(t, saltOK, func(m map[string]any) {
		tag := m["tag"].(string)
		f(&tag, m["data"].(map[string]any))
		m["tag"] = tag
	})
}

func mustDecode(t testing.TB, body []byte) *Run {
	t.Helper()
	r, err := Decode(body)
	if err != nil {
		t.Fatalf("Decode(%.200s): %v", body, err)
	}
	checkInvariants(t, r)
	return r
}

func TestMinimalMessagesDecode(t *testing.T) {
	for name, body := range map[string]string{"handler": handlerOK, "converge": convergeOK, "salt": saltOK} {
		t.Run(name, func(t *testing.T) { mustDecode(t, []byte(body)) })
	}
}

func TestRejections(t *testing.T) {
	invalidNode := []byte(strings.Replace(handlerOK, `"web1"`, "\"web\xff1\"", 1))
	cases := []struct {
		name   string
		body   []byte
		dec    Decoder
		format Format
		reason string
	}{
		{"oversize", []byte(handlerOK), Decoder{MaxBytes: 100}, FormatUnknown, "exceeds the limit of 100 bytes"},
		{"oversize default", append(append([]byte(`{"x":"`), bytes.Repeat([]byte("a"), DefaultMaxBytes)...), `"}`...), Decoder{}, FormatUnknown, "limit of 8388608"},
		{"empty", nil, Decoder{}, FormatUnknown, "empty message"},
		{"blank", []byte(" \n\t"), Decoder{}, FormatUnknown, "empty message"},
		{"not JSON", []byte("hello"), Decoder{}, FormatUnknown, "invalid JSON"},
		{"truncated", []byte(handlerOK[:40]), Decoder{}, FormatUnknown, "invalid JSON"},
		{"trailing comma", []byte(`{"node_name":"a",}`), Decoder{}, FormatUnknown, "invalid JSON"},
		{"array", []byte(`[1,2]`), Decoder{}, FormatUnknown, "not a JSON object"},
		{"null", []byte(`null`), Decoder{}, FormatUnknown, "not a JSON object"},
		{"unknown shape", []byte(`{"hello":"world"}`), Decoder{}, FormatUnknown, "not a chef_handler, chef_data_collector or salt report"},
		{"too deep", []byte(`{"node":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`), Decoder{}, FormatUnknown, "invalid JSON"},

		{"handler wrong status", edit(t, handlerOK, func(m map[string]any) { m["status"] = "aborted" }), Decoder{}, FormatChefHandler, `status "aborted" is not success or failure`},
		{"handler no status", edit(t, handlerOK, func(m map[string]any) { delete(m, "status") }), Decoder{}, FormatChefHandler, "missing status"},
		{"handler missing node", edit(t, handlerOK, func(m map[string]any) { delete(m, "node_name") }), Decoder{}, FormatChefHandler, "node name is missing"},
		{"handler blank node", edit(t, handlerOK, func(m map[string]any) { m["node_name"] = "  " }), Decoder{}, FormatChefHandler, "node name is missing"},
		{"handler invalid UTF-8 node", invalidNode, Decoder{}, FormatChefHandler, "node name is not valid UTF-8"},
		{"handler control char node", edit(t, handlerOK, func(m map[string]any) { m["node_name"] = "web\n1" }), Decoder{}, FormatChefHandler, "node name contains control characters"},
		{"handler bidi node", edit(t, handlerOK, func(m map[string]any) { m["node_name"] = "web\u202e1" }), Decoder{}, FormatChefHandler, "node name contains control characters"},
		{"handler long node", edit(t, handlerOK, func(m map[string]any) { m["node_name"] = strings.Repeat("n", 256) }), Decoder{}, FormatChefHandler, "node name is longer than 255 bytes"},
		{"handler missing end", edit(t, handlerOK, func(m map[string]any) { delete(m, "run_end_time") }), Decoder{}, FormatChefHandler, "missing end time"},
		{"handler bad time", edit(t, handlerOK, func(m map[string]any) { m["run_end_time"] = "yesterday" }), Decoder{}, FormatChefHandler, `run_end_time "yesterday" is not a recognised time`},
		{"handler start after end", edit(t, handlerOK, func(m map[string]any) { m["run_start_time"] = "2024-05-01T10:01:02Z" }), Decoder{}, FormatChefHandler, "is after end time"},
		{"handler numeric status", edit(t, handlerOK, func(m map[string]any) { m["status"] = 1 }), Decoder{}, FormatChefHandler, `status "1" is not success or failure`},

		{"dc action message", edit(t, convergeOK, func(m map[string]any) { m["message_type"] = "action" }), Decoder{}, FormatChefDataCollector, `message_type "action" is not run_start or run_converge`},
		{"dc compliance message", edit(t, convergeOK, func(m map[string]any) { m["message_type"] = "compliance" }), Decoder{}, FormatChefDataCollector, `"compliance"`},
		{"dc wrong status", edit(t, convergeOK, func(m map[string]any) { m["status"] = "started" }), Decoder{}, FormatChefDataCollector, `status "started"`},
		{"dc missing node", edit(t, convergeOK, func(m map[string]any) { delete(m, "node_name") }), Decoder{}, FormatChefDataCollector, "node name is missing"},
		{"dc missing end", edit(t, convergeOK, func(m map[string]any) { delete(m, "end_time") }), Decoder{}, FormatChefDataCollector, "missing end time"},
		{"dc start missing node", []byte(`{"message_type":"run_start","run_id":"r1","start_time":"2024-05-01T10:00:00Z"}`), Decoder{}, FormatChefDataCollector, "node name is missing"},
		{"dc resources not objects", edit(t, convergeOK, func(m map[string]any) { m["resources"] = []any{"file[x]"} }), Decoder{}, FormatChefDataCollector, `field "resources" holds a JSON string where an object is expected`},
		{"dc node not object", edit(t, convergeOK, func(m map[string]any) { m["node"] = "web1" }), Decoder{}, FormatChefDataCollector, `field "node"`},

		{"salt non-state fun", saltEdit(t, func(_ *string, d map[string]any) { d["fun"] = "test.ping"; d["return"] = true }), Decoder{}, FormatSalt, `salt function "test.ping" is not a state run`},
		{"salt cmd.run", saltEdit(t, func(_ *string, d map[string]any) { d["fun"] = "cmd.run"; d["return"] = "ok" }), Decoder{}, FormatSalt, `"cmd.run"`},
		{"salt show_sls", saltEdit(t, func(_ *string, d map[string]any) { d["fun"] = "state.show_sls" }), Decoder{}, FormatSalt, "does not apply states"},
		{"salt non-state return", saltEdit(t, func(_ *string, d map[string]any) { d["return"] = map[string]any{"hosts": map[string]any{}} }), Decoder{}, FormatSalt, "is not a state result"},
		{"salt tag minion mismatch", saltEdit(t, func(tag *string, _ map[string]any) { *tag = "salt/job/20240501100000123456/ret/db1" }), Decoder{}, FormatSalt, `minion id "web1" does not match the tag's minion "db1"`},
		{"salt tag jid mismatch", saltEdit(t, func(tag *string, _ map[string]any) { *tag = "salt/job/1/ret/web1" }), Decoder{}, FormatSalt, "jid"},
		{"salt publish event", saltEdit(t, func(tag *string, d map[string]any) { *tag = "salt/job/1/new" }), Decoder{}, FormatSalt, "salt job-publish event, not a return"},
		{"salt bare publish event", []byte(`{"jid":"1","fun":"state.sls","minions":["a"],"arg":["x"]}`), Decoder{}, FormatSalt, "salt job-publish event, not a return"},
		{"salt progress event", saltEdit(t, func(tag *string, _ map[string]any) { *tag = "salt/job/1/prog/web1/0" }), Decoder{}, FormatSalt, "progress event"},
		{"salt runner event", saltEdit(t, func(tag *string, _ map[string]any) { *tag = "salt/run/1/ret" }), Decoder{}, FormatSalt, "runner event"},
		{"salt other tag", saltEdit(t, func(tag *string, _ map[string]any) { *tag = "minion_start" }), Decoder{}, FormatSalt, "is not a salt event tag"},
		{"salt missing stamp", saltEdit(t, func(_ *string, d map[string]any) { delete(d, "_stamp") }), Decoder{}, FormatSalt, "missing end time"},
		{"salt missing minion", saltEdit(t, func(tag *string, d map[string]any) { *tag = ""; delete(d, "id") }), Decoder{}, FormatSalt, "node name is missing"},
		{"salt no return", saltEdit(t, func(_ *string, d map[string]any) { delete(d, "return") }), Decoder{}, FormatSalt, "has no return"},
		{"salt tag without data", []byte(`{"tag":"salt/job/1/ret/web1"}`), Decoder{}, FormatSalt, "has no data"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := c.dec.Decode(c.body)
			if err == nil {
				t.Fatalf("accepted: %+v", r)
			}
			if r != nil {
				t.Errorf("rejection returned a Run too")
			}
			rj := checkRejected(t, err)
			if rj.Format != c.format {
				t.Errorf("Format = %q, want %q (reason %q)", rj.Format, c.format, rj.Reason)
			}
			if !strings.Contains(rj.Reason, c.reason) {
				t.Errorf("reason %q does not contain %q", rj.Reason, c.reason)
			}
		})
	}
}

func TestRejectedErrorText(t *testing.T) {
	_, err := Decode([]byte(`{}`))
	if got := err.Error(); got != "rejected unknown report: not a chef_handler, chef_data_collector or salt report" {
		t.Errorf("Error() = %q", got)
	}
}

func TestMaxBytesBoundary(t *testing.T) {
	body := []byte(handlerOK)
	if _, err := (Decoder{MaxBytes: len(body)}).Decode(body); err != nil {
		t.Errorf("message of exactly MaxBytes rejected: %v", err)
	}
	if _, err := (Decoder{MaxBytes: len(body) - 1}).Decode(body); err == nil {
		t.Error("message of MaxBytes+1 accepted")
	}
}

// TestSaltStatusNeverFromSuccess covers the old-minion trap: success:true
// with a failing retcode or state must still be a failure.
func TestSaltStatusNeverFromSuccess(t *testing.T) {
	cases := map[string]struct {
		f    func(d map[string]any)
		want Status
	}{
		"retcode 2, success true": {func(d map[string]any) { d["retcode"] = 2; d["success"] = true }, StatusFailure},
		"state false, retcode 0": {func(d map[string]any) {
			d["return"].(map[string]any)["file_|-hosts_|-/etc/hosts_|-managed"].(map[string]any)["result"] = false
		}, StatusFailure},
		"list return, retcode 0":   {func(d map[string]any) { d["return"] = []any{"Rendering SLS failed"} }, StatusFailure},
		"success false, retcode 0": {func(d map[string]any) { d["success"] = false }, StatusSuccess},
		"retcode as string":        {func(d map[string]any) { d["retcode"] = "2" }, StatusFailure},
		"retcode not integer":      {func(d map[string]any) { d["retcode"] = 0.5 }, StatusFailure},
		"no retcode":               {func(d map[string]any) { delete(d, "retcode") }, StatusSuccess},
		"traceback string return":  {func(d map[string]any) { d["return"] = "The minion function caused an exception"; d["retcode"] = 1 }, StatusFailure},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := mustDecode(t, saltEdit(t, func(_ *string, d map[string]any) { c.f(d) }))
			if r.Status != c.want {
				t.Errorf("Status = %q, want %q", r.Status, c.want)
			}
			if (r.Error != nil) != (c.want == StatusFailure) {
				t.Errorf("Error = %+v for status %q", r.Error, r.Status)
			}
		})
	}
}

func TestSaltStates(t *testing.T) {
	body := saltEdit(t, func(_ *string, d map[string]any) {
		d["retcode"] = 2
		d["return"] = map[string]any{
			// Names with the separator, pipes and newlines; no "name" field.
			"cmd_|-script_|-echo a_|-b | tee\nx_|-run": map[string]any{"result": true, "changes": map[string]any{"pid": 1}, "duration": 2.5, "__run_num__": 2},
			"pkg_|-late_|-nginx_|-installed":           map[string]any{"name": "nginx", "result": false, "comment": "second failure", "__run_num__": 3},
			"pkg_|-early_|-curl_|-installed":           map[string]any{"name": "curl", "result": false, "comment": "first failure", "changes": map[string]any{"x": 1}, "__run_num__": 1},
			"file_|-test_|-/tmp/x_|-managed":           map[string]any{"name": "/tmp/x", "result": nil, "changes": map[string]any{"diff": "new"}, "__run_num__": 0},
			"file_|-same_|-/tmp/y_|-managed":           map[string]any{"name": "/tmp/y", "result": true, "changes": map[string]any{}, "duration": "1.5", "__run_num__": 4},
		}
	})
	r := mustDecode(t, body)
	if r.TotalResources != 5 || r.UpdatedCount != 1 || r.FailedCount != 2 {
		t.Errorf("total/updated/failed = %d/%d/%d, want 5/1/2", r.TotalResources, r.UpdatedCount, r.FailedCount)
	}
	if want := (Resource{"cmd", "echo a_|-b | tee\nx"}); len(r.Updated) != 1 || r.Updated[0] != want {
		t.Errorf("Updated = %q, want %q", r.Updated, want)
	}
	if len(r.Failed) != 2 || r.Failed[0] != (Resource{"pkg", "curl"}) || r.Failed[1] != (Resource{"pkg", "nginx"}) {
		t.Errorf("Failed = %q, want in run order", r.Failed)
	}
	if r.Error == nil || r.Error.Class != "salt.retcode.2" || r.Error.Message != "first failure" {
		t.Errorf("Error = %+v", r.Error)
	}
	if r.Duration != 4*time.Millisecond || !r.Start.Equal(r.End.Add(-4*time.Millisecond)) {
		t.Errorf("Duration = %v, Start = %v, End = %v", r.Duration, r.Start, r.End)
	}
}

func TestSaltBareAndEnvironment(t *testing.T) {
	var m map[string]any
	if err := json.Unmarshal([]byte(saltOK), &m); err != nil {
		t.Fatal(err)
	}
	data := m["data"].(map[string]any)
	for name, c := range map[string]struct {
		funArgs, arg any
		want         string
	}{
		"none":                {nil, nil, "base"},
		"string arg":          {[]any{"web", "saltenv=dev"}, nil, "dev"},
		"kwarg dict":          {[]any{"web", map[string]any{"saltenv": "qa", "__kwarg__": true}}, nil, "qa"},
		"from arg":            {[]any{"web"}, []any{"pillarenv=x", "saltenv=stage"}, "stage"},
		"fun_args wins":       {[]any{"saltenv=one"}, []any{"saltenv=two"}, "one"},
		"test kwarg only":     {[]any{map[string]any{"test": true}}, nil, "base"},
		"non-string saltenv":  {[]any{map[string]any{"saltenv": nil}}, nil, "base"},
		"fun_args not a list": {"saltenv=dev", nil, "base"},
	} {
		t.Run(name, func(t *testing.T) {
			data["fun_args"], data["arg"] = c.funArgs, c.arg
			b, _ := json.Marshal(data) // bare data object, no tag
			r := mustDecode(t, b)
			if r.Environment != c.want {
				t.Errorf("Environment = %q, want %q", r.Environment, c.want)
			}
			if r.ID != "20240501100000123456/web1" || r.Node != "web1" {
				t.Errorf("ID %q, Node %q", r.ID, r.Node)
			}
		})
	}
}

func TestSaltNodeFromTag(t *testing.T) {
	r := mustDecode(t, saltEdit(t, func(_ *string, d map[string]any) { delete(d, "id"); delete(d, "jid") }))
	if r.Node != "web1" || r.ID != "20240501100000123456/web1" {
		t.Errorf("Node %q ID %q", r.Node, r.ID)
	}
}

func TestSaltTestModeNullResult(t *testing.T) {
	r := mustDecode(t, saltEdit(t, func(_ *string, d map[string]any) {
		d["return"].(map[string]any)["file_|-hosts_|-/etc/hosts_|-managed"].(map[string]any)["result"] = nil
	}))
	if r.Status != StatusSuccess || r.UpdatedCount != 0 || r.FailedCount != 0 || r.TotalResources != 1 {
		t.Errorf("test-mode run: %+v", r)
	}
}

func TestHandlerDetails(t *testing.T) {
	r := mustDecode(t, edit(t, handlerOK, func(m map[string]any) {
		m["run_id"] = "abc"
		m["roles"] = []any{"web", "", "lb"}
		m["run_list"] = []any{"role[web]"}
		m["depends_on"] = []any{"db"}
		m["policy_name"], m["policy_group"] = "base", "prod"
		m["chef_version"], m["platform"] = "18.2.7", "ubuntu"
		m["updated_resources"] = []any{"execute[echo [a] b]", "log", "template[x"}
		m["run_elapsed_time"] = 61.5
	}))
	if r.ID != "abc" || r.Key() != "run:abc" {
		t.Errorf("ID %q Key %q", r.ID, r.Key())
	}
	if fmt.Sprint(r.Roles, r.RunList, r.DependsOn) != "[web lb] [role[web]] [db]" {
		t.Errorf("lists %v %v %v", r.Roles, r.RunList, r.DependsOn)
	}
	if r.PolicyName != "base" || r.PolicyGroup != "prod" || r.ClientVersion != "18.2.7" || r.Platform != "ubuntu" {
		t.Errorf("identity %+v", r)
	}
	want := []Resource{{"execute", "echo [a] b"}, {"log", ""}, {"template", "x"}}
	if fmt.Sprint(r.Updated) != fmt.Sprint(want) || r.UpdatedCount != 3 {
		t.Errorf("Updated = %q (%d)", r.Updated, r.UpdatedCount)
	}
	if r.Duration != 61500*time.Millisecond {
		t.Errorf("Duration = %v, want run_elapsed_time", r.Duration)
	}
}

func TestHandlerCountsAndFallbacks(t *testing.T) {
	// Without the list, the header count is all there is.
	r := mustDecode(t, edit(t, handlerOK, func(m map[string]any) {
		delete(m, "updated_resources")
		m["updated_resources_count"] = 7
		delete(m, "environment")
		delete(m, "run_start_time")
		m["run_elapsed_time"] = 30
	}))
	if r.UpdatedCount != 7 || len(r.Updated) != 0 || r.UpdatedByType[OtherResourceType] != 7 || r.Environment != "_default" {
		t.Errorf("count %d, list %v, env %q", r.UpdatedCount, r.Updated, r.Environment)
	}
	if !r.Start.Equal(r.End.Add(-30*time.Second)) || r.Duration != 30*time.Second {
		t.Errorf("Start %v End %v Duration %v", r.Start, r.End, r.Duration)
	}
	// With the list, the list wins over a disagreeing count.
	r = mustDecode(t, edit(t, handlerOK, func(m map[string]any) { m["updated_resources_count"] = 99 }))
	if r.UpdatedCount != 1 {
		t.Errorf("UpdatedCount = %d, want len(updated_resources)", r.UpdatedCount)
	}
	// report_generated_at stands in for a missing end time.
	r = mustDecode(t, edit(t, handlerOK, func(m map[string]any) {
		delete(m, "run_end_time")
		m["report_generated_at"] = "2024-05-01T10:02:00Z"
	}))
	if r.End != time.Date(2024, 5, 1, 10, 2, 0, 0, time.UTC) {
		t.Errorf("End = %v", r.End)
	}
	// A formatted exception string instead of an error object.
	r = mustDecode(t, edit(t, handlerOK, func(m map[string]any) {
		m["status"] = "failure"
		m["error"] = "Errno::ENOENT: No such file or directory @ rb_sysopen - /x"
	}))
	if r.Error == nil || r.Error.Class != "Errno::ENOENT" || r.Error.Message != "No such file or directory @ rb_sysopen - /x" {
		t.Errorf("Error = %+v", r.Error)
	}
	// A negative count is not a count.
	r = mustDecode(t, edit(t, handlerOK, func(m map[string]any) { delete(m, "updated_resources"); m["updated_resources_count"] = -3 }))
	if r.UpdatedCount != 0 {
		t.Errorf("UpdatedCount = %d", r.UpdatedCount)
	}
}

func TestDataCollectorDetails(t *testing.T) {
	body := edit(t, convergeOK, func(m map[string]any) {
		m["status"] = "failure"
		m["node"] = map[string]any{"name": "web1"}
		m["chef_environment"] = "staging"
		m["policy_name"] = nil
		m["resources"] = []any{
			map[string]any{"type": "file", "name": "/a", "status": "updated"},
			// A second action or a notification of the same resource: one
			// resource, counted once (run_end_message.rb lists one record
			// per action record of the action collection).
			map[string]any{"type": "file", "name": "/a", "status": "updated"},
			map[string]any{"type": "package", "name": []any{"git", "curl"}, "status": "updated"},
			map[string]any{"type": "service", "name": "x", "status": "failed", "error_message": "boom",
				"error": map[string]any{"class": "Mixlib::ShellOut::ShellCommandFailed"}},
			map[string]any{"type": "file", "name": "/b", "status": "unprocessed", "duration": ""},
		}
	})
	r := mustDecode(t, body)
	if r.Environment != "staging" || r.IdentityMissing {
		t.Errorf("Environment = %q (identity missing %v), want top-level chef_environment fallback", r.Environment, r.IdentityMissing)
	}
	if r.UpdatedCount != 2 || r.FailedCount != 1 || r.TotalResources != 4 || r.UpdatedByType["file"] != 1 {
		t.Errorf("counts %d/%d/%d %v, want 2/1/4 with file[/a] once", r.UpdatedCount, r.FailedCount, r.TotalResources, r.UpdatedByType)
	}
	if len(r.Updated) != 2 || r.Updated[1] != (Resource{"package", "git, curl"}) {
		t.Errorf("Updated = %v", r.Updated)
	}
	if r.Error == nil || r.Error.Class != "Mixlib::ShellOut::ShellCommandFailed" || r.Error.Message != "boom" {
		t.Errorf("Error = %+v, want the failed resource's", r.Error)
	}

	// A run that failed before the node loaded: node {} and no
	// chef_environment anywhere (run_end_message.rb sends
	// node&.data_for_save || {}). The report says so instead of claiming
	// the node is in _default without roles; "_default" is only the
	// fallback for a node never seen before, and pkg/fleet keeps a known
	// node's identity (fleet's TestEarlyFailureKeepsIdentity).
	r = mustDecode(t, []byte(convergeOK))
	if !r.IdentityMissing || r.Environment != "_default" || r.FQDN != "" || r.Roles != nil {
		t.Errorf("empty node: identity missing %v, env %q fqdn %q roles %v", r.IdentityMissing, r.Environment, r.FQDN, r.Roles)
	}
	// node_name missing: the node object's name stands in.
	r = mustDecode(t, edit(t, convergeOK, func(m map[string]any) {
		delete(m, "node_name")
		m["node"] = map[string]any{"name": "from-node", "chef_environment": "prod"}
	}))
	if r.Node != "from-node" || r.Environment != "prod" || r.IdentityMissing {
		t.Errorf("Node %q env %q identity missing %v", r.Node, r.Environment, r.IdentityMissing)
	}
}

func TestRunStartHasNoEnvironmentClaim(t *testing.T) {
	r := mustDecode(t, []byte(`{"message_type":"run_start","node_name":"web1","run_id":"r1","start_time":"2024-05-01T10:00:00Z"}`))
	if r.Kind != KindStart || r.Environment != "" || r.Status != "" || !r.End.IsZero() {
		t.Errorf("run_start = %+v", r)
	}
}

func TestBoundsHandler100kResources(t *testing.T) {
	const n = 100_000
	var b bytes.Buffer
	b.WriteString(`{"node_name":"big","status":"success","run_end_time":"2024-05-01T10:00:00Z","updated_resources":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"file[/srv/f%d]"`, i)
	}
	b.WriteString(`]}`)
	r := mustDecode(t, b.Bytes())
	if r.UpdatedCount != n || r.UpdatedByType["file"] != n || len(r.UpdatedByType) != 1 {
		t.Errorf("UpdatedCount %d, by type %v", r.UpdatedCount, r.UpdatedByType)
	}
	if len(r.Updated) != MaxListedResources || r.Updated[0].Name != "/srv/f0" {
		t.Errorf("Updated has %d entries, first %v", len(r.Updated), r.Updated[0])
	}
}

func TestBoundsDistinctTypes(t *testing.T) {
	const n = 1000
	var b bytes.Buffer
	b.WriteString(`{"message_type":"run_converge","node_name":"big","status":"failure","end_time":"2024-05-01T10:00:00Z","resources":[`)
	for i := range n {
		fmt.Fprintf(&b, `{"type":"t%d","name":"n","status":"updated"},{"type":"t%d","name":"n","status":"failed"},`, i, i)
	}
	b.WriteString(`{"type":"x","name":"n","status":"up-to-date"}]}`)
	r := mustDecode(t, b.Bytes())
	if len(r.UpdatedByType) > MaxResourceTypes || r.UpdatedByType[OtherResourceType] != n-(MaxResourceTypes-1) {
		t.Errorf("%d keys, other = %d", len(r.UpdatedByType), r.UpdatedByType[OtherResourceType])
	}
	sum := 0
	for _, v := range r.UpdatedByType {
		sum += v
	}
	// Each t<i>[n] has two records, updated then failed: one resource.
	if sum != n || r.UpdatedCount != n || r.FailedCount != n || r.TotalResources != n+1 {
		t.Errorf("sum %d updated %d failed %d total %d", sum, r.UpdatedCount, r.FailedCount, r.TotalResources)
	}
	if len(r.Failed) != MaxListedResources {
		t.Errorf("Failed has %d entries", len(r.Failed))
	}
}

func TestBoundsStrings(t *testing.T) {
	long := strings.Repeat("é", 1000) // 2000 bytes, cuts must respect runes
	roles := make([]any, 200)
	for i := range roles {
		roles[i] = fmt.Sprintf("role%d", i)
	}
	r := mustDecode(t, edit(t, handlerOK, func(m map[string]any) {
		m["status"] = "failure"
		m["environment"] = "prod\x01" + long
		m["fqdn"] = "bad\xffbyte"
		m["roles"] = roles
		m["error"] = map[string]any{"class": "E", "message": long}
		m["updated_resources"] = []any{"file[" + long + "]"}
	}))
	if len(r.Environment) > MaxNameBytes || !utf8.ValidString(r.Environment) || !strings.HasPrefix(r.Environment, "prod\uFFFD") {
		t.Errorf("Environment %q", r.Environment)
	}
	if r.FQDN != "bad\uFFFDbyte" {
		t.Errorf("FQDN %q", r.FQDN)
	}
	if len(r.Roles) != MaxListItems || r.Roles[0] != "role0" {
		t.Errorf("Roles has %d", len(r.Roles))
	}
	if len(r.Error.Message) > MaxErrorMessageBytes || len(r.Error.Message) < MaxErrorMessageBytes-1 || !utf8.ValidString(r.Error.Message) {
		t.Errorf("error message %d bytes", len(r.Error.Message))
	}
	if n := len(r.Updated[0].Name); n > MaxResourceNameBytes || n < MaxResourceNameBytes-1 {
		t.Errorf("resource name %d bytes", n)
	}
}

func TestTimeFormats(t *testing.T) {
	want := time.Date(2018, 9, 14, 19, 37, 42, 0, time.UTC)
	for in, w := range map[string]time.Time{
		"2018-09-14T19:37:42Z":             want,
		"2018-09-14T19:37:42.250Z":         want.Add(250 * time.Millisecond),
		"2018-09-14T21:37:42+02:00":        want,
		"2018-09-14T21:37:42.5+02:00":      want.Add(500 * time.Millisecond),
		"2018-09-14T19:37:42+0000":         want,
		"2018-09-14 19:37:42 +0000":        want, // Ruby Time#to_s
		"2018-09-14 15:37:42 -0400":        want,
		"2018-09-14 19:37:42.123456 +0000": want.Add(123456 * time.Microsecond),
		"2018-09-14 19:37:42 UTC":          want,                               // Ruby Time#to_s for UTC times
		"2018-09-14T19:37:42.035412":       want.Add(35412 * time.Microsecond), // Salt _stamp
		"2018-09-14T19:37:42":              want,
		" 2018-09-14T19:37:42Z ":           want,
	} {
		got, ok := parseTime(in)
		if !ok || !got.Equal(w) || got.Location() != time.UTC {
			t.Errorf("parseTime(%q) = %v, %v; want %v UTC", in, got, ok, w)
		}
	}
	for _, in := range []string{"yesterday", "2018-09-14", "1536953862", "2018-09-14 19:37:42 CEST", "2018-13-14T19:37:42Z"} {
		if got, ok := parseTime(in); ok {
			t.Errorf("parseTime(%q) = %v, want failure", in, got)
		}
	}
	// Through the decoder: a Ruby-style handler report.
	r := mustDecode(t, edit(t, handlerOK, func(m map[string]any) {
		m["run_start_time"] = "2018-09-14 19:37:42 +0000"
		m["run_end_time"] = "2018-09-14 19:39:34 +0000"
	}))
	if r.Duration != 112*time.Second || !r.Start.Equal(want) {
		t.Errorf("Start %v Duration %v", r.Start, r.Duration)
	}
}

func TestStartSlightlyAfterEnd(t *testing.T) {
	// Independent rounding can put start up to a second after end: accepted, no negative duration.
	r := mustDecode(t, edit(t, handlerOK, func(m map[string]any) { m["run_start_time"] = "2024-05-01T10:01:00.9Z" }))
	if r.Duration != 0 {
		t.Errorf("Duration = %v", r.Duration)
	}
}

func TestKeyStability(t *testing.T) {
	// No run id: the key hashes node, start, end and status, whatever the
	// zone the times were written in.
	a := mustDecode(t, []byte(handlerOK))
	b := mustDecode(t, edit(t, handlerOK, func(m map[string]any) {
		m["run_start_time"] = "2024-05-01 12:00:00 +0200"
		m["run_end_time"] = "2024-05-01T12:01:00+02:00"
		m["fqdn"] = "other.example" // not part of the identity
	}))
	if a.ID != "" || a.Key() != b.Key() || !strings.HasPrefix(a.Key(), "h:") {
		t.Errorf("keys %q vs %q", a.Key(), b.Key())
	}
	c := mustDecode(t, edit(t, handlerOK, func(m map[string]any) { m["status"] = "failure" }))
	if c.Key() == a.Key() {
		t.Error("different status, same key")
	}
	// Salt: jid/minion.
	s1, s2 := mustDecode(t, []byte(saltOK)), mustDecode(t, []byte(saltOK))
	if s1.Key() != s2.Key() || s1.Key() != "run:20240501100000123456/web1" {
		t.Errorf("salt keys %q %q", s1.Key(), s2.Key())
	}
	// Chef data collector: run_start and run_converge of one run differ.
	start := mustDecode(t, []byte(`{"message_type":"run_start","node_name":"web1","run_id":"r1","start_time":"2024-05-01T10:00:00Z"}`))
	conv := mustDecode(t, []byte(convergeOK))
	if start.ID != conv.ID || start.Key() == conv.Key() {
		t.Errorf("start %q converge %q", start.Key(), conv.Key())
	}
}

func TestDecoderNeverPanicsOnOddValues(t *testing.T) {
	// Types other than the documented ones, in every field runlens reads.
	odd := []any{nil, true, 1e308, -1, "", "x", []any{}, []any{nil, 1, []any{"a"}, map[string]any{}}, map[string]any{"a": 1}}
	for _, doc := range []string{handlerOK, convergeOK, saltOK} {
		var m map[string]any
		_ = json.Unmarshal([]byte(doc), &m)
		keys := []string{}
		for k := range m {
			keys = append(keys, k)
		}
		keys = append(keys, "run_elapsed_time", "updated_resources_count", "roles", "error", "node", "resources", "return", "retcode", "fun_args", "arg", "_stamp", "minions")
		for _, k := range keys {
			for _, v := range odd {
				b := edit(t, doc, func(m map[string]any) {
					if d, ok := m["data"].(map[string]any); ok && k != "tag" && k != "data" {
						d[k] = v
					} else {
						m[k] = v
					}
				})
				r, err := Decode(b)
				if err != nil {
					checkRejected(t, err)
				} else {
					checkInvariants(t, r)
				}
			}
		}
	}
}

// runlens.depends_on is read from the node's attributes, override first, as
// Chef merges them.
func TestDataCollectorDependsOnAttribute(t *testing.T) {
	body := []byte(`{"message_type":"run_converge","node_name":"web-1","run_id":"r1","status":"success",
		"start_time":"2026-01-01T00:00:00Z","end_time":"2026-01-01T00:01:00Z","resources":[],
		"node":{"chef_environment":"prod","default":{"runlens":{"depends_on":["ignored"]}},
		"normal":{"runlens":{"depends_on":["db","cache"]}}}}`)
	r, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.DependsOn) != 2 || r.DependsOn[0] != "db" || r.DependsOn[1] != "cache" {
		t.Fatalf("DependsOn = %v", r.DependsOn)
	}
}
