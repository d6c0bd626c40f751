package report

import (
	"encoding/json"
	"testing"
)

// TestNodeNamesNormalisedInEveryFormat: "web1 " and "web1" are one node
// (issue 13), and so are an "é" sent as one code point and as e plus a
// combining accent, whatever the format. Case is kept: Chef node names and
// Salt minion ids are case-sensitive.
func TestNodeNamesNormalisedInEveryFormat(t *testing.T) {
	composed, decomposed := "caf\u00e9-01", "cafe\u0301-01"
	for _, c := range []struct{ sent, want string }{
		{"web1 ", "web1"}, {"  web1\t", "web1"}, {"\u00a0web1", "web1"}, {decomposed, composed}, {"Web1", "Web1"},
	} {
		bodies := map[string][]byte{
			"chef_handler":           edit(t, handlerOK, func(m map[string]any) { m["node_name"] = c.sent }),
			"run_start":              []byte(`{"message_type":"run_start","node_name":` + jsonString(c.sent) + `,"run_id":"r1","start_time":"2024-05-01T10:00:00Z"}`),
			"run_converge":           edit(t, convergeOK, func(m map[string]any) { m["node_name"] = c.sent }),
			"run_converge node.name": edit(t, convergeOK, func(m map[string]any) { delete(m, "node_name"); m["node"] = map[string]any{"name": c.sent} }),
			"salt id":                saltEdit(t, func(tag *string, d map[string]any) { *tag = ""; d["id"] = c.sent }),
			"salt tag and id": saltEdit(t, func(tag *string, d map[string]any) {
				*tag = "salt/job/20240501100000123456/ret/" + c.sent
				d["id"] = c.want
			}),
			"salt tag only": saltEdit(t, func(tag *string, d map[string]any) {
				*tag = "salt/job/20240501100000123456/ret/" + c.sent
				delete(d, "id")
			}),
			"salt orchestration host": orchestration(t, c.sent),
		}
		for name, body := range bodies {
			r := mustDecode(t, body)
			if r.Node != c.want {
				t.Errorf("%s: node %q decoded as %q, want %q", name, c.sent, r.Node, c.want)
			}
		}
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func orchestration(t *testing.T, master string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"tag": "salt/run/20240501140000123456/ret",
		"data": map[string]any{
			"fun": "runner.state.orchestrate", "jid": "20240501140000123456", "_stamp": "2024-05-01T14:00:42.120034",
			"return": map[string]any{"outputter": "highstate", "retcode": 0, "data": map[string]any{
				master: map[string]any{"salt_|-a_|-a_|-state": map[string]any{"result": true, "changes": map[string]any{}}},
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
