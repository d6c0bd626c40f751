package deploy

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"

	"github.com/runlens/runlens/dashboards"
	"github.com/runlens/runlens/exporter/collector"
	"github.com/runlens/runlens/exporter/datacollector"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/simulator"
	"github.com/runlens/runlens/pkg/topology"
)

// No Docker engine runs where the tests run: docker-compose.yml is checked by
// reading it, with the files it builds and mounts, against the code.

// repoRoot is the repository root, seen from this package's directory.
const repoRoot = ".."

type service struct {
	Image       string         `yaml:"image"`
	Build       map[string]any `yaml:"build"`
	Command     any            `yaml:"command"`
	Environment any            `yaml:"environment"`
	Ports       []string       `yaml:"ports"`
	Volumes     []string       `yaml:"volumes"`
	DependsOn   any            `yaml:"depends_on"`
	Healthcheck map[string]any `yaml:"healthcheck"`
	Restart     string         `yaml:"restart"`
}

type compose struct {
	Services map[string]*service `yaml:"services"`
	Volumes  map[string]any      `yaml:"volumes"`
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	var c compose
	readYAML(t, "docker-compose.yml", &c)
	if len(c.Services) == 0 {
		t.Fatal("docker-compose.yml: no services")
	}
	return c
}

// svc returns a service that must exist.
func (c compose) svc(t *testing.T, name string) *service {
	t.Helper()
	s, ok := c.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml: no service %q", name)
	}
	return s
}

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatalf("%v", err)
	}
	return string(b)
}

func readYAML(t *testing.T, rel string, v any) {
	t.Helper()
	if err := yaml.Unmarshal([]byte(readFile(t, rel)), v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// env is a service's environment as a map (map or KEY=VALUE list syntax).
func (s *service) env() map[string]string {
	out := map[string]string{}
	switch e := s.Environment.(type) {
	case map[any]any:
		for k, v := range e {
			out[fmt.Sprint(k)] = fmt.Sprint(v)
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(fmt.Sprint(kv), "=")
			out[k] = v
		}
	}
	return out
}

// command is a service's command as a list.
func (s *service) command() []string {
	switch c := s.Command.(type) {
	case string:
		return strings.Fields(c)
	case []any:
		var out []string
		for _, a := range c {
			out = append(out, fmt.Sprint(a))
		}
		return out
	}
	return nil
}

// dependsOn is a service's depends_on: name → condition.
func (s *service) dependsOn() map[string]string {
	out := map[string]string{}
	switch d := s.DependsOn.(type) {
	case []any:
		for _, n := range d {
			out[fmt.Sprint(n)] = "service_started"
		}
	case map[any]any:
		for n, v := range d {
			cond := "service_started"
			if m, ok := v.(map[any]any); ok && m["condition"] != nil {
				cond = fmt.Sprint(m["condition"])
			}
			out[fmt.Sprint(n)] = cond
		}
	}
	return out
}

type mount struct{ source, target string }

// mounts lists a service's volumes (short syntax): bind mounts have a
// source starting with . or /.
func (s *service) mounts() []mount {
	var out []mount
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			out = append(out, mount{parts[0], parts[1]})
		}
	}
	return out
}

// targetOf is where a service mounts the repository path src (or "").
func (s *service) targetOf(src string) string {
	for _, m := range s.mounts() {
		if filepath.Clean(m.source) == filepath.Clean(src) {
			return m.target
		}
	}
	return ""
}

// sourceOf is the repository path a service mounts at target (or "").
func (s *service) sourceOf(target string) string {
	for _, m := range s.mounts() {
		if m.target == target {
			return m.source
		}
	}
	return ""
}

// publishes reports whether a service publishes a container port.
func (s *service) publishes(port string) bool {
	for _, p := range s.Ports {
		parts := strings.Split(p, ":")
		if parts[len(parts)-1] == port || parts[len(parts)-1] == port+"/tcp" {
			return true
		}
	}
	return false
}

