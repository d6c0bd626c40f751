package report

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/runlens/runlens/internal/fixtures"
)

// FuzzDecode checks the decoder's promise for any input: no panic, and
// either a Run that satisfies every invariant or a *Rejected with a reason.
// The seeds are every shared fixture plus small edge cases, so the fuzzer
// starts from each format's real shape.
func FuzzDecode(f *testing.F) {
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
			f.Add(b)
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
