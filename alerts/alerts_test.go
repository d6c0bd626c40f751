package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v2"

	"github.com/runlens/runlens/exporter/collector"
	"github.com/runlens/runlens/internal/proctest"
)

const installHint = "apt-get install prometheus prometheus-alertmanager"

// briefAlerts are the alert names of the product brief, which users route on.
var briefAlerts = []string{
	"RunlensRunFailureRateHigh",
	"RunlensNodeRunFailing",
	"RunlensNodeNotConverging",
	"RunlensChangeBurst",
	"RunlensExporterDown",
	"RunlensReportsRejected",
}

const runbookPrefix = "https://github.com/runlens/runlens/blob/main/alerts/RUNBOOK.md#"

// tool finds a program the tests need, failing (never skipping) without it.
func tool(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatalf("%s not found in PATH: install it with `%s`", strings.Join(names, " or "), installHint)
	return ""
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out
}

func testFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("tests", "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no promtool test files in alerts/tests (err %v)", err)
	}
	sort.Strings(files)
	return files
}

func TestPromtoolCheckRules(t *testing.T) {
	promtool := tool(t, "promtool")
	mustRun(t, promtool, "check", "rules", "--lint-fatal", "runlens.rules.yml")
}

func TestPromtoolTestRules(t *testing.T) {
	promtool := tool(t, "promtool")
	mustRun(t, promtool, append([]string{"test", "rules"}, testFiles(t)...)...)
}

func TestAmtoolCheckConfig(t *testing.T) {
	amtool := tool(t, "amtool")
	mustRun(t, amtool, "check-config", "alertmanager.yml")
}

// TestAlertmanagerRoutes checks which receiver each kind of alert reaches.
func TestAlertmanagerRoutes(t *testing.T) {
	amtool := tool(t, "amtool")
	for _, c := range []struct {
		labels   []string
		receiver string
	}{
		{[]string{"alertname=RunlensRunFailureRateHigh", "severity=critical", "environment=prod"}, "pager"},
		{[]string{"alertname=RunlensRunFailureRateHigh", "severity=critical", "environment=staging"}, "chat"},
		{[]string{"alertname=RunlensExporterDown", "severity=critical", "job=runlens"}, "pager"},
		{[]string{"alertname=RunlensAMQPDown", "severity=critical", "job=runlens"}, "pager"},
		{[]string{"alertname=RunlensExporterDown", "severity=warning", "job=runlens", "instance=a:9865"}, "chat"},
		{[]string{"alertname=RunlensNodeRunFailing", "severity=warning", "environment=prod", "node=web-1"}, "chat"},
		{[]string{"alertname=RunlensNodeNotConverging", "severity=warning", "environment=prod", "node=web-1"}, "chat"},
		{[]string{"alertname=RunlensChangeBurst", "severity=info", "environment=prod"}, "chat"},
		{[]string{"alertname=RunlensReportsRejected", "severity=warning", "format=salt"}, "chat"},
		{[]string{"alertname=RunlensBoundReached", "severity=warning", "bound=dead_letter_queue"}, "chat"},
		{[]string{"alertname=RunlensBoundReached", "severity=info", "bound=environment"}, "chat"},
		{[]string{"alertname=SomethingElse"}, "chat"},
	} {
		args := append([]string{"config", "routes", "test", "--config.file=alertmanager.yml", "--verify.receivers=" + c.receiver}, c.labels...)
		if out, err := run(t, amtool, args...); err != nil {
			t.Errorf("%v: want receiver %s: %v\n%s", c.labels, c.receiver, err, out)
		}
	}
}