func TestComposeStructure(t *testing.T) {
	c := loadCompose(t)
	for _, want := range []string{"rabbitmq", "runlens-exporter", "prometheus", "alertmanager", "grafana", "simulator", "demo-app", "plugin-build"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("docker-compose.yml: no service %q (issue #4)", want)
		}
	}
	names := make([]string, 0, len(c.Services))
	for n := range c.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		s := c.Services[name]
		if s.Image == "" && s.Build == nil {
			t.Errorf("service %s: neither image nor build", name)
		}
		if s.Build != nil {
			if ctx := fmt.Sprint(s.Build["context"]); ctx != "." {
				t.Errorf("service %s: build context %q, want the repository root", name, ctx)
			}
			df, _ := s.Build["dockerfile"].(string)
			if _, err := os.Stat(filepath.Join(repoRoot, df)); df == "" || err != nil {
				t.Errorf("service %s: dockerfile %q does not exist", name, df)
			}
		}
		for dep, cond := range s.dependsOn() {
			d, ok := c.Services[dep]
			switch {
			case !ok:
				t.Errorf("service %s depends on %q, which is not a service", name, dep)
			case cond == "service_healthy" && d.Healthcheck == nil:
				t.Errorf("service %s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			case cond == "service_completed_successfully" && d.Restart != "no" && d.Restart != "":
				t.Errorf("service %s waits for %s to complete, but %s restarts (%s)", name, dep, dep, d.Restart)
			case !slices.Contains([]string{"service_started", "service_healthy", "service_completed_successfully"}, cond):
				t.Errorf("service %s: depends_on %s condition %q", name, dep, cond)
			}
		}
		for _, m := range s.mounts() {
			if !strings.HasPrefix(m.source, ".") && !strings.HasPrefix(m.source, "/") {
				if _, ok := c.Volumes[m.source]; !ok {
					t.Errorf("service %s: named volume %q is not declared under volumes:", name, m.source)
				}
				continue
			}
			if filepath.Clean(m.source) == "datasource/dist" {
				continue // built by plugin-build
			}
			if _, err := os.Stat(filepath.Join(repoRoot, m.source)); err != nil {
				t.Errorf("service %s: bind mount source %s does not exist in the repository", name, m.source)
			}
		}
	}
	// rabbitmq: the image the issue names, its ports and health check.
	r := c.svc(t, "rabbitmq")
	if !strings.HasPrefix(r.Image, "rabbitmq:3.13-management") {
		t.Errorf("rabbitmq image %q", r.Image)
	}
	for _, p := range []string{"5672", "15672"} {
		if !r.publishes(p) {
			t.Errorf("rabbitmq does not publish port %s", p)
		}
	}
	if hc := fmt.Sprint(r.Healthcheck["test"]); !strings.Contains(hc, "rabbitmq-diagnostics") || !strings.Contains(hc, "ping") {
		t.Errorf("rabbitmq healthcheck %s, want rabbitmq-diagnostics -q ping", hc)
	}
}

// TestExporter checks port and AMQP settings against exporter/exporter.go.
func TestExporter(t *testing.T) {
	c := loadCompose(t)
	src := readFile(t, "exporter/exporter.go")
	m := regexp.MustCompile(`DefaultListenAddress\s*=\s*":(\d+)"`).FindStringSubmatch(src)
	if m == nil {
		t.Fatal(`exporter/exporter.go: no DefaultListenAddress = ":<port>"`)
	}
	port := m[1]
	if port != "9865" {
		t.Errorf("exporter default port %s, the README and dashboards say 9865", port)
	}
	e := c.svc(t, "runlens-exporter")
	if !e.publishes(port) {
		t.Errorf("runlens-exporter does not publish port %s: %v", port, e.Ports)
	}
	if df := readFile(t, fmt.Sprint(e.Build["dockerfile"])); !regexp.MustCompile(`(?m)^EXPOSE\s+` + port + `\b`).MatchString(df) {
		t.Errorf("%s does not EXPOSE %s", e.Build["dockerfile"], port)
	}
	checkAMQPEnv(t, c, "runlens-exporter", "exporter/exporter.go")
	if slices.ContainsFunc(e.command(), func(a string) bool { return strings.Contains(a, "amqp://") }) {
		t.Error("runlens-exporter: AMQP URL on the command line; use RUNLENS_AMQP_URL")
	}
}

