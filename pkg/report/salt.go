package report

import (
	"encoding/json"
	"iter"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// saltData is a Salt job return event's data, as the minion builds it
// (salt/minion.py _return_pub) plus the master's _stamp. `success` is
// deliberately absent: old minions send success:true with retcode 2, so
// status comes from retcode and the states' results only.
type saltData struct {
	JID     looseString     `json:"jid"`
	ID      looseString     `json:"id"`
	Fun     looseString     `json:"fun"`
	FunArgs json.RawMessage `json:"fun_args"`
	Arg     json.RawMessage `json:"arg"`
	Return  json.RawMessage `json:"return"`
	Retcode looseFloat      `json:"retcode"`
	Stamp   looseString     `json:"_stamp"`
	Minions json.RawMessage `json:"minions"`

	// A salt-ssh host that could not run the job returns no `return`, only
	// what the ssh command printed and its exit code
	// (salt/client/ssh/__init__.py handle_routine: {"stdout", "stderr",
	// "retcode"}), or an `_error` (the ssh wrappers' "Failed to return clean
	// data", salt/client/ssh/wrapper/__init__.py). The event salt-ssh fires
	// for it carries id, fun and jid too.
	Stdout   looseString `json:"stdout"`
	Stderr   looseString `json:"stderr"`
	SSHError looseString `json:"_error"`

	// Grains is what runlens' returner adds when it runs on the minion.
	Grains *saltGrains `json:"grains"`
}

// saltGrains are the minion's grains the returner sends along
// (producers/salt/_returners/runlens_amqp.py): the node's identity.
type saltGrains struct {
	FQDN        looseString `json:"fqdn"`
	IPv4        looseList   `json:"ipv4"`
	OS          looseString `json:"os"`
	OSRelease   looseString `json:"osrelease"`
	SaltVersion looseString `json:"saltversion"`
	Roles       looseList   `json:"roles"`
}

// saltState is one state's result in a state run's return.
type saltState struct {
	Name     looseString     `json:"name"`
	Result   json.RawMessage `json:"result"`
	Changes  json.RawMessage `json:"changes"`
	Comment  looseString     `json:"comment"`
	Duration looseFloat      `json:"duration"` // milliseconds
	RunNum   looseFloat      `json:"__run_num__"`

	key string
}

// saltStateSep separates the parts of a state key:
// <module>_|-<id>_|-<name>_|-<function>.
const saltStateSep = "_|-"

// saltNoRun lists state.* functions that inspect or control the state
// system without applying states; their returns are not run results.
var saltNoRun = map[string]bool{
	"state.running": true, "state.list_disabled": true, "state.disable": true, "state.enable": true,
	"state.sls_exists": true, "state.id_exists": true, "state.clear_cache": true, "state.clear_request": true,
	"state.check_request": true, "state.pause": true, "state.resume": true, "state.soft_kill": true,
	"state.get_pauses": true, "state.event": true,
}

// saltDryRunFuns are state functions that only ever run in test mode:
// state.test runs state.apply with test=True, and state.request queues a
// run for later and returns its test=True result (salt/modules/state.py).
var saltDryRunFuns = map[string]bool{"state.test": true, "state.request": true}

// saltOrchestrateFuns are the runners of salt/runners/state.py that apply
// states on the master: their return is a state run of the master's own
// minion (MasterMinion), whose id names the node.
var saltOrchestrateFuns = map[string]bool{
	"runner.state.orchestrate": true, "runner.state.orch": true, "runner.state.sls": true,
	"runner.state.orchestrate_single": true, "runner.state.orchestrate_high": true,
}

// decodeSalt reads a Salt job return, wrapped in {"tag", "data"} or bare, or
// an orchestration runner's return (tag salt/run/<jid>/ret).
func decodeSalt(e *envelope) (*Run, *Rejected) {
	const f = FormatSalt
	d := &e.saltData
	var tag saltTag
	if e.Tag != "" {
		var reason string
		tag, reason = parseSaltTag(string(e.Tag))
		if reason != "" {
			return nil, rejectf(f, "%s", reason)
		}
		if e.Data == nil {
			return nil, rejectf(f, "salt event has no data")
		}
	}
	if e.Data != nil {
		d = e.Data
	}
	if tag.runner {
		return decodeSaltRunner(e, d, tag.jid)
	}
	sshFailed := d.Return == nil && (d.SSHError != "" || d.Stderr != "" || d.Stdout != "")
	if d.Return == nil && !sshFailed {
		if d.Minions != nil {
			return nil, rejectf(f, "salt job-publish event, not a return")
		}
		return nil, rejectf(f, "salt job return has no return")
	}

	fun := string(d.Fun)
	switch {
	case !strings.HasPrefix(fun, "state."):
		return nil, rejectf(f, "salt function %s is not a state run", quote(fun))
	case saltNoRun[fun] || strings.HasPrefix(fun, "state.show_"):
		return nil, rejectf(f, "salt function %s does not apply states", quote(fun))
	}

	node := nodeName(string(d.ID))
	tagMinion := nodeName(tag.minion)
	switch {
	case node == "":
		node = tagMinion
	case tagMinion != "" && node != tagMinion:
		return nil, rejectf(f, "minion id %s does not match the tag's minion %s", quote(node), quote(tagMinion))
	}
	jid := string(d.JID)
	switch {
	case jid == "":
		jid = tag.jid
	case tag.jid != "" && jid != tag.jid:
		return nil, rejectf(f, "jid %s does not match the tag's jid %s", quote(jid), quote(tag.jid))
	}

	r, rj := newSaltRun(node, jid, d)
	if rj != nil {
		return nil, rj
	}
	if g := d.Grains; g != nil {
		r.FQDN = cleanName(string(g.FQDN))
		r.IPAddress = cleanName(firstAddress(g.IPv4))
		r.Platform = cleanName(joinNonEmpty(string(g.OS), string(g.OSRelease)))
		r.ClientVersion = cleanName(string(g.SaltVersion))
		r.Roles = cleanList(g.Roles)
	}
	if saltDryRunFuns[fun] {
		r.Kind = KindDryRun
	}

	var failed bool
	var errMsg string
	if sshFailed {
		// The job never ran on the host: a failed run of that node.
		failed = true
		errMsg = firstNonEmpty(d.SSHError, d.Stderr, d.Stdout)
	} else {
		var reason string
		if failed, errMsg, reason = applySaltReturn(r, d.Return, fun, e.fast); reason != "" {
			return nil, rejectf(f, "%s", reason)
		}
	}
	code, codeSet := saltRetcode(d.Retcode)
	return finishSalt(r, failed, errMsg, code, codeSet)
}

// decodeSaltRunner reads a salt/run/<jid>/ret event. Only orchestration
// (salt/runners/state.py) returns a state run: {"data": {<master id>:
// <states>}, "outputter": "highstate", "retcode": 0|1}, or for
// orchestrate_single and orchestrate_high {<master id>: <states>}. The run
// is the master's: its id (the master's `id` option, "<host>_master" by
// default) names the node. Other runners are rejected as before.
func decodeSaltRunner(e *envelope, d *saltData, tagJID string) (*Run, *Rejected) {
	const f = FormatSalt
	fun := string(d.Fun)
	if !saltOrchestrateFuns[fun] {
		return nil, rejectf(f, "salt runner event, not a minion job return")
	}
	if d.Return == nil {
		return nil, rejectf(f, "salt job return has no return")
	}
	jid := string(d.JID)
	switch {
	case jid == "":
		jid = tagJID
	case tagJID != "" && jid != tagJID:
		return nil, rejectf(f, "jid %s does not match the tag's jid %s", quote(jid), quote(tagJID))
	}
	var outer map[string]json.RawMessage
	if len(d.Return) == 0 || d.Return[0] != '{' || json.Unmarshal(d.Return, &outer) != nil {
		return nil, rejectf(f, "salt return of %s is not a state result", quote(fun))
	}
	inner := outer
	var retcode looseFloat
	if data, ok := outer["data"]; ok {
		inner = nil
		if len(data) == 0 || data[0] != '{' || json.Unmarshal(data, &inner) != nil {
			return nil, rejectf(f, "salt return of %s is not a state result", quote(fun))
		}
		if rc, ok := outer["retcode"]; ok {
			_ = retcode.UnmarshalJSON(rc)
		}
	}
	if len(inner) != 1 {
		return nil, rejectf(f, "salt return of %s names %d masters, want one", quote(fun), len(inner))
	}
	var master string
	var states json.RawMessage
	for k, v := range inner {
		master, states = nodeName(k), v
	}
	r, rj := newSaltRun(master, jid, d)
	if rj != nil {
		return nil, rj
	}
	failed, errMsg, reason := applySaltReturn(r, states, fun, e.fast)
	if reason != "" {
		return nil, rejectf(f, "%s", reason)
	}
	code, codeSet := saltRetcode(retcode)
	if !codeSet {
		code, codeSet = saltRetcode(d.Retcode)
	}
	return finishSalt(r, failed, errMsg, code, codeSet)
}

// newSaltRun starts the Run of a Salt state run of node: identity, end
// time, environment and whether it ran in test mode.
func newSaltRun(node, jid string, d *saltData) (*Run, *Rejected) {
	const f = FormatSalt
	r := &Run{
		Format:      f,
		Kind:        KindRun,
		Source:      SourceSalt,
		Node:        node,
		Environment: cleanName(saltEnv(d.FunArgs, d.Arg)),
	}
	if reason := checkNode(node); reason != "" {
		return nil, rejectf(f, "%s", reason)
	}
	if r.Environment == "" {
		r.Environment = "base" // Salt's default environment
	}
	if jid = cleanName(jid); jid != "" {
		r.ID = jid + "/" + node
	}
	var rj *Rejected
	if r.End, rj = reportTime(f, "_stamp", d.Stamp); rj != nil {
		return nil, rj
	}
	if saltTestMode(d.FunArgs, d.Arg) {
		r.Kind = KindDryRun
	}
	return r, nil
}

// applySaltReturn counts a state run's return into r. failed and errMsg
// describe the run's failure; reason is set when the return is not a state
// run's at all.
func applySaltReturn(r *Run, ret json.RawMessage, fun string, fast bool) (failed bool, errMsg, reason string) {
	if len(ret) == 0 {
		ret = json.RawMessage("null")
	}
	switch ret[0] {
	case '{':
		states, reason := saltStates(ret, fun, fast)
		if reason != "" {
			// A dict that is not a state result may still say why the run
			// did not happen: {"_error": …} from the salt-ssh wrappers, or
			// the {"stdout", "stderr", "retcode"} of a host that could not
			// run the job.
			if msg, ok := saltErrorReturn(ret); ok {
				return true, msg, ""
			}
			return false, "", reason
		}
		var total float64
		timed := false
		var tally resourceTally
		for i := range states {
			st := &states[i]
			module, name := splitStateKey(st.key)
			if st.Name != "" {
				name = string(st.Name)
			}
			// result null means test mode: it would change, it did not.
			result := string(st.Result)
			newUpdated, newFailed := tally.see(module, name, result == "true" && truthy(st.Changes), result == "false")
			if newUpdated {
				r.addUpdated(module, name)
			}
			if result == "false" {
				failed = true
				if newFailed {
					r.addFailed(module, name)
				}
				if errMsg == "" {
					errMsg = string(st.Comment)
				}
			}
			if st.Duration.Set && st.Duration.V >= 0 {
				total += st.Duration.V
				timed = true
			}
		}
		r.TotalResources = tally.distinct()
		// Salt reports no start time, only how long each state took.
		// Their sum misses the time between states and overcounts parallel
		// states, but it is the best start the return allows.
		if timed && total <= float64(maxRunDuration/time.Millisecond) {
			r.Duration = time.Duration(math.Round(total * float64(time.Millisecond)))
			r.Start = r.End.Add(-r.Duration)
		}
	case '[':
		// A compile or render error: the return is the list of errors.
		failed = true
		var items []looseString
		_ = json.Unmarshal(ret, &items)
		for _, it := range items {
			if it != "" {
				errMsg = string(it)
				break
			}
		}
	case '"':
		// The minion function raised: the return is the traceback text.
		failed = true
		errMsg = unquote(ret)
	default:
		return false, "", "salt return of " + quote(fun) + " is not a state result"
	}
	return failed, errMsg, ""
}

// saltErrorReturn reads a return that reports an error instead of state
// results: {"_error": …} or {"stdout", "stderr", "retcode"}, with nothing
// else that could be a state.
func saltErrorReturn(ret json.RawMessage) (string, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(ret, &m) != nil {
		return "", false
	}
	for k := range m {
		switch k {
		case "_error", "stdout", "stderr", "retcode", "parsed":
		default:
			return "", false
		}
	}
	var e struct {
		Error  looseString `json:"_error"`
		Stderr looseString `json:"stderr"`
		Stdout looseString `json:"stdout"`
	}
	if json.Unmarshal(ret, &e) != nil || (e.Error == "" && e.Stderr == "" && e.Stdout == "") {
		return "", false
	}
	return firstNonEmpty(e.Error, e.Stderr, e.Stdout), true
}

// finishSalt sets the status and error of a Salt run and checks it.
func finishSalt(r *Run, failed bool, errMsg string, code int, codeSet bool) (*Run, *Rejected) {
	if codeSet && code != 0 {
		failed = true
	}
	r.Status = StatusSuccess
	if failed {
		r.Status = StatusFailure
		class := "salt.state.failed"
		if codeSet {
			class = "salt.retcode." + strconv.Itoa(code)
		}
		r.Error = newRunError(class, errMsg)
	}
	return finish(r)
}

// firstAddress is the first address of a grains ipv4 list that is not a
// loopback one.
func firstAddress(ips looseList) string {
	for _, ip := range ips {
		if s := strings.TrimSpace(string(ip)); s != "" && !strings.HasPrefix(s, "127.") {
			return s
		}
	}
	return ""
}

// saltTestMode reports whether a job ran with test=True, as
// salt.utils.args.test_mode decides: a `test` keyword (in any case) whose
// value salt.utils.data.is_true takes as true. Keywords arrive as kwarg
// dicts ({"test": true, "__kwarg__": true}) or, unparsed, as "test=True".
func saltTestMode(lists ...json.RawMessage) bool {
	for it := range saltArgItems(lists...) {
		switch it[0] {
		case '"':
			k, v, ok := strings.Cut(unquote(it), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "test") {
				// The minion reads the value as YAML: True, true, yes, on, 1.
				switch strings.ToLower(strings.TrimSpace(v)) {
				case "true", "yes", "on", "1":
					return true
				}
			}
		case '{':
			var kw map[string]json.RawMessage
			if json.Unmarshal(it, &kw) != nil {
				continue
			}
			for k, v := range kw {
				if strings.EqualFold(k, "test") && saltIsTrue(v) {
					return true
				}
			}
		}
	}
	return false
}

// saltArgItems yields, in order, the non-empty items of Salt's argument
// lists (a job's fun_args, then arg): "key=value" strings, kwarg dicts and
// plain arguments. A list that is not a JSON array is passed over.
func saltArgItems(lists ...json.RawMessage) iter.Seq[json.RawMessage] {
	return func(yield func(json.RawMessage) bool) {
		for _, raw := range lists {
			if len(raw) == 0 || raw[0] != '[' {
				continue
			}
			var items []json.RawMessage
			if json.Unmarshal(raw, &items) != nil {
				continue
			}
			for _, it := range items {
				if len(it) > 0 && !yield(it) {
					return
				}
			}
		}
	}
}

// saltIsTrue is salt.utils.data.is_true for a JSON value: true, a number
// above zero, or a string that is "true" in any case or a number above zero.
func saltIsTrue(v json.RawMessage) bool {
	v = json.RawMessage(strings.TrimSpace(string(v)))
	if len(v) == 0 {
		return false
	}
	s := string(v)
	switch v[0] {
	case 't':
		return s == "true"
	case 'f', 'n', '[', '{':
		return false
	case '"':
		s = strings.TrimSpace(unquote(v))
		if strings.EqualFold(s, "true") {
			return true
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	return err == nil && n > 0
}

// saltTag is what a Salt event tag says about the event.
type saltTag struct {
	jid, minion string
	runner      bool // salt/run/<jid>/ret
}

// parseSaltTag reads salt/job/<jid>/ret/<minion> and salt/run/<jid>/ret.
// Other tags are events on the same bus that are not job returns; each
// gets its own reason so a misconfigured bridge is easy to spot in the
// dead-letter queue.
func parseSaltTag(tag string) (saltTag, string) {
	parts := strings.SplitN(tag, "/", 5)
	if len(parts) < 2 || parts[0] != "salt" {
		return saltTag{}, "tag " + quote(tag) + " is not a salt event tag"
	}
	if parts[1] == "run" {
		if len(parts) == 4 && parts[2] != "" && parts[3] == "ret" {
			return saltTag{jid: parts[2], runner: true}, ""
		}
		return saltTag{}, "salt runner event, not a minion job return"
	}
	if parts[1] != "job" || len(parts) < 4 {
		return saltTag{}, "salt event " + quote(tag) + " is not a job return"
	}
	switch parts[3] {
	case "ret":
		if len(parts) < 5 || parts[4] == "" {
			return saltTag{}, "salt return tag " + quote(tag) + " names no minion"
		}
		return saltTag{jid: parts[2], minion: parts[4]}, ""
	case "new":
		return saltTag{}, "salt job-publish event, not a return"
	case "prog":
		return saltTag{}, "salt state progress event, not a return"
	case "sub":
		return saltTag{}, "salt job sub-event, not a return"
	}
	return saltTag{}, "salt event " + quote(tag) + " is not a job return"
}

// saltStates decodes a state run's return, in execution order (__run_num__)
// so "the first failed state" is the one that failed first, not whichever
// a map happened to yield.
func saltStates(ret json.RawMessage, fun string, fast bool) ([]saltState, string) {
	var m map[string]saltState
	// The state results are the bulk of a Salt return: the fast decoder
	// (see Decoder.decode) reads them. Every field is a loose* type whose
	// own UnmarshalJSON does the string handling, so both decoders agree.
	unmarshal := json.Unmarshal
	if fast {
		unmarshal = unmarshalFast
	}
	if err := unmarshal(ret, &m); err != nil {
		return nil, "salt return of " + quote(fun) + " is not a state result"
	}
	states := make([]saltState, 0, len(m))
	for k, st := range m {
		if !strings.Contains(k, saltStateSep) {
			return nil, "salt return of " + quote(fun) + " is not a state result"
		}
		st.key = k
		states = append(states, st)
	}
	sort.Slice(states, func(i, j int) bool {
		a, b := states[i], states[j]
		if a.RunNum.Set != b.RunNum.Set {
			return a.RunNum.Set
		}
		if a.RunNum.V != b.RunNum.V {
			return a.RunNum.V < b.RunNum.V
		}
		return a.key < b.key
	})
	return states, ""
}

// splitStateKey takes the module (the resource type) and the name from a
// state key. Names may themselves contain "_|-", "|" and newlines, so the
// name is everything between the id and the function.
func splitStateKey(key string) (module, name string) {
	parts := strings.Split(key, saltStateSep)
	switch len(parts) {
	case 1:
		return parts[0], ""
	case 2, 3:
		return parts[0], parts[1]
	}
	return parts[0], strings.Join(parts[2:len(parts)-1], saltStateSep)
}

// saltRetcode reads retcode as an integer; false when absent or unusable.
func saltRetcode(f looseFloat) (int, bool) {
	switch {
	case !f.Set:
		return 0, false
	case f.V != math.Trunc(f.V) || math.Abs(f.V) > math.MaxInt32:
		return -1, true // not a retcode Salt sets, but certainly not 0
	}
	return int(f.V), true
}

// saltEnv finds the saltenv a job ran in, from fun_args or else arg. Salt
// passes it as "saltenv=X" or as a kwarg dict {"saltenv": "X"} (with
// "__kwarg__": true in published args).
func saltEnv(lists ...json.RawMessage) string {
	for it := range saltArgItems(lists...) {
		switch it[0] {
		case '"':
			if v, ok := strings.CutPrefix(unquote(it), "saltenv="); ok && v != "" {
				return v
			}
		case '{':
			var kw struct {
				Saltenv looseString `json:"saltenv"`
			}
			if json.Unmarshal(it, &kw) == nil && kw.Saltenv != "" {
				return string(kw.Saltenv)
			}
		}
	}
	return ""
}