// TestAlertmanagerInhibits starts a real Alertmanager with alertmanager.yml
// and checks what its inhibit rules suppress.
func TestAlertmanagerInhibits(t *testing.T) {
	bin := tool(t, "prometheus-alertmanager", "alertmanager")
	addr := proctest.FreeAddr(t)
	dir := t.TempDir()
	am := proctest.Start(t, dir, "alertmanager", bin,
		"--config.file=alertmanager.yml",
		"--storage.path="+dir,
		"--web.listen-address="+addr,
		"--cluster.listen-address=",
		"--log.level=warn",
	)
	base := "http://" + addr
	proctest.WaitReady(t, base+"/-/ready", 20*time.Second, am)

	type alert = map[string]string
	post := func(endsAt time.Time, alerts ...alert) {
		t.Helper()
		var body []map[string]any
		for _, a := range alerts {
			m := map[string]any{"labels": a, "startsAt": time.Now().Add(-time.Minute).Format(time.RFC3339)}
			if !endsAt.IsZero() {
				m["endsAt"] = endsAt.Format(time.RFC3339)
			}
			body = append(body, m)
		}
		b, _ := json.Marshal(body)
		resp, err := http.Post(base+"/api/v2/alerts", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /api/v2/alerts: %s", resp.Status)
		}
	}
	// states returns "active" or "suppressed" by a key of the alert's name
	// and its node, environment, format or severity.
	states := func() map[string]string {
		t.Helper()
		resp, err := http.Get(base + "/api/v2/alerts")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got []struct {
			Labels map[string]string `json:"labels"`
			Status struct {
				State string `json:"state"`
			} `json:"status"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, a := range got {
			m[key(a.Labels)] = a.Status.State
		}
		return m
	}
	expect := func(what string, want map[string]string) {
		t.Helper()
		waitFor(t, what, func() (bool, string) {
			got := states()
			for k, v := range want {
				if got[k] != v {
					return false, fmt.Sprintf("got %v, want %v", got, want)
				}
			}
			return true, ""
		})
	}

	var (
		notConverging = alert{"alertname": "RunlensNodeNotConverging", "severity": "warning", "node": "web-1", "environment": "prod", "job": "runlens"}
		failingProd   = alert{"alertname": "RunlensNodeRunFailing", "severity": "warning", "node": "web-2", "environment": "prod", "job": "runlens"}
		failingStg    = alert{"alertname": "RunlensNodeRunFailing", "severity": "warning", "node": "db-1", "environment": "staging", "job": "runlens"}
		rateProd      = alert{"alertname": "RunlensRunFailureRateHigh", "severity": "critical", "environment": "prod", "job": "runlens"}
		burst         = alert{"alertname": "RunlensChangeBurst", "severity": "info", "environment": "staging", "job": "runlens"}
		rejected      = alert{"alertname": "RunlensReportsRejected", "severity": "warning", "format": "salt", "outcome": "rejected", "job": "runlens"}
		amqpOne       = alert{"alertname": "RunlensAMQPDown", "severity": "warning", "job": "runlens", "instance": "exporter-a:9865"}
		exporterAll   = alert{"alertname": "RunlensExporterDown", "severity": "critical", "job": "runlens"}
		amqpAll       = alert{"alertname": "RunlensAMQPDown", "severity": "critical", "job": "runlens"}
	)

	// One replica off the broker inhibits nothing; a failing environment
	// inhibits its own nodes' RunlensNodeRunFailing only.
	post(time.Time{}, amqpOne, notConverging, failingProd, failingStg, rateProd, burst, rejected)
	expect("only prod's node failure inhibited", map[string]string{
		key(failingProd):   "suppressed",
		key(failingStg):    "active",
		key(notConverging): "active",
		key(rateProd):      "active",
		key(burst):         "active",
		key(rejected):      "active",
		key(amqpOne):       "active",
	})

	// No exporter up: every alert reading fresh exporter data is inhibited.
	post(time.Time{}, exporterAll)
	expect("node and environment alerts inhibited by RunlensExporterDown", map[string]string{
		key(notConverging): "suppressed",
		key(failingProd):   "suppressed",
		key(failingStg):    "suppressed",
		key(rateProd):      "suppressed",
		key(burst):         "suppressed",
		key(rejected):      "active",
		key(amqpOne):       "active",
		key(exporterAll):   "active",
	})

	// Exporter back, but no replica connected to the broker: the same.
	post(time.Now().Add(-time.Second), exporterAll)
	post(time.Time{}, amqpAll)
	expect("node and environment alerts inhibited by RunlensAMQPDown", map[string]string{
		key(notConverging): "suppressed",
		key(failingStg):    "suppressed",
		key(burst):         "suppressed",
		key(rejected):      "active",
		key(amqpAll):       "active",
	})

	// Broker back: the alerts are delivered again.
	post(time.Now().Add(-time.Second), amqpAll)
	expect("nothing inhibited once the exporter is back", map[string]string{
		key(notConverging): "active",
		key(failingStg):    "active",
		key(rateProd):      "active",
		key(burst):         "active",
		key(failingProd):   "suppressed",
	})
}

func key(l map[string]string) string {
	return strings.Join([]string{l["alertname"], l["severity"], l["node"], l["environment"], l["format"], l["instance"]}, "/")
}

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, detail)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The rule file's structure, as much of it as the checks below read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	var f ruleFile
	if err := yaml.UnmarshalStrict([]byte(RulesYAML), &f); err != nil {
		t.Fatalf("runlens.rules.yml: %v", err)
	}
	if len(f.Groups) != 2 {
		t.Fatalf("runlens.rules.yml has %d groups, want 2 (recording rules, alerts)", len(f.Groups))
	}
	return f
}

func alertsByName(f ruleFile) map[string][]rule {
	m := map[string][]rule{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				m[r.Alert] = append(m[r.Alert], r)
			}
		}
	}
	return m
}

func TestRulesFileAlerts(t *testing.T) {
	f := loadRules(t)
	alerts := alertsByName(f)
	for _, name := range append(slices.Clone(briefAlerts), "RunlensAMQPDown") {
		if len(alerts[name]) == 0 {
			t.Errorf("alert %s missing from runlens.rules.yml", name)
		}
	}
	var names []string
	for name := range alerts {
		names = append(names, name)
	}
	sort.Strings(names)
	want := slices.Clone(AlertNames)
	sort.Strings(want)
	if !slices.Equal(names, want) {
		t.Errorf("alerts in runlens.rules.yml %v, AlertNames %v", names, want)
	}

	runbook, err := os.ReadFile("RUNBOOK.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := markdownAnchors(string(runbook))
	for name, rules := range alerts {
		for _, r := range rules {
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("%s: severity %q, want critical, warning or info", name, r.Labels["severity"])
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s (%s): annotation %s missing", name, r.Labels["severity"], a)
				}
			}
			u := r.Annotations["runbook_url"]
			if anchor, ok := strings.CutPrefix(u, runbookPrefix); !ok || anchor != strings.ToLower(name) {
				t.Errorf("%s: runbook_url %q, want %s%s", name, u, runbookPrefix, strings.ToLower(name))
			} else if !anchors[anchor] {
				t.Errorf("%s: RUNBOOK.md has no heading with anchor #%s", name, anchor)
			}
		}
	}
	// Node and environment alerts name theirs in the description.
	for name, labels := range map[string][]string{
		"RunlensRunFailureRateHigh": {"environment"},
		"RunlensNodeRunFailing":     {"node", "environment"},
		"RunlensNodeNotConverging":  {"node", "environment"},
		"RunlensChangeBurst":        {"environment"},
		"RunlensReportsRejected":    {"format"},
		"RunlensBoundReached":       {"bound"},
	} {
		for _, r := range alerts[name] {
			for _, l := range labels {
				if !strings.Contains(r.Annotations["description"], "$labels."+l) {
					t.Errorf("%s: description does not name the %s ($labels.%s)", name, l, l)
				}
			}
		}
	}
}

// markdownAnchors returns the GitHub anchors of a Markdown file's headings.
func markdownAnchors(md string) map[string]bool {
	anchors := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for line := range strings.SplitSeq(md, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		anchors[strings.ReplaceAll(drop.ReplaceAllString(h, ""), " ", "-")] = true
	}
	return anchors
}

func TestRunbookSections(t *testing.T) {
	b, err := os.ReadFile("RUNBOOK.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := strings.Split(string(b), "\n## ")
	for _, name := range AlertNames {
		var sec string
		for _, s := range sections {
			if strings.HasPrefix(s, name+"\n") {
				sec = s
			}
		}
		if sec == "" {
			t.Errorf("RUNBOOK.md: no section `## %s`", name)
			continue
		}
		for _, part := range []string{"Meaning", "Impact", "Diagnosis", "Fix"} {
			if !strings.Contains(sec, "### "+part) {
				t.Errorf("RUNBOOK.md, %s: no `### %s`", name, part)
			}
		}
	}
}