// checkAMQPEnv checks a service's RUNLENS_AMQP_URL: read by the program,
// pointing at the rabbitmq service's AMQP port.
func checkAMQPEnv(t *testing.T, c compose, name, source string) {
	t.Helper()
	if !strings.Contains(readFile(t, source), `Envar("RUNLENS_AMQP_URL")`) {
		t.Errorf("%s does not read RUNLENS_AMQP_URL, which docker-compose.yml sets for %s", source, name)
	}
	raw := c.svc(t, name).env()["RUNLENS_AMQP_URL"]
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "amqp" || u.Host != "rabbitmq:5672" {
		t.Errorf("service %s: RUNLENS_AMQP_URL %q, want amqp://…@rabbitmq:5672/", name, raw)
	}
	if _, ok := c.svc(t, name).dependsOn()["rabbitmq"]; !ok {
		t.Errorf("service %s does not depend on rabbitmq", name)
	}
}

// pluginJSON reads datasource/plugin.json.
func pluginJSON(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "datasource", "plugin.json"))
	if err != nil {
		t.Fatalf("datasource/plugin.json: %v (the datasource plugin's frontend defines it; docker-compose.yml mounts the plugin by its id)", err)
	}
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("datasource/plugin.json: %v", err)
	}
	return p
}

func TestGrafanaPlugin(t *testing.T) {
	c := loadCompose(t)
	p := pluginJSON(t)
	id, _ := p["id"].(string)
	if id != dashboards.PluginID {
		t.Errorf("datasource/plugin.json id %q, dashboards use %q", id, dashboards.PluginID)
	}
	g := c.svc(t, "grafana")
	unsigned := strings.Split(g.env()["GF_PLUGINS_ALLOW_LOADING_UNSIGNED_PLUGINS"], ",")
	if !slices.Contains(unsigned, id) {
		t.Errorf("grafana: GF_PLUGINS_ALLOW_LOADING_UNSIGNED_PLUGINS %v does not name %q", unsigned, id)
	}
	if got, want := g.targetOf("./datasource/dist"), "/var/lib/grafana/plugins/"+id; got != want {
		t.Errorf("grafana mounts ./datasource/dist at %q, want %q", got, want)
	}
	// The plugin is built into ./datasource/dist before Grafana starts.
	pb := c.svc(t, "plugin-build")
	if g.dependsOn()["plugin-build"] != "service_completed_successfully" {
		t.Error("grafana does not wait for plugin-build to complete")
	}
	if pb.targetOf("./datasource/dist") == "" {
		t.Error("plugin-build does not mount ./datasource/dist")
	}
	df := readFile(t, fmt.Sprint(pb.Build["dockerfile"]))
	if dst := pb.targetOf("./datasource/dist"); !strings.Contains(df, " "+dst+"/") {
		t.Errorf("%s does not copy the plugin into %s, where plugin-build mounts ./datasource/dist", pb.Build["dockerfile"], dst)
	}
	exe, _ := p["executable"].(string)
	if p["backend"] != true || exe == "" {
		t.Fatalf("datasource/plugin.json: backend %v, executable %q", p["backend"], exe)
	}
	if !strings.Contains(df, "/out/"+exe+"_${os}_${arch}") {
		t.Errorf("%s does not build the backend as %s_<os>_<arch> (plugin.json executable)", pb.Build["dockerfile"], exe)
	}
	for _, f := range []string{"npm ci", "npm run build", "COPY datasource/package.json datasource/package-lock.json"} {
		if !strings.Contains(df, f) {
			t.Errorf("%s: no %q", pb.Build["dockerfile"], f)
		}
	}
	var pkg struct {
		Scripts map[string]string `json:"scripts"`
	}
	if err := json.Unmarshal([]byte(readFile(t, "datasource/package.json")), &pkg); err != nil || pkg.Scripts["build"] == "" {
		t.Errorf("datasource/package.json: no build script (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "datasource", "package-lock.json")); err != nil {
		t.Errorf("npm ci needs datasource/package-lock.json: %v", err)
	}
	for _, k := range []string{"streaming", "annotations"} {
		if p[k] != true {
			t.Errorf("datasource/plugin.json: %s is %v, the dashboards need it", k, p[k])
		}
	}
}

type grafanaDatasource struct {
	Name           string         `yaml:"name"`
	UID            string         `yaml:"uid"`
	Type           string         `yaml:"type"`
	URL            string         `yaml:"url"`
	JSONData       map[string]any `yaml:"jsonData"`
	SecureJSONData map[string]any `yaml:"secureJsonData"`
}

// provisioning returns the host directory Grafana mounts at
// /etc/grafana/provisioning/<kind>.
func provisioning(t *testing.T, c compose, kind string) string {
	t.Helper()
	g := c.svc(t, "grafana")
	if src := g.sourceOf("/etc/grafana/provisioning/" + kind); src != "" {
		return src
	}
	if src := g.sourceOf("/etc/grafana/provisioning"); src != "" {
		return filepath.Join(src, kind)
	}
	t.Fatalf("grafana does not mount provisioning for %s", kind)
	return ""
}

// yamlFiles lists the YAML files of a provisioning directory.
func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, pat := range []string{"*.yml", "*.yaml"} {
		m, _ := filepath.Glob(filepath.Join(repoRoot, dir, pat))
		out = append(out, m...)
	}
	if len(out) == 0 {
		t.Fatalf("no provisioning files in %s", dir)
	}
	return out
}

