package report

import (
	"encoding/json"
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

// decodeSalt reads a Salt job return, wrapped in {"tag", "data"} or bare.
func decodeSalt(e *envelope) (*Run, *Rejected) {
	const f = FormatSalt
	d := &e.saltData
	var tagJID, tagMinion string
	if e.Tag != "" {
		var reason string
		tagJID, tagMinion, reason = parseSaltTag(string(e.Tag))
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
	if d.Return == nil {
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

	node := string(d.ID)
	switch {
	case node == "":
		node = tagMinion
	case tagMinion != "" && node != tagMinion:
		return nil, rejectf(f, "minion id %s does not match the tag's minion %s", quote(node), quote(tagMinion))
	}
	jid := string(d.JID)
	switch {
	case jid == "":
		jid = tagJID
	case tagJID != "" && jid != tagJID:
		return nil, rejectf(f, "jid %s does not match the tag's jid %s", quote(jid), quote(tagJID))
	}

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

	failed := false
	errMsg := ""
	ret := d.Return
	if len(ret) == 0 {
		ret = json.RawMessage("null")
	}
	switch ret[0] {
	case '{':
		states, reason := saltStates(ret, fun, e.fast)
		if reason != "" {
			return nil, rejectf(f, "%s", reason)
		}
		var total float64
		timed := false
		for i := range states {
			st := &states[i]
			module, name := splitStateKey(st.key)
			if st.Name != "" {
				name = string(st.Name)
			}
			// result null means test mode: it would change, it did not.
			switch string(st.Result) {
			case "false":
				failed = true
				r.addFailed(module, name)
				if errMsg == "" {
					errMsg = string(st.Comment)
				}
			case "true":
				if truthy(st.Changes) {
					r.addUpdated(module, name)
				}
			}
			if st.Duration.Set && st.Duration.V >= 0 {
				total += st.Duration.V
				timed = true
			}
		}
		r.TotalResources = len(states)
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
		return nil, rejectf(f, "salt return of %s is not a state result", quote(fun))
	}

	code, codeSet := saltRetcode(d.Retcode)
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

// parseSaltTag reads salt/job/<jid>/ret/<minion>. Other tags are events on
// the same bus that are not job returns; each gets its own reason so a
// misconfigured bridge is easy to spot in the dead-letter queue.
func parseSaltTag(tag string) (jid, minion, reason string) {
	parts := strings.SplitN(tag, "/", 5)
	if len(parts) < 2 || parts[0] != "salt" {
		return "", "", "tag " + quote(tag) + " is not a salt event tag"
	}
	if parts[1] == "run" {
		return "", "", "salt runner event, not a minion job return"
	}
	if parts[1] != "job" || len(parts) < 4 {
		return "", "", "salt event " + quote(tag) + " is not a job return"
	}
	switch parts[3] {
	case "ret":
		if len(parts) < 5 || parts[4] == "" {
			return "", "", "salt return tag " + quote(tag) + " names no minion"
		}
		return parts[2], parts[4], ""
	case "new":
		return "", "", "salt job-publish event, not a return"
	case "prog":
		return "", "", "salt state progress event, not a return"
	case "sub":
		return "", "", "salt job sub-event, not a return"
	}
	return "", "", "salt event " + quote(tag) + " is not a job return"
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
	for _, raw := range lists {
		if len(raw) == 0 || raw[0] != '[' {
			continue
		}
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			continue
		}
		for _, it := range items {
			if len(it) == 0 {
				continue
			}
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
	}
	return ""
}
