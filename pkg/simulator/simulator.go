// Package simulator makes realistic run reports for a made-up fleet, in every
// format runlens accepts, so the quick start, the tests and the benchmarks
// have traffic without a real Chef or Salt installation.
//
// It only produces bytes; publishing them is the broker package's job.
package simulator

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

// Config describes the fleet. Zero fields take the defaults of Defaults.
type Config struct {
	Nodes        int
	Environments []string
	// Roles and what each depends on; nodes get one role each (plus "base").
	Roles     []string
	DependsOn map[string][]string
	// Formats are picked per node, round robin, so every format is present
	// in any fleet of three nodes or more.
	Formats []report.Format
	// FailureRate is the chance that a run fails; negative means never
	// (zero takes the default).
	FailureRate float64
	// Resources is the typical number of resources a Chef run evaluates.
	Resources int
	// NodeAttributeBytes pads each Chef data collector message's `node`
	// object to about this size, as Ohai data does in real messages (the
	// shared fixtures carry 100-300 KB; many sites allow-list it down).
	NodeAttributeBytes int
	// Seed makes the fleet and its runs reproducible.
	Seed uint64
	// Scenario rolls changes out to the fleet (see Scenario); the zero
	// value is steady: no changes.
	Scenario Scenario
	// ScenarioStart is the time the scenario's offsets count from; zero
	// means the end time of the first run the fleet makes.
	ScenarioStart time.Time
}

// Defaults fills the zero fields.
func (c Config) Defaults() Config {
	if c.Nodes <= 0 {
		c.Nodes = 100
	}
	if len(c.Environments) == 0 {
		c.Environments = []string{"production", "staging", "development"}
	}
	if len(c.Roles) == 0 {
		c.Roles = []string{"lb", "web", "app", "db", "cache"}
	}
	if c.DependsOn == nil {
		c.DependsOn = map[string][]string{"lb": {"web"}, "web": {"app", "cache"}, "app": {"db", "cache"}}
	}
	if len(c.Formats) == 0 {
		c.Formats = []report.Format{report.FormatChefHandler, report.FormatChefDataCollector, report.FormatSalt}
	}
	if c.FailureRate == 0 {
		c.FailureRate = 0.05
	}
	if c.Resources <= 0 {
		c.Resources = 40
	}
	if c.NodeAttributeBytes == 0 {
		c.NodeAttributeBytes = 8 << 10
	}
	return c
}

// Node is one simulated host.
type Node struct {
	Name        string
	FQDN        string
	IP          string
	Environment string
	Role        string
	Format      report.Format
}

// Fleet generates runs for its nodes.
type Fleet struct {
	cfg     Config
	Nodes   []Node
	rng     *rand.Rand
	padding string
	seq     uint64
	plan    *plan
	started bool
	start   time.Time
}

// New builds the fleet's nodes.
func New(cfg Config) *Fleet {
	cfg = cfg.Defaults()
	f := &Fleet{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
	for i := range cfg.Nodes {
		env := cfg.Environments[i%len(cfg.Environments)]
		role := cfg.Roles[(i/len(cfg.Environments))%len(cfg.Roles)]
		name := fmt.Sprintf("%s-%s-%05d", role, env, i)
		f.Nodes = append(f.Nodes, Node{
			Name: name, FQDN: name + ".example.internal",
			IP:          fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255),
			Environment: env, Role: role,
			Format: cfg.Formats[i%len(cfg.Formats)],
		})
	}
	if cfg.NodeAttributeBytes > 0 {
		f.padding = strings.Repeat("x", cfg.NodeAttributeBytes)
	}
	if len(cfg.Scenario.Steps) > 0 {
		f.plan = compile(cfg.Scenario, f.Nodes, cfg.Seed)
	}
	f.start, f.started = cfg.ScenarioStart, !cfg.ScenarioStart.IsZero()
	return f
}

// Outcome forces a run's result; Random follows Config.FailureRate.
type Outcome uint8

const (
	Random Outcome = iota
	Succeed
	Fail
)