func datasources(t *testing.T, c compose) map[string]grafanaDatasource {
	t.Helper()
	out := map[string]grafanaDatasource{}
	for _, f := range yamlFiles(t, provisioning(t, c, "datasources")) {
		var doc struct {
			Datasources []grafanaDatasource `yaml:"datasources"`
		}
		b, _ := os.ReadFile(f)
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, d := range doc.Datasources {
			if _, dup := out[d.UID]; dup || d.UID == "" {
				t.Errorf("%s: datasource %q: uid %q missing or used twice", f, d.Name, d.UID)
			}
			out[d.UID] = d
		}
	}
	return out
}

// expandEnv resolves $VAR / ${VAR} the way Grafana does in provisioning
// files, from the grafana service's environment.
func expandEnv(c compose, t *testing.T, s string) string {
	env := c.svc(t, "grafana").env()
	return os.Expand(s, func(k string) string { return env[k] })
}

// serviceURL checks that raw points at a compose service's port.
func serviceURL(t *testing.T, c compose, what, raw, svcName, port string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	host, p, _ := net.SplitHostPort(u.Host)
	if host != svcName || p != port {
		t.Errorf("%s = %q, want host %s:%s", what, raw, svcName, port)
	}
	if _, ok := c.Services[svcName]; !ok {
		t.Errorf("%s: no service %s", what, svcName)
	}
}

func TestDatasourceProvisioning(t *testing.T) {
	c := loadCompose(t)
	ds := datasources(t, c)

	prom, ok := ds[dashboards.PrometheusUID]
	if !ok || prom.Type != "prometheus" {
		t.Fatalf("no Prometheus datasource with uid %q (the dashboards' default): %v", dashboards.PrometheusUID, prom)
	}
	serviceURL(t, c, "Prometheus datasource url", prom.URL, "prometheus", "9090")

	rl, ok := ds[dashboards.RunlensUID]
	if !ok {
		t.Fatalf("no datasource with uid %q, which the dashboards use", dashboards.RunlensUID)
	}
	if id, _ := pluginJSON(t)["id"].(string); rl.Type != id || rl.Type != dashboards.PluginID {
		t.Errorf("runlens datasource type %q, want the plugin id %q (plugin.json %q)", rl.Type, dashboards.PluginID, id)
	}
	// Every setting is one the plugin reads.
	settings := readFile(t, "datasource/plugin/settings.go")
	for k := range rl.JSONData {
		if !strings.Contains(settings, `json:"`+k+`"`) {
			t.Errorf("runlens jsonData.%s: not a setting of datasource/plugin/settings.go", k)
		}
	}
	for k := range rl.SecureJSONData {
		if !strings.Contains(settings, `"`+k+`"`) {
			t.Errorf("runlens secureJsonData.%s: not read by datasource/plugin/settings.go", k)
		}
	}
	str := func(k string) string { s, _ := rl.JSONData[k].(string); return s }
	amqpURL, err := url.Parse(str("amqpUrl"))
	if err != nil || amqpURL.Scheme != "amqp" {
		t.Fatalf("runlens jsonData.amqpUrl %q", str("amqpUrl"))
	}
	serviceURL(t, c, "runlens jsonData.amqpUrl", str("amqpUrl"), "rabbitmq", "5672")
	if _, has := amqpURL.User.Password(); has {
		t.Error("runlens jsonData.amqpUrl holds a password: it belongs in secureJsonData.amqpPassword")
	}
	pw := expandEnv(c, t, fmt.Sprint(rl.SecureJSONData["amqpPassword"]))
	if pw == "" || amqpURL.User.Username() == "" {
		t.Errorf("runlens: amqpUrl user %q, amqpPassword %q: the demo broker wants guest/guest", amqpURL.User.Username(), pw)
	}
	if u := c.svc(t, "runlens-exporter").env()["RUNLENS_AMQP_URL"]; u != "" {
		eu, _ := url.Parse(u)
		epw, _ := eu.User.Password()
		if eu.User.Username() != amqpURL.User.Username() || epw != pw {
			t.Error("the runlens datasource and the exporter log in to RabbitMQ differently")
		}
	}
	if str("exchange") != "" && str("exchange") != broker.DefaultExchange {
		t.Errorf("runlens exchange %q, producers publish to %q", str("exchange"), broker.DefaultExchange)
	}
	if str("stream") != "" && str("stream") != broker.DefaultStream {
		t.Errorf("runlens stream %q, the exporter declares %q", str("stream"), broker.DefaultStream)
	}
	serviceURL(t, c, "runlens jsonData.prometheusUrl", str("prometheusUrl"), "prometheus", "9090")
	serviceURL(t, c, "runlens jsonData.alertmanagerUrl", str("alertmanagerUrl"), "alertmanager", "9093")

	// The topology file: the simulator's roles and their dependencies.
	cfg, err := topology.ParseConfig(str("topology"))
	if err != nil {
		t.Fatalf("runlens jsonData.topology: %v", err)
	}
	want := simulator.Config{}.Defaults().DependsOn
	for role, deps := range want {
		deps = slices.Clone(deps)
		sort.Strings(deps)
		if got := cfg.DependsOn[role]; !slices.Equal(got, deps) {
			t.Errorf("topology: %s depends on %v, the simulator on %v", role, got, deps)
		}
	}
	for role := range cfg.DependsOn {
		if _, ok := want[role]; !ok {
			t.Errorf("topology: role %s is not one of the simulator's", role)
		}
	}
}

