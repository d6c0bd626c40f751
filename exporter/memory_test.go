package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/pkg/report"
)

// maxSizeReport is a data collector run_converge of exactly size bytes whose
// resource list fills it with entries as small as JSON allows (the shape the
// security review measured: a million resources in 7 MB). It is the costliest
// report to decode per byte: every entry is a resource to count.
func maxSizeReport(size, i int) []byte {
	head := fmt.Sprintf(`{"message_type":"run_converge","node_name":"big-%02d","run_id":"00000000-0000-4000-8000-%012d","status":"success",`+
		`"start_time":"2024-05-01T10:00:00Z","end_time":"2024-05-01T10:01:00Z","node":{"automatic":{"fqdn":"big.example"}},"resources":[`, i, i)
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString(head)
	const entry = `{}`
	for b.Len()+len(entry)+1+len(`]}`) <= size {
		if b.Bytes()[b.Len()-1] != '[' {
			b.WriteByte(',')
		}
		b.WriteString(entry)
	}
	b.WriteString(`]`)
	for b.Len() < size-1 {
		b.WriteByte(' ')
	}
	b.WriteString(`}`)
	return b.Bytes()
}

// TestExporterMemoryCeiling is the memory budget's check, against the real
// broker with the built binary: 20 reports of --report.max-bytes arrive at
// once, and the exporter's peak RSS (VmHWM) stays under the ceiling that
// follows from its flags (memoryCeiling, the README's formula).
func TestExporterMemoryCeiling(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the exporter and needs RabbitMQ")
	}
	h := newHarness(t, "--history.replay=0")
	p := h.startBinary()
	const maxBytes = report.DefaultMaxBytes
	c, err := parseFlags(h.extra, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.maxBytes != maxBytes {
		t.Fatalf("--report.max-bytes defaults to %d, want %d", c.maxBytes, maxBytes)
	}
	const n = 20
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = maxSizeReport(maxBytes, i)
		if len(bodies[i]) != maxBytes {
			t.Fatalf("report is %d bytes, want %d", len(bodies[i]), maxBytes)
		}
	}
	idle := procStatus(t, p.Cmd.Process.Pid, "VmHWM")
	rabbittest.Publish(t, h.exchange, bodies...)
	rabbittest.WaitFor(t, 3*time.Minute, "every report processed", func() bool {
		return h.reports("chef_data_collector", "processed") == n
	})
	peak := procStatus(t, p.Cmd.Process.Pid, "VmHWM")
	ceiling := memoryCeiling(c, 0)
	t.Logf("peak RSS %d MiB (idle %d MiB) for %d reports of %d bytes; ceiling %d MiB", peak>>20, idle>>20, n, maxBytes, ceiling>>20)
	if peak >= ceiling {
		t.Errorf("peak RSS %d MiB is over the documented ceiling of %d MiB", peak>>20, ceiling>>20)
	}
}

// procStatus reads a kB field of /proc/<pid>/status, in bytes.
func procStatus(t *testing.T, pid int, field string) uint64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
