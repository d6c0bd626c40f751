package report

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/runlens/runlens/internal/fixtures"
)

// want is what a fixture must decode to. The values were read from the
// fixture files with python3 and jq, not copied from the decoder's output.
// Resource counts count each resource (type and name) once, however many
// records (one per action or notification) the data collector lists, and
// are the same for a data collector message and the handler payload of the
// same run (fixtures 03 and 07: 68 records, 63 resources). They were counted
// with python3: distinct (type, name) pairs of resources[], updated if any of
// the pair's records is "updated", failed if any is "failed" without
// ignore_failure.
type want struct {
	reject string // substring of the rejection reason; the rest is ignored

	format   Format
	kind     Kind
	id       string
	node     string
	env      string
	status   Status
	start    time.Time
	end      time.Time
	duration time.Duration
	updated  int
	failed   int
	total    int

	// Checked only when set.
	fqdn          string
	ip            string
	roles         []string
	runList       []string
	policy        [2]string
	clientVersion string
	errClass      string
	errMsgPrefix  string
	byType        map[string]int
	updatedList   []Resource // prefix of Run.Updated
	failedList    []Resource

	identityMissing bool // always checked
}

// fixture03Types are the updated resources of fixtures 03 and 07 (one run,
// two formats) by type, each resource once.
var fixture03Types = map[string]int{"directory": 7, "template": 23, "systemd_unit": 1, "service": 2, "file": 13,
	"apt_update": 1, "apt_package": 3, "link": 6, "execute": 3, "mysql_client_installation_package": 1,
	"mysql_service": 1, "mysql2_chef_gem_mysql2_chef_gem_mysql": 1, "mysql_database_user": 1}

func ts(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v.UTC()
}

