package report

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/runlens/runlens/internal/fixtures"
)

// BenchmarkDecode measures one message of each kind. The data collector
// case is dominated by scanning past the ~250 KB Ohai `node` object, which
// should cost time but no allocations.
func BenchmarkDecode(b *testing.B) {
	for _, c := range []struct{ name, dir, file string }{
		{"chef_data_collector_261KB", "chef", "01-run_converge-ubuntu-success-92res.json"},
		{"chef_data_collector_308KB", "chef", "03-run_converge-two-roles-success-129res.json"},
		{"chef_handler", "chef", "07-handler-payload-success-RECONSTRUCTED.json"},
		{"chef_handler_1.4KB", "chef", "08-handler-payload-failure-RECONSTRUCTED.json"},
		{"salt", "salt", "02-ret-state.apply-failure-one-state-false.json"},
	} {
		body, err := os.ReadFile(fixtures.Dir(b, c.dir, c.file))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDataCollectorNodeSkipIsFree guards the property the benchmark is
// about: the Ohai attributes runlens does not read cost no allocations of
// ours. Replacing the 218 KB node with just the attributes runlens reads
// may only save encoding/json's own parser-stack growth.
func TestDataCollectorNodeSkipIsFree(t *testing.T) {
	body, err := os.ReadFile(fixtures.Dir(t, "chef", "01-run_converge-ubuntu-success-92res.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	m["node"] = json.RawMessage(`{"chef_environment":"manhattan","automatic":{"fqdn":"f","ipaddress":"i",
		"roles":[],"platform":"ubuntu","platform_version":"16.04","chef_packages":{"chef":{"version":"12.21.3"}}}}`)
	small, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	full := testing.AllocsPerRun(20, func() { _, _ = Decode(body) })
	stripped := testing.AllocsPerRun(20, func() { _, _ = Decode(small) })
	if full-stripped > 16 {
		t.Errorf("skipping the node costs %.0f allocations (full %.0f, stripped %.0f)", full-stripped, full, stripped)
	}
}