func TestDashboardProvisioning(t *testing.T) {
	c := loadCompose(t)
	g := c.svc(t, "grafana")
	var paths []string
	for _, f := range yamlFiles(t, provisioning(t, c, "dashboards")) {
		var doc struct {
			Providers []struct {
				Type    string `yaml:"type"`
				Options struct {
					Path string `yaml:"path"`
				} `yaml:"options"`
			} `yaml:"providers"`
		}
		b, _ := os.ReadFile(f)
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range doc.Providers {
			if p.Type == "file" {
				paths = append(paths, p.Options.Path)
			}
		}
	}
	if len(paths) != 1 {
		t.Fatalf("want one file dashboard provider, got paths %v", paths)
	}
	src := g.sourceOf(paths[0])
	if filepath.Clean(src) != "dashboards" {
		t.Fatalf("the dashboard provider loads %s, where grafana mounts %q, want ./dashboards", paths[0], src)
	}
	for _, d := range dashboards.All() {
		b, err := os.ReadFile(filepath.Join(repoRoot, src, d.File))
		if err != nil {
			t.Errorf("%v: run go run ./dashboards/gen", err)
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("%s: %v", d.File, err)
		}
	}
	if home := g.env()["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" {
		rel, err := filepath.Rel(paths[0], home)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("home dashboard %s is not under the provider path %s", home, paths[0])
		} else if _, err := os.Stat(filepath.Join(repoRoot, src, rel)); err != nil {
			t.Errorf("home dashboard: %v", err)
		}
	}
	// Every datasource uid the dashboards use is provisioned.
	ds := datasources(t, c)
	for _, uid := range []string{dashboards.PrometheusUID, dashboards.RunlensUID} {
		if _, ok := ds[uid]; !ok {
			t.Errorf("the dashboards use datasource uid %q, which is not provisioned", uid)
		}
	}
}