func fixtureWants(t *testing.T) map[string]want {
	const (
		run02   = "ba6acb91-1eaa-4c84-8d68-f19ee641e606"
		run01   = "b3bbae70-1e93-4ffe-8499-9559601631fa"
		node01  = "chefdk-ubuntu-16.04-tester-91bc78"
		insight = "insights.chef.co"
	)
	return map[string]want{
		"chef/01-run_start-ubuntu-success.json": {
			format: FormatChefDataCollector, kind: KindStart, id: run01, node: node01,
			start: ts(t, "2017-11-01T21:09:42Z"),
		},
		"chef/01-run_converge-ubuntu-success-92res.json": {
			format: FormatChefDataCollector, kind: KindRun, id: run01, node: node01, env: "manhattan",
			status: StatusSuccess, start: ts(t, "2017-11-01T21:09:42Z"), end: ts(t, "2017-11-01T21:10:20Z"),
			duration: 38 * time.Second, updated: 12, failed: 0, total: 86, // 92 records; header says 354
			fqdn: "ip-245-166-77-94.us-west-2.compute.internal", ip: "245.166.77.94", roles: []string{},
			runList: []string{"recipe[opscode-ci::slave]"}, clientVersion: "12.21.3",
			byType: map[string]int{"apt_repository": 1, "apt_update": 1, "file": 2, "execute": 3,
				"ruby_block": 2, "log": 1, "remote_file": 1, "jenkins_ssh_slave": 1},
			updatedList: []Resource{{"apt_repository", "openjdk-r"}, {"apt_update", "update"}, {"file", "/home/jenkins/.gitconfig"}},
		},
		"chef/02-run_start-resource-failure.json": {
			// id differs from run_id on purpose: run_id pairs start and converge.
			format: FormatChefDataCollector, kind: KindStart, id: run02, node: insight,
			start: ts(t, "2016-06-28T20:05:29Z"),
		},
		"chef/02-run_converge-resource-failure.json": {
			format: FormatChefDataCollector, kind: KindRun, id: run02, node: insight, env: "_default",
			status: StatusFailure, start: ts(t, "2016-06-28T20:05:29Z"), end: ts(t, "2016-06-28T20:05:30Z"),
			duration: time.Second, updated: 4, failed: 1, total: 8, // 10 records
			fqdn: insight, ip: "192.168.1.92", roles: []string{"role1", "role2"}, clientVersion: "12.12.6",
			errClass:     "Chef::Exceptions::EnclosingDirectoryDoesNotExist",
			errMsgPrefix: "file[/failed/file/resource] (insights-test::default line 26) had an error",
			byType:       map[string]int{"execute": 2, "file": 2},
			updatedList: []Resource{{"execute", "ls"}, {"file", "/tmp/test.txt"}, {"execute", "ls -l"},
				{"file", "/tmp/always-updated.txt"}},
			failedList: []Resource{{"file", "/failed/file/resource"}},
		},
		"chef/03-run_converge-two-roles-success-129res.json": {
			format: FormatChefDataCollector, kind: KindRun, id: "b978a449-8482-4245-b717-34ba1c9d378c",
			node: "chef-client-dev-2.test", env: "_default", status: StatusSuccess,
			start: ts(t, "2018-09-14T19:37:42Z"), end: ts(t, "2018-09-14T19:39:34Z"), duration: 112 * time.Second,
			updated: 63, failed: 0, total: 120, // 129 records, 68 of them "updated"
			roles: []string{"none", "web"}, runList: []string{"role[none]", "role[web]"}, clientVersion: "12.18.31",
			byType: fixture03Types,
		},
		"chef/04-run_converge-policyfile-solo-failure.json": {
			format: FormatChefDataCollector, kind: KindRun, id: "d6a8f051-9494-498d-9a17-2c3bcbce3ac7",
			node: "b352680d0cca", env: "local", status: StatusFailure,
			start: ts(t, "2019-12-10T20:15:10Z"), end: ts(t, "2019-12-10T20:15:11Z"), duration: time.Second,
			updated: 0, failed: 1, total: 20,
			ip: "172.17.0.2", policy: [2]string{"base", "local"}, clientVersion: "14.14.29",
			errClass:   "Chef::Exceptions::EnclosingDirectoryDoesNotExist",
			failedList: []Resource{{"cookbook_file", "/hab/user/config-baseline/config/user.toml"}},
		},
		"chef/05-run_converge-compile-error-NameError.json": {
			format: FormatChefDataCollector, kind: KindRun, id: "7188b88b-2236-4e27-a875-d3a10a70c497",
			node: "chef-client-dev.test", env: "_default", status: StatusFailure,
			start: ts(t, "2018-09-13T20:43:01Z"), end: ts(t, "2018-09-13T20:43:01Z"),
			updated: 0, failed: 0, total: 0, roles: []string{"web"},
			errClass: "NameError", errMsgPrefix: "undefined local variable or method `passwords'",
		},
		"chef/05-run_start-MALFORMED-trailing-comma.json": {reject: "invalid JSON"},
		"chef/06-run_converge-v1.1.0-failure-RECONSTRUCTED-compact.json": {
			format: FormatChefDataCollector, kind: KindRun, id: run02, node: insight, env: "_default",
			status: StatusFailure, start: ts(t, "2016-06-28T20:05:29Z"), end: ts(t, "2016-06-28T20:05:30Z"),
			duration: time.Second, updated: 1, failed: 1, total: 4, // 5 records
			roles: []string{"role1", "role2"}, clientVersion: "18.4.12", policy: [2]string{"", ""},
			errClass:    "Chef::Exceptions::EnclosingDirectoryDoesNotExist",
			updatedList: []Resource{{"execute", "ls"}},
			failedList:  []Resource{{"file", "/failed/file/resource"}},
		},
		"chef/07-handler-payload-success-RECONSTRUCTED.json": {
			format: FormatChefHandler, kind: KindRun, node: "chef-client-dev-2.test", env: "_default",
			status: StatusSuccess, start: ts(t, "2018-09-14T19:37:42Z"), end: ts(t, "2018-09-14T19:39:34Z"),
			// 68 strings, 63 distinct: the same run as fixture 03, the same counts.
			duration: 112 * time.Second, updated: 63, fqdn: "chef-client-dev-2.test", ip: "10.0.2.15",
			byType:      fixture03Types,
			updatedList: []Resource{{"directory", "/var/run/chef"}, {"directory", "/var/cache/chef"}},
		},
		"chef/08-handler-payload-failure-RECONSTRUCTED.json": {
			format: FormatChefHandler, kind: KindRun, node: insight, env: "_default",
			status: StatusFailure, start: ts(t, "2016-06-28T20:05:29Z"), end: ts(t, "2016-06-28T20:05:30Z"),
			duration: time.Second, updated: 4, failed: 0,
			errClass:     "Chef::Exceptions::EnclosingDirectoryDoesNotExist",
			errMsgPrefix: "file[/failed/file/resource] (insights-test::default line 26)",
			updatedList: []Resource{{"execute", "ls"}, {"file", "/tmp/test.txt"}, {"execute", "ls -l"},
				{"file", "/tmp/always-updated.txt"}},
		},
		"salt/01-ret-state.apply-success-with-changes.json": {
			format: FormatSalt, kind: KindRun, id: "20211109174620871797/d10-master-01.example.local",
			node: "d10-master-01.example.local", env: "base", status: StatusSuccess,
			start: ts(t, "2021-11-09T17:46:21.021717Z"), end: ts(t, "2021-11-09T17:46:21.035412Z"),
			duration: 13695 * time.Microsecond, updated: 2, failed: 0, total: 2,
			byType:      map[string]int{"cmd": 2},
			updatedList: []Resource{{"cmd", "echo includeme"}, {"cmd", "echo applyme"}},
		},
		"salt/02-ret-state.apply-failure-one-state-false.json": {
			// success:true with retcode 2: status comes from retcode/result.
			format: FormatSalt, kind: KindRun, id: "20181227105933129338/MacPro", node: "MacPro", env: "base",
			status: StatusFailure, start: ts(t, "2018-12-27T10:59:46.268973Z"), end: ts(t, "2018-12-27T11:00:13.301245Z"),
			duration: 27032272 * time.Microsecond, updated: 1, failed: 1, total: 4,
			errClass: "salt.retcode.2", errMsgPrefix: "The following packages failed to install/update: caskroom/cask/macvim",
			byType:      map[string]int{"git": 1},
			updatedList: []Resource{{"git", "https://github.com/saltstack/salt-vim.git"}},
			failedList:  []Resource{{"pkg", "caskroom/cask/macvim"}},
		},
		"salt/03-ret-state.apply-no-top-file-failure-REAL-BUS.json": {
			format: FormatSalt, kind: KindRun, id: "20201105221605666661/ss04", node: "ss04", env: "base",
			status: StatusFailure, end: ts(t, "2020-11-05T22:16:06.377513Z"), updated: 0, failed: 1, total: 1,
			errClass: "salt.retcode.2", errMsgPrefix: "No Top file or master_tops data matches found.",
			failedList: []Resource{{"no", "No States"}},
		},
		"salt/04-ret-state.sls-compile-error-return-is-list-REAL-BUS.json": {
			format: FormatSalt, kind: KindRun, id: "20170111033348105495/jerry", node: "jerry", env: "base",
			status: StatusFailure, end: ts(t, "2017-01-11T10:33:48.326565Z"),
			errClass: "salt.retcode.1", errMsgPrefix: "No matching sls found for 'badslsname' in env 'base'",
		},
		"salt/05-ret-state.highstate-no-changes-with-tgt.json": {
			format: FormatSalt, kind: KindRun, id: "20260218151902735416/test-node-00", node: "test-node-00",
			env: "branch_name", status: StatusSuccess,
			start: ts(t, "2026-02-18T15:19:02.721683Z"), end: ts(t, "2026-02-18T15:19:02.735941Z"),
			duration: 14258 * time.Microsecond, updated: 0, failed: 0, total: 1,
		},
		"salt/06-new-job-state.sls-REAL-BUS.json": {reject: "job-publish event"},
	}
}

