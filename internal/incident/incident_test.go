package incident

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/runlens/runlens/pkg/report"
)

var end = time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)

// TestDecodedIsWhatTheDecoderMakes holds Decoded equal to report.Decode of
// Report, so tests feeding decoded runs see what the plugin would.
func TestDecodedIsWhatTheDecoderMakes(t *testing.T) {
	inc := New(Config{Seed: 7, End: end})
	reports, decoded := inc.Reports(), inc.DecodedRuns()
	failed, updated := 0, 0
	for i, b := range reports {
		got, err := report.Decode(b)
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, b)
		}
		if !reflect.DeepEqual(got, decoded[i]) {
			t.Fatalf("run %d:\ndecoded %+v\nwant    %+v", i, got, decoded[i])
		}
		if got.Status == report.StatusFailure {
			failed++
		}
		if got.UpdatedCount > 0 {
			updated++
		}
	}
	if failed == 0 || updated == 0 {
		t.Errorf("%d failed, %d updated runs: want both", failed, updated)
	}
}

func TestIncidentShape(t *testing.T) {
	inc := New(Config{Seed: 7, End: end})
	c := inc.Culprit
	if c.Role == "" || len(c.Nodes) == 0 || !c.Start.Before(c.End) || c.Start.Before(inc.Start) || !c.End.Before(inc.End) {
		t.Errorf("culprit %+v", c)
	}
	for i := 1; i < len(inc.Runs); i++ {
		if inc.Runs[i].End.Before(inc.Runs[i-1].End) {
			t.Fatalf("runs not sorted by end at %d", i)
		}
	}
	if last := inc.Runs[len(inc.Runs)-1]; last.End.After(inc.End) {
		t.Errorf("a run ends after the incident: %+v", last)
	}
	if n := len(inc.Runs); n < 500 || inc.Changes() < 50 || inc.Changes() > n/2 {
		t.Errorf("%d runs, %d changes", n, inc.Changes())
	}
	// Reproducible.
	if again := New(Config{Seed: 7, End: end}); !reflect.DeepEqual(again.Runs, inc.Runs) || !reflect.DeepEqual(again.Story, inc.Story) {
		t.Error("the same seed designed another incident")
	}
	var om bytes.Buffer
	if err := WriteOpenMetrics(&om, inc); err != nil {
		t.Fatal(err)
	}
	text := om.String()
	if !strings.HasPrefix(text, "# HELP http_requests ") || !strings.HasSuffix(text, "# EOF\n") ||
		!strings.Contains(text, `http_requests_total{service="`+c.Role+`",environment="`+inc.Environment+`",code="500"} `) {
		t.Errorf("OpenMetrics: %.300s … %s", text, text[len(text)-50:])
	}
}