// Run is one simulated run: the messages a producer sends for it, in order
// (a data collector node sends run_start then run_converge).
type Run struct {
	Node     *Node
	ID       string
	Failed   bool
	Updated  int
	Messages [][]byte
	// Start and End are the run's times; a data collector's run_start
	// (Messages[0]) is meant to be sent at Start, the last message at End.
	Start, End time.Time
	// Change is the scenario change this run applied (or, for a bad run
	// change, failed on); empty for an ordinary run. Wave is the wave (from
	// 0) that brought it to the node.
	Change string
	Wave   int
}

// MaxRunDuration bounds a simulated run's duration: its start is at most this
// long before its end.
const MaxRunDuration = 120 * time.Second

// ScenarioStart is the time the scenario's offsets count from (zero until
// the first run when Config.ScenarioStart was zero).
func (f *Fleet) ScenarioStart() time.Time { return f.start }

// runPlan is what one run does, for the format writers.
type runPlan struct {
	role           string
	total, updated int
	failed         bool
	// override names resources by index (the change's resources).
	override map[int][2]string
	errClass string
	errMsg   string
	change   string // the bad run change the run fails on
}

func (p *runPlan) resource(i int) (typ, name string) {
	if o, ok := p.override[i]; ok {
		return o[0], o[1]
	}
	typ = resourceTypes[(i*7+len(resourceTypes))%len(resourceTypes)]
	return typ, fmt.Sprintf("/etc/app/conf.d/%03d.conf", i)
}

// NextRun makes the next run of node i ending at end.
func (f *Fleet) NextRun(i int, end time.Time, outcome Outcome) Run {
	n := &f.Nodes[i]
	f.seq++
	if !f.started {
		f.start, f.started = end, true
	}
	step, wave := -1, -1
	if f.plan != nil {
		step, wave = f.plan.due(i, end.Sub(f.start))
	}
	failed := outcome == Fail || outcome == Random && f.rng.Float64() < f.cfg.FailureRate
	dur := time.Duration(20+f.rng.IntN(100)) * time.Second
	start := end.Add(-dur)
	total := f.cfg.Resources/2 + f.rng.IntN(f.cfg.Resources+1)
	if n.Format == report.FormatSalt {
		total = total/2 + 1 // a Salt state does what several Chef resources do
	}
	updated := f.rng.IntN(total/4 + 1)
	if f.rng.IntN(3) == 0 {
		updated = 0 // most runs of a converged fleet change nothing
	}
	if failed && updated >= total {
		updated = total - 1 // the last resource is the one that fails
	}
	p := &runPlan{role: n.Role, total: total, updated: updated, failed: failed, errClass: errClass, errMsg: errMessage}
	r := Run{Node: n, Start: start, End: end, Wave: -1}
	if step >= 0 {
		f.applyChange(p, i, step, outcome)
		r.Change, r.Wave = f.plan.sc.Steps[step].Change, wave
	}
	r.Failed, r.Updated = p.failed, p.updated
	switch n.Format {
	case report.FormatChefDataCollector:
		r.ID = f.uuid()
		r.Messages = [][]byte{f.runStart(n, r.ID, start), f.runConverge(n, r.ID, start, end, p)}
	case report.FormatSalt:
		jid := end.UTC().Format("20060102150405") + fmt.Sprintf("%06d", f.seq%1_000_000)
		r.ID = jid + "/" + n.Name
		r.Messages = [][]byte{f.saltReturn(n, jid, end, p)}
	default:
		r.ID = f.uuid()
		r.Messages = [][]byte{f.handler(n, r.ID, start, end, p)}
	}
	return r
}

