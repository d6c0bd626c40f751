package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
)

// The README is the exporter's manual: these tests hold its Flags and
// Metrics tables to what the program parses and serves, so that a flag or a
// metric added, renamed or given another default cannot leave it behind.

// readmeSection returns the lines of README.md under heading, up to the
// next heading of any level.
func readmeSection(t *testing.T, heading string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	start := slices.Index(lines, heading)
	if start < 0 {
		t.Fatalf("README.md has no %q heading", heading)
	}
	out := lines[start+1:]
	for i, line := range out {
		if strings.HasPrefix(line, "#") {
			return out[:i]
		}
	}
	return out
}

// tableRows returns the cells of the table rows among lines (header and
// separator rows left out), each cell trimmed.
func tableRows(lines []string) [][]string {
	var rows [][]string
	for _, line := range lines {
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if cells[0] == "flag" || cells[0] == "metric" {
			continue // a header
		}
		rows = append(rows, cells)
	}
	return rows
}

var codeSpan = regexp.MustCompile("`([^`]*)`")

// codeSpans returns the `…` spans of a table cell.
func codeSpans(cell string) []string {
	var out []string
	for _, m := range codeSpan.FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

// readmeFlag is one flag as the README's Flags table gives it.
type readmeFlag struct {
	def, meaning string
}

// readmeFlags reads the Flags table: flag name (without dashes) → its row.
// A row may name several flags (`--log.level`, `--log.format`) with their
// defaults in the same order, and a short form (`-h`, `--help`).
func readmeFlags(t *testing.T) (flags map[string]readmeFlag, shorts map[string]string) {
	t.Helper()
	flags, shorts = map[string]readmeFlag{}, map[string]string{}
	for _, row := range tableRows(readmeSection(t, "## Flags")) {
		if len(row) != 3 {
			t.Errorf("Flags table row %q has %d cells, want 3", row, len(row))
			continue
		}
		var long []string
		short := ""
		for _, f := range codeSpans(row[0]) {
			switch {
			case strings.HasPrefix(f, "--"):
				long = append(long, strings.TrimPrefix(f, "--"))
			case strings.HasPrefix(f, "-"):
				short = strings.TrimPrefix(f, "-")
			default:
				t.Errorf("Flags table: %q is not a flag", f)
			}
		}
		defs := codeSpans(row[1])
		if len(defs) == 0 {
			defs = []string{strings.TrimSpace(row[1])} // "" or off
		}
		if len(defs) != len(long) {
			defs = slices.Repeat([]string{row[1]}, len(long))
			if len(long) > 1 {
				t.Errorf("Flags table row %v: %d defaults for %d flags", long, len(codeSpans(row[1])), len(long))
			}
		}
		for i, name := range long {
			if _, dup := flags[name]; dup {
				t.Errorf("Flags table lists --%s twice", name)
			}
			flags[name] = readmeFlag{def: defs[i], meaning: row[2]}
			if short != "" {
				shorts[name] = short
			}
		}
	}
	return flags, shorts
}

// helpFlags are the flags --help prints, without dashes, and the short
// forms it gives them.
func helpFlags(t *testing.T) (names []string, shorts map[string]string) {
	t.Helper()
	var help bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &help, &help); code != 0 {
		t.Fatalf("--help exited %d:\n%s", code, help.String())
	}
	// kingpin's flag lines: "  -h, --[no-]help", "      --amqp.url=…";
	// wrapped help text is indented further.
	line := regexp.MustCompile(`(?m)^ {2,6}(?:-(\w), )?--(?:\[no-\])?([a-z][a-z0-9.-]*)`)
	shorts = map[string]string{}
	for _, m := range line.FindAllStringSubmatch(help.String(), -1) {
		names = append(names, m[2])
		if m[1] != "" {
			shorts[m[2]] = m[1]
		}
	}
	if len(names) < 40 {
		t.Fatalf("found %d flags in --help, expected every flag; the output:\n%s", len(names), help.String())
	}
	return names, shorts
}