var (
	stringLit = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	comment   = regexp.MustCompile(`#[^\n]*`)
	rangeSel  = regexp.MustCompile(`\[[^\]]*\]`)
	ident     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// names returns the metric-like identifiers of a PromQL expression that are
// runlens metrics or recorded series (names with a colon).
func names(expr string) []string {
	expr = stringLit.ReplaceAllString(expr, `""`)
	expr = comment.ReplaceAllString(expr, "")
	expr = rangeSel.ReplaceAllString(expr, "")
	var out []string
	for _, id := range ident.FindAllString(expr, -1) {
		if strings.HasPrefix(id, "runlens_") || strings.Contains(id, ":") {
			out = append(out, id)
		}
	}
	return out
}

// exporterMetric reports whether the exporter serves a series of that name.
func exporterMetric(name string) bool {
	return slices.Contains(collector.MetricNames(), name)
}

func TestRulesUseOnlyExporterMetrics(t *testing.T) {
	f := loadRules(t)
	recorded := map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	recordedName := regexp.MustCompile(`^[a-z_]+:runlens_[a-z0-9_]+:[a-z0-9_]+$`)
	used := map[string]bool{}
	for _, g := range f.Groups {
		// Within the recording group a rule may only use series recorded
		// before it, so that one evaluation sees fresh values.
		seen := map[string]bool{}
		for _, r := range g.Rules {
			what := r.Record + r.Alert
			if r.Record != "" && !recordedName.MatchString(r.Record) {
				t.Errorf("recording rule %s: want level:runlens_metric:operations", r.Record)
			}
			for _, n := range names(r.Expr) {
				switch {
				case strings.Contains(n, ":"):
					if !recorded[n] {
						t.Errorf("%s: uses %s, which no rule records", what, n)
					} else if r.Record != "" && !seen[n] {
						t.Errorf("%s: uses %s before the rule that records it", what, n)
					}
					used[n] = true
				case !exporterMetric(n):
					t.Errorf("%s: uses %s, which the exporter does not expose", what, n)
				}
			}
			if r.Record != "" {
				seen[r.Record] = true
			}
		}
	}
	if len(used) == 0 {
		t.Error("no recorded series used at all: is names() broken?")
	}
}

func TestNamesParser(t *testing.T) {
	got := names(`sum without (instance) (rate(runlens_runs_total{job="runlens_x:y"}[5m:1m])) # runlens_nope
		/ on (environment) group_left () env:runlens_runs:rate5m > 0.2 and up{job="runlens"} == 0`)
	want := []string{"runlens_runs_total", "env:runlens_runs:rate5m"}
	if !slices.Equal(got, want) {
		t.Errorf("names() = %v, want %v", got, want)
	}
}

// promtool unit tests, as much of them as the coverage check reads.
type unitTestFile struct {
	Tests []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels map[string]string `yaml:"exp_labels"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
		PromqlExprTest []struct {
			Expr string `yaml:"expr"`
		} `yaml:"promql_expr_test"`
	} `yaml:"tests"`
}

// TestEveryRuleIsTested checks that the promtool tests make every alert rule
// (each name and severity) fire somewhere and stay silent somewhere, and
// query every recording rule.
func TestEveryRuleIsTested(t *testing.T) {
	f := loadRules(t)
	fires, silent, queried := map[string]bool{}, map[string]bool{}, map[string]bool{}
	cases := 0
	for _, file := range testFiles(t) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var u unitTestFile
		if err := yaml.Unmarshal(b, &u); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, tc := range u.Tests {
			for _, a := range tc.AlertRuleTest {
				cases++
				if len(a.ExpAlerts) == 0 {
					silent[a.Alertname] = true
				}
				for _, e := range a.ExpAlerts {
					fires[a.Alertname+"/"+e.ExpLabels["severity"]] = true
				}
			}
			for _, p := range tc.PromqlExprTest {
				cases++
				for _, n := range names(p.Expr) {
					queried[n] = true
				}
			}
		}
	}
	t.Logf("%d promtool test cases", cases)
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			switch {
			case r.Alert != "":
				if !fires[r.Alert+"/"+r.Labels["severity"]] {
					t.Errorf("no promtool test where %s (severity %s) fires", r.Alert, r.Labels["severity"])
				}
				if !silent[r.Alert] {
					t.Errorf("no promtool test where %s does not fire", r.Alert)
				}
			case !queried[r.Record]:
				t.Errorf("no promtool test queries the recording rule %s", r.Record)
			}
		}
	}
}
