package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unsafe"

	"github.com/runlens/runlens/internal/fixtures"
)

// FuzzDecode checks the decoder's promise for any input: no panic, and
// either a Run that satisfies every invariant or a *Rejected with a reason.
// The seeds are every shared fixture plus small edge cases, so the fuzzer
// starts from each format's real shape.
func FuzzDecode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := Decode(body)
		if err != nil {
			if r != nil {
				t.Fatal("Run and error both returned")
			}
			checkRejected(t, err)
			return
		}
		checkInvariants(t, r)
	})
}

// FuzzFastMatchesStd holds the single-pass decoder to encoding/json: for
// any input both must accept the same Run or reject with the same reason,
// and where the single-pass decoder takes a message at all, the envelope it
// fills must be the one encoding/json fills (every field, not only those a
// Run shows today). Keys are matched case-insensitively by both, as
// encoding/json does ({"NODE_NAME":…} fills node_name): runlens follows the
// reference decoder rather than a second rule of its own.
func FuzzFastMatchesStd(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, fastErr := Decoder{}.Decode(body)
		std, stdErr := Decoder{stdOnly: true}.Decode(body)
		if !reflect.DeepEqual(fastErr, stdErr) {
			t.Fatalf("fast path error %v, encoding/json error %v", fastErr, stdErr)
		}
		if !reflect.DeepEqual(fast, std) {
			t.Fatalf("fast path decoded\n%+v\nencoding/json decoded\n%+v", fast, std)
		}
		checkEnvelopeMatchesStd(t, body)
	})
}

// checkEnvelopeMatchesStd fails if the single-pass decoder takes body but
// fills the envelope differently from json.Unmarshal, or takes a body
// json.Unmarshal refuses.
func checkEnvelopeMatchesStd(t *testing.T, body []byte) {
	t.Helper()
	var fastEnv, stdEnv envelope
	if !fastUnmarshal(body, envelopePlan, unsafe.Pointer(&fastEnv)) {
		return
	}
	if err := json.Unmarshal(body, &stdEnv); err != nil {
		t.Fatalf("single-pass decoder took a message encoding/json refuses: %v", err)
	}
	if !reflect.DeepEqual(fastEnv, stdEnv) {
		t.Fatalf("single-pass decoder filled\n%+v\nencoding/json filled\n%+v", fastEnv, stdEnv)
	}
}

func addSeeds(f *testing.F) {
	for _, sub := range []string{"chef", "salt"} {
		paths, err := filepath.Glob(filepath.Join(fixtures.Dir(f, sub), "*.json"))
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(seedSized(f, b))
		}
	}
	for _, s := range []string{
		"", "{}", "null", "[]", `"x"`, "{", handlerOK, convergeOK, saltOK,
		`{"message_type":"run_start","node_name":"a"}`,
		`{"message_type":"run_converge","node_name":"a","status":"success","end_time":"2024-05-01T10:00:00Z","resources":[{"type":"t","name":["a",1],"status":"updated"}]}`,
		`{"jid":"1","id":"m","fun":"state.apply","_stamp":"2024-05-01T10:00:00","retcode":"2","return":{"a_|-b_|-c_|-d":{"result":false,"comment":["x","y"],"duration":"1e3"}}}`,
		`{"tag":"salt/job/1/ret/m","data":{"fun":"state.sls","return":["err"],"fun_args":[{"saltenv":"dev","__kwarg__":true}],"_stamp":"2024-05-01 10:00:00 UTC"}}`,
		`{"node_name":"a","status":"failure","run_end_time":"2018-09-14 19:37:42 +0000","run_elapsed_time":"1e300","error":"X: y"}`,
		"{\"node_name\":\"\\u0000\",\"status\":\"success\",\"run_end_time\":\"2024-05-01T10:00:00Z\"}",
	} {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		// Shapes where JSON decoders are known to differ.
		"{\"node_name\":\"a\xff\",\"status\":\"success\",\"run_end_time\":\"2024-05-01T10:00:00Z\"}",
		`{"node_name":"a","status":"success","run_end_time":"2024-05-01T10:00:00Z"} trailing`,
		`{"node_name":"a","NODE_NAME":"b","status":"success","run_end_time":"2024-05-01T10:00:00Z"}`,
		`{"node_name":"a","node_name":"b","status":"success","run_end_time":"2024-05-01T10:00:00Z"}`,
		`{"node_name":"a","status":"success","run_end_time":"2024-05-01T10:00:00Z","updated_resources_count":1e400}`,
		`{"node_name":"a","status":"success","run_end_time":"2024-05-01T10:00:00Z","x":[[[[[[[[[[]]]]]]]]]]}`,
	} {
		f.Add([]byte(s))
	}
}

// seedMaxBytes bounds a fuzz seed. The fuzzer minimizes each new
// interesting input for up to a minute, and while it minimizes one made
// from a 300 KB fixture it fuzzes nothing at all.
const seedMaxBytes = 16 << 10

// seedSized returns a fixture small enough to seed the fuzzers: a large data
// collector message keeps its shape, with its Ohai attributes cut to the ones
// runlens reads, its first resources and the head of its error's backtrace.
// TestFixturesFastMatchesStd holds both decoders to the whole fixtures.
func seedSized(f *testing.F, b []byte) []byte {
	if len(b) <= seedMaxBytes {
		return b
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return b[:seedMaxBytes] // a malformed fixture stays malformed
	}
	if rs, ok := m["resources"].([]any); ok && len(rs) > 8 {
		m["resources"] = rs[:8]
	}
	if ds, ok := m["deprecations"].([]any); ok && len(ds) > 2 {
		m["deprecations"] = ds[:2]
	}
	if e, ok := m["error"].(map[string]any); ok {
		if bt, ok := e["backtrace"].([]any); ok && len(bt) > 5 {
			e["backtrace"] = bt[:5]
		}
	}
	if node, ok := m["node"].(map[string]any); ok {
		if auto, ok := node["automatic"].(map[string]any); ok {
			kept := map[string]any{}
			for _, k := range []string{"fqdn", "ipaddress", "roles", "platform", "platform_version", "chef_packages"} {
				if v, ok := auto[k]; ok {
					kept[k] = v
				}
			}
			node["automatic"] = kept
		}
		for _, level := range []string{"default", "normal", "override"} {
			if _, ok := node[level].(map[string]any); ok {
				node[level] = map[string]any{"runlens": map[string]any{"depends_on": []string{"db"}}}
			}
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	if len(out) > seedMaxBytes {
		f.Fatalf("fixture still %d bytes after cutting: cut more", len(out))
	}
	return out
}