// applyChange makes run p of node i apply (or fail on) scenario step step.
// An explicit outcome (Succeed, Fail) wins over a bad run change.
func (f *Fleet) applyChange(p *runPlan, i, step int, outcome Outcome) {
	st := f.plan.sc.Steps[step]
	confType, relType := "template", "file"
	if f.Nodes[i].Format == report.FormatSalt {
		confType = "file"
	}
	if st.Bad && st.BadKind == BadRun && outcome == Random {
		// The change's template is the resource that fails; the node keeps
		// failing on it until a later step reaches it.
		p.failed = true
		p.total = max(p.total, 2)
		p.updated = min(p.updated, p.total-1)
		p.override = map[int][2]string{p.total - 1: {confType, ConfigResource(st.Role)}}
		p.change = st.Change
		p.errClass = "Chef::Mixin::Template::TemplateError"
		p.errMsg = fmt.Sprintf("template[%s] (%s::default line 12) had an error: Chef::Mixin::Template::TemplateError: undefined method `[]' for nil:NilClass (change %s)",
			ConfigResource(st.Role), st.Role, st.Change)
		return
	}
	// The run applies the change: its template and release marker are the
	// first resources it updates.
	p.total = max(p.total, 3)
	p.updated = max(p.updated, 2)
	if p.failed && p.updated >= p.total {
		p.updated = p.total - 1
	}
	p.override = map[int][2]string{
		0: {confType, ConfigResource(st.Role)},
		1: {relType, ReleaseResource(st.Role, st.Change, st.Bad && st.BadKind == BadService)},
	}
	f.plan.applied[i] = step
}

// Round makes one run for every node, their end times spread evenly over
// [from, from+spread).
func (f *Fleet) Round(from time.Time, spread time.Duration, outcome Outcome) []Run {
	runs := make([]Run, len(f.Nodes))
	for i := range f.Nodes {
		off := time.Duration(0)
		if len(f.Nodes) > 1 {
			off = spread * time.Duration(i) / time.Duration(len(f.Nodes))
		}
		runs[i] = f.NextRun(i, from.Add(off), outcome)
	}
	return runs
}

func (f *Fleet) uuid() string {
	a, b := f.rng.Uint64(), f.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", a>>32, (a>>16)&0xffff, a&0xfff, b>>52, b&0xffffffffffff)
}

var resourceTypes = []string{"file", "template", "package", "service", "directory", "execute", "user", "cron", "link", "apt_package"}
var saltModules = []string{"file", "pkg", "service", "cmd", "user", "cron", "git"}

const errClass = "Chef::Exceptions::Exec"
const errMessage = "execute[migrate-db] (app::deploy line 42) had an error: Chef::Exceptions::Exec: Expected process to exit with [0], but received '1'"

func (f *Fleet) handler(n *Node, id string, start, end time.Time, p *runPlan) []byte {
	updated, failed := p.updated, p.failed
	res := make([]string, updated)
	for i := range res {
		t, name := p.resource(i)
		res[i] = t + "[" + name + "]"
	}
	m := map[string]any{
		"node_name": n.Name, "fqdn": n.FQDN, "ip_address": n.IP, "environment": n.Environment,
		"status": status(failed), "run_start_time": start.UTC().Format(time.RFC3339), "run_end_time": end.UTC().Format(time.RFC3339),
		"run_elapsed_time": end.Sub(start).Seconds(), "updated_resources_count": updated, "updated_resources": res,
		"report_generated_at": end.UTC().Format(time.RFC3339), "run_id": id,
		"roles": []string{"base", n.Role}, "run_list": []string{"role[base]", "role[" + n.Role + "]"},
		"chef_version": "18.5.0", "platform": "ubuntu", "depends_on": f.cfg.DependsOn[n.Role],
	}
	if failed {
		m["error"] = map[string]any{"class": p.errClass, "message": p.errMsg, "backtrace": []string{"/opt/chef/lib/chef/mixin/shell_out.rb:181:in `shell_out!'"}}
	}
	return mustJSON(m)
}

func (f *Fleet) runStart(n *Node, id string, start time.Time) []byte {
	return mustJSON(map[string]any{
		"chef_server_fqdn": "chef.example.internal", "entity_uuid": id, "id": id, "message_version": "1.0.0",
		"message_type": "run_start", "node_name": n.Name, "organization_name": "runlens", "run_id": id,
		"source": "chef_client", "start_time": start.UTC().Format(time.RFC3339),
	})
}