// TestREADMEFlagsTable: the README's Flags table lists exactly the flags
// --help prints, each with the default kingpin gives it (a flag without one
// either says nothing or names the default its help text spells out, such
// as <queue>.dlx; a boolean says off) and, where the flag is also read from
// an environment variable, that variable.
func TestREADMEFlagsTable(t *testing.T) {
	documented, docShorts := readmeFlags(t)
	printed, shorts := helpFlags(t)

	for _, name := range printed {
		if _, ok := documented[name]; !ok {
			t.Errorf("--%s is in --help but not in README.md's Flags table", name)
		}
	}
	for name := range documented {
		if !slices.Contains(printed, name) {
			t.Errorf("README.md's Flags table lists --%s, which --help does not print", name)
		}
	}
	for name, s := range shorts {
		if docShorts[name] != s {
			t.Errorf("--%s has the short form -%s; the Flags table gives %q", name, s, docShorts[name])
		}
	}

	model := newApp(&config{log: &promslog.Config{}}).Model()
	for _, f := range model.Flags {
		doc, ok := documented[f.Name]
		if f.Hidden || !ok {
			continue // hidden (--help-long, ...) or reported above
		}
		def := strings.Join(f.Default, ",")
		switch {
		case def != "":
			if doc.def != def {
				t.Errorf("--%s defaults to %q; the Flags table says %q", f.Name, def, doc.def)
			}
		case f.IsBoolFlag() && f.Name != "help" && f.Name != "version":
			if doc.def != "off" {
				t.Errorf("--%s is off by default; the Flags table says %q", f.Name, doc.def)
			}
		case doc.def != "" && !strings.Contains(f.Help, "(default: "+doc.def+")"):
			t.Errorf("--%s has no default; the Flags table says %q, which its help does not give as its default", f.Name, doc.def)
		}
		if f.Envar != "" && !strings.Contains(doc.meaning, "`"+f.Envar+"`") {
			t.Errorf("--%s is also read from %s; the Flags table does not say so", f.Name, f.Envar)
		}
	}
}

// readmeMetric is one metric as the README's Metrics tables give it.
type readmeMetric struct {
	typ    string
	labels []string // sorted
}

func readmeMetrics(t *testing.T) map[string]readmeMetric {
	t.Helper()
	out := map[string]readmeMetric{}
	for _, row := range tableRows(readmeSection(t, "## Metrics")) {
		names := codeSpans(row[0])
		if len(names) != 1 || !strings.HasPrefix(names[0], "runlens_") {
			continue // not a metrics table (Example PromQL has none)
		}
		if len(row) != 4 {
			t.Errorf("Metrics table row %s has %d cells, want 4 (metric, type, labels, meaning)", names[0], len(row))
			continue
		}
		var labels []string
		for _, span := range codeSpans(row[2]) {
			for l := range strings.SplitSeq(span, ",") {
				labels = append(labels, strings.TrimSpace(l))
			}
		}
		sort.Strings(labels)
		if _, dup := out[names[0]]; dup {
			t.Errorf("Metrics tables list %s twice", names[0])
		}
		out[names[0]] = readmeMetric{typ: row[1], labels: labels}
	}
	return out
}

// TestREADMEMetricsTables: the README's Metrics tables list exactly the
// runlens_* families a real scrape serves, with their types and label
// names, the data collector's included: the exporter runs with every part
// on (ingest with its spool, the history off so nothing is held back) and
// one report with a changed resource has gone through, so that every
// family has a series.
func TestREADMEMetricsTables(t *testing.T) {
	h := newHarness(t, "--history.replay=0", "--ingest.token-file="+tokenFile(t),
		"--ingest.spool.dir="+filepath.Join(t.TempDir(), "spool"))
	h.start()
	h.publish(handlerReport("readme-1", "prod", "readme-run-1", time.Now(), "success", "file[/etc/motd]"))
	h.waitFor("the report", func() bool { return h.reports("chef_handler", "processed") == 1 })

	resp, err := http.Get("http://" + h.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	documented := readmeMetrics(t)
	for name, mf := range families {
		if !strings.HasPrefix(name, "runlens_") {
			continue
		}
		doc, ok := documented[name]
		if !ok {
			t.Errorf("/metrics serves %s, which README.md's Metrics tables do not list", name)
			continue
		}
		if typ := strings.ToLower(mf.GetType().String()); typ != doc.typ {
			t.Errorf("%s is a %s; the Metrics table says %q", name, typ, doc.typ)
		}
		labels := map[string]bool{}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				labels[l.GetName()] = true
			}
		}
		var got []string
		for l := range labels {
			got = append(got, l)
		}
		sort.Strings(got)
		if !slices.Equal(got, doc.labels) {
			t.Errorf("%s has labels %v; the Metrics table says %v", name, got, doc.labels)
		}
	}
	for name := range documented {
		if _, ok := families[name]; !ok {
			t.Errorf("README.md's Metrics tables list %s, which /metrics does not serve", name)
		}
	}
}