type promConfig struct {
	RuleFiles []string `yaml:"rule_files"`
	Alerting  struct {
		Alertmanagers []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"alertmanagers"`
	} `yaml:"alerting"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// flagValue returns --name=value from a command.
func flagValue(cmd []string, name string) string {
	for i, a := range cmd {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(cmd) {
			return cmd[i+1]
		}
	}
	return ""
}

func TestPrometheus(t *testing.T) {
	c := loadCompose(t)
	p := c.svc(t, "prometheus")
	cfgPath := flagValue(p.command(), "--config.file")
	if cfgPath == "" {
		cfgPath = "/etc/prometheus/prometheus.yml" // the image's default
	}
	src := p.sourceOf(cfgPath)
	if src == "" {
		t.Fatalf("prometheus does not mount its configuration at %s", cfgPath)
	}
	var cfg promConfig
	readYAML(t, src, &cfg)

	targets := map[string][]string{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			targets[sc.JobName] = append(targets[sc.JobName], s.Targets...)
		}
	}
	port := regexp.MustCompile(`DefaultListenAddress\s*=\s*":(\d+)"`).FindStringSubmatch(readFile(t, "exporter/exporter.go"))
	if port == nil || !slices.Equal(targets["runlens"], []string{"runlens-exporter:" + port[1]}) {
		t.Errorf("prometheus job runlens targets %v, want runlens-exporter:<exporter.DefaultListenAddress port>", targets["runlens"])
	}
	if !slices.Equal(targets["demo-app"], []string{"demo-app:9866"}) {
		t.Errorf("prometheus job demo-app targets %v, want demo-app:9866", targets["demo-app"])
	}
	if !c.svc(t, "demo-app").publishes("9866") {
		t.Error("demo-app does not publish 9866")
	}
	if b, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "runlens-demo-app", "main.go")); err != nil {
		t.Errorf("cmd/runlens-demo-app: %v (another part of issue #4; prometheus scrapes it on 9866)", err)
	} else if !strings.Contains(string(b), `Default(":9866")`) {
		t.Error(`cmd/runlens-demo-app/main.go: no Default(":9866") listen address, which prometheus.yml scrapes`)
	}

	// Rules: alerts/runlens.rules.yml, mounted read-only where rule_files says.
	if len(cfg.RuleFiles) != 1 {
		t.Fatalf("rule_files %v, want alerts/runlens.rules.yml", cfg.RuleFiles)
	}
	ruleSrc := p.sourceOf(cfg.RuleFiles[0])
	if filepath.Clean(ruleSrc) != "alerts/runlens.rules.yml" {
		t.Errorf("rule_files %s is mounted from %q, want ./alerts/runlens.rules.yml", cfg.RuleFiles[0], ruleSrc)
	}
	if !slices.Contains(p.Volumes, ruleSrc+":"+cfg.RuleFiles[0]+":ro") {
		t.Errorf("the rules are not mounted read-only: %v", p.Volumes)
	}
	var am []string
	for _, a := range cfg.Alerting.Alertmanagers {
		for _, s := range a.StaticConfigs {
			am = append(am, s.Targets...)
		}
	}
	if !slices.Equal(am, []string{"alertmanager:9093"}) {
		t.Errorf("alerting targets %v, want alertmanager:9093", am)
	}

	// promtool agrees, with the rules where the container has them.
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed")
	}
	raw := readFile(t, src)
	abs, _ := filepath.Abs(filepath.Join(repoRoot, ruleSrc))
	tmp := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(tmp, []byte(strings.ReplaceAll(raw, cfg.RuleFiles[0], abs)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "config", tmp).CombinedOutput(); err != nil {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
}

func TestAlertmanager(t *testing.T) {
	c := loadCompose(t)
	a := c.svc(t, "alertmanager")
	cfgPath := flagValue(a.command(), "--config.file")
	if cfgPath == "" {
		cfgPath = "/etc/alertmanager/alertmanager.yml"
	}
	if src := a.sourceOf(cfgPath); filepath.Clean(src) != "alerts/alertmanager.yml" {
		t.Errorf("alertmanager reads %s, mounted from %q, want ./alerts/alertmanager.yml", cfgPath, src)
	}
	if !a.publishes("9093") {
		t.Error("alertmanager does not publish 9093")
	}
}

// exporterMetrics lists the runlens_* series the exporter serves: its
// collectors' (collector.MetricNames, held to a real scrape in that package)
// and the data collector endpoint's request counter.
func exporterMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{datacollector.RequestsMetric: true}
	for _, n := range collector.MetricNames() {
		names[n] = true
	}
	return names
}

