package datacollector

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/runlens/runlens/internal/fixtures"
	"github.com/runlens/runlens/pkg/report"
)

// TestScrubVectors: the cases every producer's scrubber is held to
// (producers/testdata/scrub-vectors.json; the Ruby and Python suites read
// the same file).
func TestScrubVectors(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "producers", "testdata", "scrub-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Vectors []struct{ In, Out string } }
	if err := json.Unmarshal(b, &f); err != nil || len(f.Vectors) < 5 {
		t.Fatalf("vectors: %v (%d)", err, len(f.Vectors))
	}
	for _, v := range f.Vectors {
		if got := Scrub(v.In); got != v.Out {
			t.Errorf("Scrub(%q)\n got %q\nwant %q", v.In, got, v.Out)
		}
	}
}

// view is what runlens reads from a message: stripping must not change it.
func view(t *testing.T, body []byte) report.Run {
	t.Helper()
	r, err := report.Decode(body)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	v := *r
	v.Error = nil // compared separately: the message is capped and scrubbed
	return v
}

// TestStripSavesBytes strips every real data collector message in the
// shared fixtures: what runlens decodes is unchanged, the message stays
// Chef's shape, and the bytes saved are logged (the figures in the README:
// go test -run TestStripSavesBytes -v ./exporter/datacollector/).
func TestStripSavesBytes(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join(fixtures.Dir(t, "chef"), "0*.json"))
	var before, after int
	for _, p := range paths {
		name := filepath.Base(p)
		body, _ := os.ReadFile(p)
		kind, reason := classify(body)
		if reason != "" {
			continue // the malformed fixture
		}
		stripped, err := Strip(body, kind.name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		again, err := Strip(stripped, kind.name)
		if err != nil || string(again) != string(stripped) {
			t.Errorf("%s: Strip is not idempotent", name)
		}
		if got, want := view(t, stripped), view(t, body); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: stripping changed what runlens reads:\n got %+v\nwant %+v", name, got, want)
		}
		orig, _ := report.Decode(body)
		if r, _ := report.Decode(stripped); (orig.Error == nil) != (r.Error == nil) ||
			orig.Error != nil && (r.Error.Class != orig.Error.Class || !strings.HasPrefix(orig.Error.Message, r.Error.Message[:min(len(r.Error.Message), 40)])) {
			t.Errorf("%s: error %+v became %+v", name, orig.Error, r.Error)
		}
		if kind.name == "run_converge" {
			var m struct {
				Node      map[string]json.RawMessage `json:"node"`
				Resources []map[string]json.RawMessage
			}
			if err := json.Unmarshal(stripped, &m); err != nil {
				t.Fatal(err)
			}
			for _, res := range m.Resources {
				if string(res["before"]) != "{}" || string(res["after"]) != "{}" || (res["delta"] != nil && string(res["delta"]) != `""`) {
					t.Errorf("%s: a resource kept its state: %s %s", name, res["before"], res["delta"])
					break
				}
				for _, k := range []string{"type", "name", "status", "ignore_failure"} {
					if _, ok := res[k]; !ok {
						t.Errorf("%s: a resource lost %s", name, k)
					}
				}
			}
		}
		t.Logf("%-60s %8d → %6d bytes (%.1f%% saved)", name, len(body), len(stripped), 100*(1-float64(len(stripped))/float64(len(body))))
		before += len(body)
		after += len(stripped)
	}
	if before == 0 || after >= before/4 {
		t.Fatalf("stripped %d bytes to %d: expected far less", before, after)
	}
	t.Logf("all fixtures: %d → %d bytes (%.1f%% saved)", before, after, 100*(1-float64(after)/float64(before)))
}

// TestStripScrubsErrors: error messages and backtraces, of the run and of
// each resource, are capped and scrubbed; runlens.depends_on survives; the
// other attributes do not.
func TestStripScrubsErrors(t *testing.T) {
	long := strings.Repeat("x", 5000)
	body := []byte(`{"message_type":"run_converge","node_name":"web-1","status":"failure","end_time":"2024-05-01T10:00:00Z",
		"node":{"name":"web-1","chef_environment":"prod","automatic":{"fqdn":"web-1.example.com","packages":{"bash":{}}},
			"normal":{"runlens":{"depends_on":["db"]},"mysql":{"root_password":"hunter2"}},"override":{"app":{"token":"t"}}},
		"resources":[{"type":"execute","name":"migrate","status":"failed","ignore_failure":false,"before":{"command":"x"},"after":{},
			"delta":"+password=abc","error_message":"mysql --password=hunter2 failed","error":{"class":"Mixlib::ShellOut::ShellCommandFailed",
			"message":"mysql --password=hunter2 failed ` + long + `","backtrace":["a","b","c","d","e","f","g","h","i","j","k","l"]}}],
		"error":{"class":"X","message":"GET https://u:pw@h/ failed","backtrace":["` + long + `"],"description":{"title":"Error executing action","sections":[{"x":"hunter2"}]}}}`)
	out, err := Strip(body, "run_converge")
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, secret := range []string{"hunter2", "pw@", "root_password", "packages", `"token"`, "sections", long[:maxErrorMessageBytes+1]} {
		if strings.Contains(s, secret) {
			t.Errorf("stripped body still holds %q:\n%.600s", secret, s)
		}
	}
	var m struct {
		Node struct {
			Normal map[string]any `json:"normal"`
		} `json:"node"`
		Resources []struct {
			Error struct {
				Message   string   `json:"message"`
				Backtrace []string `json:"backtrace"`
			} `json:"error"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.Node.Normal, map[string]any{"runlens": map[string]any{"depends_on": []any{"db"}}}) {
		t.Errorf("normal attributes: %v", m.Node.Normal)
	}
	e := m.Resources[0].Error
	if len(e.Message) > maxErrorMessageBytes || len(e.Backtrace) != maxBacktraceLines || !strings.HasPrefix(e.Message, "mysql --password=*** failed") {
		t.Errorf("resource error: %d bytes, %d lines: %.80s", len(e.Message), len(e.Backtrace), e.Message)
	}
	r, err := report.Decode(out)
	if err != nil || r.Node != "web-1" || r.Environment != "prod" || len(r.DependsOn) != 1 || r.FQDN != "web-1.example.com" {
		t.Errorf("decoded: %+v %v", r, err)
	}
	// The handler payload: only its error is touched.
	h := []byte(`{"node_name":"n","status":"failure","run_end_time":"2024-05-01T10:00:00Z","error":{"class":"E","message":"token=abc"}}`)
	out, err = Strip(h, "chef_handler")
	if err != nil || !strings.Contains(string(out), `"token=***"`) {
		t.Errorf("handler payload: %s %v", out, err)
	}
}

// TestHandlerStrips: with Config.Strip the published body is the stripped one.
func TestHandlerStrips(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Strip = true })
	body, _ := os.ReadFile(fixtures.Dir(t, "chef", "02-run_converge-resource-failure.json"))
	if rec := env.post(string(body)); rec.Code != 204 {
		t.Fatalf("%d", rec.Code)
	}
	got := env.pub.published()
	if len(got) != 1 || len(got[0].body) >= len(body)/2 {
		t.Fatalf("published %d bytes of %d", len(got[0].body), len(body))
	}
	if saved := counterValue(t, env.reg, "runlens_ingest_stripped_bytes_total", "", ""); saved != float64(len(body)-len(got[0].body)) {
		t.Errorf("runlens_ingest_stripped_bytes_total = %v", saved)
	}
}