func (f *Fleet) runConverge(n *Node, id string, start, end time.Time, p *runPlan) []byte {
	total, updated, failed := p.total, p.updated, p.failed
	resources := make([]map[string]any, 0, total)
	for i := range total {
		t, name := p.resource(i)
		st := "up-to-date"
		if i < updated {
			st = "updated"
		}
		if failed && i == total-1 {
			st = "failed"
		}
		resources = append(resources, map[string]any{
			"type": t, "name": name, "id": name, "after": map[string]any{"path": name}, "before": map[string]any{},
			"duration": fmt.Sprint(f.rng.IntN(500)), "delta": "", "ignore_failure": false, "result": "create",
			"status": st, "cookbook_name": n.Role, "cookbook_version": "1.4.2", "recipe_name": "default",
		})
	}
	m := map[string]any{
		"chef_server_fqdn": "chef.example.internal", "entity_uuid": id, "id": id, "message_version": "1.1.0",
		"message_type": "run_converge", "node_name": n.Name, "organization_name": "runlens", "run_id": id,
		"run_list": []string{"role[base]", "role[" + n.Role + "]"}, "source": "chef_client",
		"start_time": start.UTC().Format(time.RFC3339), "end_time": end.UTC().Format(time.RFC3339),
		"status": status(failed), "total_resource_count": total, "updated_resource_count": updated,
		"resources": resources, "deprecations": []any{}, "policy_name": nil, "policy_group": nil,
		"expanded_run_list": map[string]any{"id": n.Environment, "run_list": []any{}},
		"node": map[string]any{
			"name": n.Name, "chef_environment": n.Environment, "chef_type": "node", "json_class": "Chef::Node",
			"automatic": map[string]any{
				"fqdn": n.FQDN, "ipaddress": n.IP, "roles": []string{"base", n.Role}, "platform": "ubuntu",
				"platform_version": "24.04", "chef_packages": map[string]any{"chef": map[string]any{"version": "18.5.0"}},
				"ohai_padding": f.padding,
			},
			"normal": map[string]any{"runlens": map[string]any{"depends_on": f.cfg.DependsOn[n.Role]}}, "default": map[string]any{}, "override": map[string]any{},
			"run_list": []string{"role[base]", "role[" + n.Role + "]"},
		},
	}
	if failed {
		m["error"] = map[string]any{"class": p.errClass, "message": p.errMsg, "backtrace": []string{}, "description": map[string]any{}}
	}
	return mustJSON(m)
}

func (f *Fleet) saltReturn(n *Node, jid string, end time.Time, p *runPlan) []byte {
	total, updated, failed := p.total, p.updated, p.failed
	states := make(map[string]any, total)
	for i := range total {
		mod := saltModules[i%len(saltModules)]
		name := fmt.Sprintf("/srv/app/%03d", i)
		if o, ok := p.override[i]; ok {
			mod, name = o[0], o[1]
		}
		changes := map[string]any{}
		if i < updated {
			changes = map[string]any{"diff": "New file"}
		}
		result := true
		comment := "File " + name + " is in the correct state"
		if failed && i == total-1 {
			result, comment = false, "The following packages failed to install/update: app-server"
			if p.change != "" {
				comment = "Unable to manage file: Jinja variable 'dict object' has no attribute 'port' (change " + p.change + ")"
			}
		}
		key := mod + "_|-" + fmt.Sprintf("state-%03d", i) + "_|-" + name + "_|-managed"
		states[key] = map[string]any{
			"name": name, "changes": changes, "result": result, "comment": comment, "__sls__": n.Role,
			"__run_num__": i, "start_time": end.UTC().Format("15:04:05.000000"), "duration": 10 + f.rng.Float64()*200, "__id__": fmt.Sprintf("state-%03d", i),
		}
	}
	retcode := 0
	if failed {
		retcode = 2
	}
	return mustJSON(map[string]any{
		"tag": "salt/job/" + jid + "/ret/" + n.Name,
		"data": map[string]any{
			"jid": jid, "id": n.Name, "fun": "state.apply", "fun_args": []any{"saltenv=" + n.Environment},
			"return": states, "retcode": retcode, "success": retcode == 0, "out": "highstate", "cmd": "_return",
			"_stamp": end.UTC().Format("2006-01-02T15:04:05.000000"),
		},
	})
}

func status(failed bool) string {
	if failed {
		return string(report.StatusFailure)
	}
	return string(report.StatusSuccess)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only maps of plain values: cannot fail
	}
	return b
}