// TestRulesUseExporterMetrics checks every runlens_* series the rules
// select against the exporter's source.
func TestRulesUseExporterMetrics(t *testing.T) {
	exp := exporterMetrics(t)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Record string `yaml:"record"`
				Alert  string `yaml:"alert"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, "alerts/runlens.rules.yml", &rules)
	ident := regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, tok := range ident.FindAllString(r.Expr, -1) {
				if !strings.HasPrefix(tok, "runlens_") {
					continue
				}
				n++
				if !exp[tok] {
					t.Errorf("rule %s%s uses %s, which exporter/collector does not expose", r.Record, r.Alert, tok)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no runlens_ metric in alerts/runlens.rules.yml")
	}
}

// goBuildTargets returns the ./packages a Dockerfile's go build lines build.
func goBuildTargets(df string) []string {
	var out []string
	joined := strings.ReplaceAll(df, "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		if !strings.Contains(line, "go build") {
			continue
		}
		_, after, _ := strings.Cut(line, "go build")
		for _, f := range strings.Fields(after) {
			if strings.HasPrefix(f, "./") {
				out = append(out, f)
			}
		}
	}
	return out
}

// TestDockerfileBuildTargets checks that what the Dockerfiles build exists:
// a main package at each path.
func TestDockerfileBuildTargets(t *testing.T) {
	c := loadCompose(t)
	want := map[string][]string{
		"runlens-exporter": {"./exporter"},
		"simulator":        {"./cmd/runlens-sim", "./cmd/runlens-demo-app"},
		"demo-app":         {"./cmd/runlens-sim", "./cmd/runlens-demo-app"},
		"plugin-build":     {"./datasource"},
	}
	for name, pkgs := range want {
		s := c.svc(t, name)
		df := fmt.Sprint(s.Build["dockerfile"])
		got := goBuildTargets(readFile(t, df))
		if !slices.Equal(got, pkgs) {
			t.Errorf("service %s: %s builds %v, want %v", name, df, got, pkgs)
		}
		for _, p := range got {
			files, _ := filepath.Glob(filepath.Join(repoRoot, p, "*.go"))
			isMain := false
			for _, f := range files {
				b, _ := os.ReadFile(f)
				if !strings.HasSuffix(f, "_test.go") && regexp.MustCompile(`(?m)^package main$`).Match(b) {
					isMain = true
				}
			}
			if !isMain {
				t.Errorf("%s builds %s, which is not (yet) a main package in the repository", df, p)
			}
		}
		if !strings.Contains(readFile(t, df), "FROM golang:1.26") {
			t.Errorf("%s: not built with golang:1.26 (go.mod's Go)", df)
		}
	}
	// Compose runs the binaries the tools image holds.
	tools := readFile(t, fmt.Sprint(c.svc(t, "simulator").Build["dockerfile"]))
	for _, name := range []string{"simulator", "demo-app"} {
		cmd := c.svc(t, name).command()
		if len(cmd) == 0 || !strings.Contains(tools, "/out/"+cmd[0]) {
			t.Errorf("service %s runs %v, which %s does not install", name, cmd, c.svc(t, name).Build["dockerfile"])
		}
	}
}

// TestSimulator checks the simulator's command line against its flags.
func TestSimulator(t *testing.T) {
	c := loadCompose(t)
	cmd := c.svc(t, "simulator").command()
	if len(cmd) == 0 || cmd[0] != "runlens-sim" {
		t.Fatalf("simulator command %v", cmd)
	}
	src := readFile(t, "cmd/runlens-sim/main.go")
	for _, a := range cmd[1:] {
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, "=")
		if !strings.Contains(src, `app.Flag("`+name+`"`) {
			t.Errorf("simulator: runlens-sim has no flag --%s (cmd/runlens-sim/main.go)", name)
		}
	}
	if sc := flagValue(cmd, "--scenario"); sc != "bad-rollout" {
		t.Errorf("simulator scenario %q, want bad-rollout", sc)
	}
	scenarios, _ := filepath.Glob(filepath.Join(repoRoot, "pkg", "simulator", "*.go"))
	found := false
	for _, f := range scenarios {
		b, _ := os.ReadFile(f)
		found = found || strings.Contains(string(b), `"bad-rollout"`)
	}
	if !found {
		t.Error(`pkg/simulator: no scenario "bad-rollout"`)
	}
	for _, name := range []string{"simulator", "demo-app"} {
		source := map[string]string{"simulator": "cmd/runlens-sim/main.go", "demo-app": "cmd/runlens-demo-app/main.go"}[name]
		if _, err := os.Stat(filepath.Join(repoRoot, source)); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		checkAMQPEnv(t, c, name, source)
	}
}