// TestFixtures decodes every shared sample. A new fixture without an entry
// in fixtureWants fails the test, so the table cannot silently fall behind.
func TestFixtures(t *testing.T) {
	wants := fixtureWants(t)
	seen := map[string]bool{}
	for _, sub := range []string{"chef", "salt"} {
		entries, err := os.ReadDir(fixtures.Dir(t, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() || strings.HasPrefix(e.Name(), "schema-") {
				continue
			}
			name := sub + "/" + e.Name()
			seen[name] = true
			t.Run(name, func(t *testing.T) {
				w, ok := wants[name]
				if !ok {
					t.Fatalf("no expectation for fixture %s: add one to fixtureWants", name)
				}
				body, err := os.ReadFile(fixtures.Dir(t, sub, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				checkFixture(t, body, w)
			})
		}
	}
	for name := range wants {
		if !seen[name] {
			t.Errorf("expected fixture %s was not found", name)
		}
	}
}

func checkFixture(t *testing.T, body []byte, w want) {
	t.Helper()
	r, err := Decode(body)
	if w.reject != "" {
		var rj *Rejected
		if !errors.As(err, &rj) {
			t.Fatalf("want rejection containing %q, got run %+v, err %v", w.reject, r, err)
		}
		if !strings.Contains(rj.Reason, w.reject) {
			t.Fatalf("reason %q does not contain %q", rj.Reason, w.reject)
		}
		return
	}
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	checkInvariants(t, r)
	eq := func(field string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", field, got, want)
		}
	}
	eq("Format", r.Format, w.format)
	eq("Kind", r.Kind, w.kind)
	eq("ID", r.ID, w.id)
	eq("Node", r.Node, w.node)
	eq("Environment", r.Environment, w.env)
	eq("Status", r.Status, w.status)
	eq("Start", r.Start, w.start)
	eq("End", r.End, w.end)
	eq("Duration", r.Duration, w.duration)
	eq("UpdatedCount", r.UpdatedCount, w.updated)
	eq("FailedCount", r.FailedCount, w.failed)
	eq("TotalResources", r.TotalResources, w.total)
	eq("IdentityMissing", r.IdentityMissing, w.identityMissing)
	if w.fqdn != "" {
		eq("FQDN", r.FQDN, w.fqdn)
	}
	if w.ip != "" {
		eq("IPAddress", r.IPAddress, w.ip)
	}
	if w.roles != nil {
		eq("Roles", append([]string{}, r.Roles...), w.roles)
	}
	if w.runList != nil {
		eq("RunList", r.RunList, w.runList)
	}
	eq("PolicyName/Group", [2]string{r.PolicyName, r.PolicyGroup}, w.policy)
	if w.clientVersion != "" {
		eq("ClientVersion", r.ClientVersion, w.clientVersion)
	}
	if w.errClass != "" || w.errMsgPrefix != "" {
		if r.Error == nil {
			t.Fatalf("Error = nil, want class %q", w.errClass)
		}
		eq("Error.Class", r.Error.Class, w.errClass)
		if !strings.HasPrefix(r.Error.Message, w.errMsgPrefix) {
			t.Errorf("Error.Message = %q, want prefix %q", r.Error.Message, w.errMsgPrefix)
		}
	} else if r.Error != nil {
		t.Errorf("Error = %+v, want nil", r.Error)
	}
	if w.byType != nil {
		eq("UpdatedByType", r.UpdatedByType, w.byType)
	}
	if len(w.updatedList) > 0 {
		if len(r.Updated) < len(w.updatedList) {
			t.Fatalf("Updated = %v, want prefix %v", r.Updated, w.updatedList)
		}
		eq("Updated prefix", r.Updated[:len(w.updatedList)], w.updatedList)
	}
	if w.failedList != nil {
		eq("Failed", r.Failed, w.failedList)
	}
}

// TestFixtureStartAndConvergePair checks that a data collector run_start and
// its run_converge share the run id yet get distinct keys, so the converge
// is not dropped as a duplicate of the start.
func TestFixtureStartAndConvergePair(t *testing.T) {
	for _, pair := range [][2]string{
		{"01-run_start-ubuntu-success.json", "01-run_converge-ubuntu-success-92res.json"},
		{"02-run_start-resource-failure.json", "02-run_converge-resource-failure.json"},
	} {
		start := mustDecodeFile(t, "chef", pair[0])
		conv := mustDecodeFile(t, "chef", pair[1])
		if start.ID != conv.ID {
			t.Errorf("%s: run ids differ: %q vs %q", pair[0], start.ID, conv.ID)
		}
		if start.Key() == conv.Key() {
			t.Errorf("%s: start and converge share key %q", pair[0], start.Key())
		}
		if again := mustDecodeFile(t, "chef", pair[1]); again.Key() != conv.Key() {
			t.Errorf("%s: key not stable: %q vs %q", pair[1], again.Key(), conv.Key())
		}
	}
}

func mustDecodeFile(t testing.TB, parts ...string) *Run {
	t.Helper()
	body, err := os.ReadFile(fixtures.Dir(t, parts...))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Decode(body)
	if err != nil {
		t.Fatalf("%s: %v", filepath.Join(parts...), err)
	}
	return r
}
