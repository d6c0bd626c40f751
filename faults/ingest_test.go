//go:build faults

package faults

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runlens/runlens/internal/proctest"
	"github.com/runlens/runlens/internal/rabbittest"
)

// TestIngestSpoolSurvivesKill9 runs the exporter binary with the Chef data
// collector endpoint on its own listener and an ingest spool, its broker
// connections through an internal/rabbittest.Proxy (the main broker is never
// stopped):
//
//   - while the broker is reachable, posted reports are confirmed (204);
//   - the "broker goes down" (the proxy refuses and cuts every connection):
//     every report posted is still answered 2xx (202: fsynced in the spool);
//   - the exporter is killed with SIGKILL while they wait;
//   - a new exporter on the same spool directory, with the broker back,
//     publishes every spooled report with confirms: each one is counted
//     exactly once, and the spool ends empty.
func TestIngestSpoolSurvivesKill9(t *testing.T) {
	const before, during = 20, 300
	n := newNames(t)
	proxy := rabbittest.NewProxy(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("kill9-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, "spool")
	args := func(ingestAddr string) []string {
		return n.args(proxy.URL(), "--history.replay=0", "--ingest.token-file="+token,
			"--ingest.spool.dir="+spool, "--ingest.listen-address="+ingestAddr, "--ingest.publish-timeout=2s")
	}
	addr1 := proctest.FreeAddr(t)
	e1 := startExporter(t, "ingest-1", args(addr1)...)

	post := func(addr string, body []byte) (int, error) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/data-collector/v0/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-data-collector-token", "kill9-token")
		req.Header.Set("x-data-collector-auth", "version=1.0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	report := func(i int) []byte {
		return handlerReport(fmt.Sprintf("spool-%04d", i), "prod", fmt.Sprintf("spool-run-%04d", i), end)
	}
	for i := range before {
		if code, err := post(addr1, report(i)); err != nil || code != http.StatusNoContent {
			t.Fatalf("broker up, report %d: %d %v, want 204", i, code, err)
		}
	}
	waitFor(t, 30*time.Second, 100*time.Millisecond, "the first reports counted", func() (bool, string) {
		s, err := e1.scrape("runlens_runs_total")
		if err != nil {
			return false, err.Error()
		}
		got := s.sum("runlens_runs_total")
		return got == before, fmt.Sprintf("%v of %d", got, before)
	})

	proxy.Pause()
	proxy.CutAll()
	start := time.Now()
	for i := before; i < before+during; i++ {
		code, err := post(addr1, report(i))
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("broker down, report %d: %d %v, want 202 (spooled)", i, code, err)
		}
	}
	t.Logf("broker down: %d reports answered 202 in %s", during, time.Since(start).Round(time.Millisecond))
	if s := e1.mustScrape("runlens_ingest_spool_messages"); s.sum("runlens_ingest_spool_messages") != during {
		t.Errorf("runlens_ingest_spool_messages = %v, want %d", s.sum("runlens_ingest_spool_messages"), during)
	}
	e1.kill9()
	files, _ := filepath.Glob(filepath.Join(spool, "*.msg"))
	if len(files) != during {
		t.Fatalf("after kill -9 the spool holds %d files, want %d", len(files), during)
	}

	proxy.Resume()
	addr2 := proctest.FreeAddr(t)
	e2 := startExporter(t, "ingest-2", args(addr2)...)
	waitFor(t, time.Minute, 100*time.Millisecond, "every spooled report counted by the new exporter", func() (bool, string) {
		s, err := e2.scrape("runlens_runs_total", "runlens_ingest_spool_messages")
		if err != nil {
			return false, err.Error()
		}
		runs := s.byNode("runlens_runs_total")
		once, other := 0, 0
		for node, v := range runs {
			if v == 1 && strings.HasPrefix(node, "spool-") {
				once++
			} else {
				other++
			}
		}
		return once == during && other == 0 && s.sum("runlens_ingest_spool_messages") == 0,
			fmt.Sprintf("%d of %d counted once, %d other series, %v still spooled", once, during, other, s.sum("runlens_ingest_spool_messages"))
	})
	s := e2.mustScrape("runlens_ingest_spool_publishes_total", "runlens_reports_total")
	if got := s.sum("runlens_ingest_spool_publishes_total"); got != during {
		t.Errorf("runlens_ingest_spool_publishes_total = %v, want %d", got, during)
	}
	if got := s.reports("duplicate") + s.reports("rejected"); got != 0 {
		t.Errorf("%v duplicates or rejections", got)
	}
	if left, _ := filepath.Glob(filepath.Join(spool, "*")); len(left) != 0 {
		t.Errorf("the spool still holds %d files", len(left))
	}
	if !strings.Contains(e2.logs(), "previous run left in the spool") {
		t.Errorf("the new exporter did not say it found the spool")
	}
}
