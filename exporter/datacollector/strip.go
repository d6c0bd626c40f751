package datacollector

import (
	"bytes"
	"encoding/json"
	"errors"
)

// What a stripped run_converge keeps of the node object. runlens reads the
// name, environment, policy, run list, the automatic fqdn, ipaddress, roles,
// platform, platform_version and chef_packages.chef.version, and
// runlens.depends_on from the attribute levels (pkg/report
// chef_datacollector.go); the rest of the automatic attributes kept are the
// few a node inventory built from the fanout (another consumer) shows: host
// and domain names, addresses, OS and recipes. Everything else Ohai
// collected (hundreds of KB per run: every package, filesystem, kernel
// module) goes.
var (
	keepNode      = []string{"name", "chef_environment", "policy_name", "policy_group", "run_list", "chef_type", "json_class"}
	keepAutomatic = []string{"fqdn", "hostname", "domain", "ipaddress", "ip6address", "macaddress", "roles", "recipes",
		"platform", "platform_family", "platform_version", "os", "os_version", "chef_packages", "ohai_time", "uptime_seconds"}
	attributeLevels = []string{"default", "normal", "override"}
)

// Strip reduces a Chef message to what runlens and the fanout's other
// consumers need (--ingest.strip-bodies): for a run_converge, the node
// object's attributes except the ones listed above, every resource's before
// and after state and its diff (delta, which can show the content of a
// changed file, secrets included); in every message, error messages and
// backtraces are capped and scrubbed of obvious secrets (Scrub). The message
// stays the shape Chef sends (docs/dev/design_documents/data_collector.md's
// schema: state fields become {}, delta ""), so every consumer still reads
// it. Strip is idempotent.
func Strip(body []byte, messageType string) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, err
	}
	changed := false
	if raw, ok := top["error"]; ok {
		if e, ok := stripError(raw); ok {
			top["error"], changed = e, true
		}
	}
	if messageType == "run_converge" {
		if raw, ok := top["node"]; ok {
			if n, err := stripNode(raw); err == nil {
				top["node"], changed = n, true
			}
		}
		if raw, ok := top["resources"]; ok {
			if r, err := stripResources(raw); err == nil {
				top["resources"], changed = r, true
			}
		}
	}
	if !changed {
		return body, nil
	}
	return marshalRaw(top)
}

func marshalRaw(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func objectOf(raw json.RawMessage) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errors.New("not an object")
	}
	var m map[string]json.RawMessage
	err := json.Unmarshal(raw, &m)
	return m, err
}

func pick(m map[string]json.RawMessage, keys []string) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(keys))
	for _, k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

func stripNode(raw json.RawMessage) (json.RawMessage, error) {
	node, err := objectOf(raw)
	if err != nil {
		return nil, err
	}
	out := pick(node, keepNode)
	if a, err := objectOf(node["automatic"]); err == nil {
		out["automatic"], _ = marshalRaw(pick(a, keepAutomatic))
	}
	for _, level := range attributeLevels {
		attrs, err := objectOf(node[level])
		if err != nil {
			continue
		}
		kept := map[string]any{}
		if rl, err := objectOf(attrs["runlens"]); err == nil {
			if d, ok := rl["depends_on"]; ok {
				kept["runlens"] = map[string]json.RawMessage{"depends_on": d}
			}
		}
		out[level], _ = marshalRaw(kept)
	}
	return marshalRaw(out)
}

var (
	emptyObject = json.RawMessage(`{}`)
	emptyString = json.RawMessage(`""`)
)

func stripResources(raw json.RawMessage) (json.RawMessage, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	for i, item := range list {
		res, err := objectOf(item)
		if err != nil {
			continue
		}
		for _, k := range []string{"before", "after"} {
			if _, ok := res[k]; ok {
				res[k] = emptyObject
			}
		}
		if _, ok := res["delta"]; ok {
			res["delta"] = emptyString
		}
		if m, ok := res["error_message"]; ok {
			res["error_message"] = scrubString(m, maxErrorMessageBytes)
		}
		if e, ok := res["error"]; ok {
			if s, ok := stripError(e); ok {
				res["error"] = s
			}
		}
		if list[i], err = marshalRaw(res); err != nil {
			return nil, err
		}
	}
	return marshalRaw(list)
}

// stripError caps and scrubs an error object {class, message, backtrace,
// description}; the description keeps its title only (its sections repeat
// the message).
func stripError(raw json.RawMessage) (json.RawMessage, bool) {
	e, err := objectOf(raw)
	if err != nil {
		return nil, false
	}
	if m, ok := e["message"]; ok {
		e["message"] = scrubString(m, maxErrorMessageBytes)
	}
	if bt, ok := e["backtrace"]; ok {
		var lines []json.RawMessage
		if json.Unmarshal(bt, &lines) == nil {
			lines = lines[:min(len(lines), maxBacktraceLines)]
			for i, l := range lines {
				lines[i] = scrubString(l, maxBacktraceLine)
			}
			e["backtrace"], _ = marshalRaw(lines)
		}
	}
	if d, err := objectOf(e["description"]); err == nil {
		title := map[string]json.RawMessage{}
		if t, ok := d["title"]; ok {
			title["title"] = scrubString(t, maxErrorMessageBytes)
		}
		e["description"], _ = marshalRaw(title)
	}
	out, err := marshalRaw(e)
	return out, err == nil
}

// scrubString scrubs and caps a JSON string; other values are kept.
func scrubString(raw json.RawMessage, n int) json.RawMessage {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return raw
	}
	out, err := marshalRaw(capText(Scrub(s), n))
	if err != nil {
		return raw
	}
	return out
}
