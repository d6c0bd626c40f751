package report

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testdataWants is what each sample in testdata/ decodes to; testdata/README.md
// says where each shape comes from.
func testdataWants(t *testing.T) map[string]want {
	return map[string]want{
		// Chef::Config[:why_run]: a finished run that changed nothing.
		"chef-handler-why-run.json": {
			format: FormatChefHandler, kind: KindDryRun, id: "3a0c6f41-3c1e-4f2e-9d2b-6d9b3f0e7a11",
			node: "web01.example.com", env: "production", status: StatusSuccess,
			start: ts(t, "2024-05-01T12:00:00Z"), end: ts(t, "2024-05-01T12:00:21.4Z"), duration: 21400 * time.Millisecond,
			updated: 2, failed: 0, total: 41, fqdn: "web01.example.com", ip: "10.0.0.11", roles: []string{"base", "web"},
		},
		// run_end_message.rb with no node: the node's name only.
		"chef-run_converge-node-load-failure.json": {
			format: FormatChefDataCollector, kind: KindRun, id: "0f4e5c1d-7a2b-4e9f-b3c8-5d6a7e8f9a01",
			node: "web01.example.com", env: "_default", status: StatusFailure,
			start: ts(t, "2024-05-01T13:00:00Z"), end: ts(t, "2024-05-01T13:00:02Z"), duration: 2 * time.Second,
			errClass: "Net::HTTPClientException", errMsgPrefix: `401 "Unauthorized"`, identityMissing: true,
		},
		// The master's run: three steps, two failed (one by requisite).
		"salt-orchestrate-ret.json": {
			format: FormatSalt, kind: KindRun, id: "20240501140000123456/salt01_master", node: "salt01_master",
			env: "prod", status: StatusFailure,
			start: ts(t, "2024-05-01T14:00:42.120034Z").Add(-41633300 * time.Microsecond), end: ts(t, "2024-05-01T14:00:42.120034Z"),
			duration: 41633300 * time.Microsecond, updated: 1, failed: 2, total: 3,
			errClass: "salt.retcode.1", errMsgPrefix: "Run failed on minions: web02",
			updatedList: []Resource{{"salt", "deploy_db"}},
			failedList:  []Resource{{"salt", "deploy_web"}, {"salt", "notify"}},
		},
		"salt-ssh-unreachable.json": {
			format: FormatSalt, kind: KindRun, id: "20240501150000654321/web03", node: "web03", env: "base",
			status: StatusFailure, end: ts(t, "2024-05-01T15:00:03.221905Z"),
			errClass: "salt.retcode.255", errMsgPrefix: "ssh: connect to host 10.0.0.13 port 22: Connection refused",
		},
		"salt-ssh-error-no-return.json": {
			format: FormatSalt, kind: KindRun, id: "20240501150500111222/web04", node: "web04", env: "base",
			status: StatusFailure, end: ts(t, "2024-05-01T15:05:09.004417Z"),
			errClass: "salt.retcode.20", errMsgPrefix: "Failed to return clean data",
		},
		"salt-return-error-dict.json": {
			format: FormatSalt, kind: KindRun, id: "20240501151000333444/web05", node: "web05", env: "base",
			status: StatusFailure, end: ts(t, "2024-05-01T15:10:02.55123Z"),
			errClass: "salt.retcode.1", errMsgPrefix: "Failed to return clean data",
		},
		// result null is "would change": not updated, and the run is a dry run.
		"salt-state.apply-test-true.json": {
			format: FormatSalt, kind: KindDryRun, id: "20240501160000777888/web01", node: "web01", env: "base",
			status: StatusSuccess, start: ts(t, "2024-05-01T16:00:01.360102Z").Add(-34234 * time.Microsecond),
			end: ts(t, "2024-05-01T16:00:01.360102Z"), duration: 34234 * time.Microsecond, total: 2,
		},
		"salt-state.test.json": {
			format: FormatSalt, kind: KindDryRun, id: "20240501161000999000/web02", node: "web02", env: "base",
			status: StatusSuccess, start: ts(t, "2024-05-01T16:10:01.330022Z").Add(-402100 * time.Microsecond),
			end: ts(t, "2024-05-01T16:10:01.330022Z"), duration: 402100 * time.Microsecond, total: 1,
		},
	}
}

// TestTestdata decodes every sample in testdata/; a sample without an entry
// fails, as in TestFixtures.
func TestTestdata(t *testing.T) {
	wants := testdataWants(t)
	paths, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no samples in testdata: %v", err)
	}
	for _, p := range paths {
		name := filepath.Base(p)
		t.Run(name, func(t *testing.T) {
			w, ok := wants[name]
			if !ok {
				t.Fatalf("no expectation for %s: add one to testdataWants", name)
			}
			delete(wants, name)
			body, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			checkFixture(t, body, w)
		})
	}
	for name := range wants {
		t.Errorf("expected sample %s was not found", name)
	}
}
