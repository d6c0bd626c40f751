package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/runlens/runlens/internal/rabbittest"
)

// countSeries counts the scraped series whose key contains every one of subs.
func countSeries(m map[string]float64, subs ...string) int {
	n := 0
next:
	for k := range m {
		for _, s := range subs {
			if !strings.Contains(k, s) {
				continue next
			}
		}
		n++
	}
	return n
}

// 500 reports with an environment each: every environment-labelled series,
// the aggregates (histograms, resource counters) as well as the per-node
// ones, goes when the environment's last node expires (issue 13: the
// aggregates used to stay for ever).
func TestExporterForgetsEnvironmentsOfExpiredNodes(t *testing.T) {
	const envs = 500
	// The TTL must outlast publishing and counting the 500 reports, which
	// took over 3 s under -race on a loaded machine (nodes expired before
	// the first scrape); the expiry is then waited for, however long.
	h := newHarness(t, "--node.ttl=20s", "--history.replay=0", "--metrics.max-environments=1000")
	h.startBinary()
	var bodies [][]byte
	for i := range envs {
		bodies = append(bodies, handlerReport(fmt.Sprintf("n-%03d", i), fmt.Sprintf("env-%03d", i), fmt.Sprint("r", i),
			time.Now(), "success", "file[/a]", "package[b]"))
	}
	h.publish(bodies...)
	h.waitFor("every report", func() bool { return h.reports("chef_handler", "processed") == envs })
	m := h.scrape()
	if n := countSeries(m, "runlens_run_duration_seconds_count{", `environment="env-`); n != envs {
		t.Fatalf("%d run-duration histograms, want %d (one per environment)", n, envs)
	}
	if n := countSeries(m, "runlens_resource_updates_total{", `environment="env-`); n != 2*envs {
		t.Fatalf("%d resource-update series, want %d", n, 2*envs)
	}
	rabbittest.WaitFor(t, 2*time.Minute, "the environments' series to go with their nodes", func() bool {
		return countSeries(h.scrape(), `environment="`) == 0
	})
}

// stalledScrape opens a connection with a small receive buffer, sends GET
// /metrics without Accept-Encoding (the whole text) and never reads.
func stalledScrape(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.1\r\nHost: runlens\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return conn
}

// unread returns how many bytes wait in c's receive buffer (SIOCINQ).
func unread(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil || ierr != nil {
		t.Fatalf("SIOCINQ: %v %v", err, ierr)
	}
	return n
}

// Six clients that ask for /metrics and never read hold the four scrape
// slots for at most --web.write-timeout: a real scrape sent after them is
// queued, served in full, and every stalled one is cut off and counted
// (issue 13: they used to hold the slots for as long as they stayed, and
// every other scrape got 503).
func TestExporterStalledScrapersDoNotLockOutScrapes(t *testing.T) {
	const nodes = 15000
	h := newHarness(t, "--history.replay=0", "--web.write-timeout=5s")
	h.startBinary()
	bodies := make([][]byte, nodes)
	for i := range bodies {
		bodies[i] = handlerReport(fmt.Sprintf("stall-node-%05d", i), "prod", fmt.Sprint("r", i), time.Now(), "success")
	}
	h.publish(bodies...)
	h.waitFor("every report", func() bool { return h.reports("chef_handler", "processed") == nodes })
	full := len(fetchMetrics(t, h.addr))
	// The answer must be far larger than what the kernel buffers for a
	// client that does not read, or the stalled scrapes would not stall.
	if full < 8<<20 {
		t.Fatalf("/metrics is %d bytes; the test needs more than 8 MiB", full)
	}

	stalled := make([]net.Conn, 6)
	for i := range stalled {
		stalled[i] = stalledScrape(t, h.addr)
	}
	// Four of them are being answered (bytes wait unread in their receive
	// buffers): the four slots are taken before the real scrape is sent.
	h.waitFor("four stalled scrapes answered", func() bool {
		answered := 0
		for _, c := range stalled {
			if unread(t, c) > 0 {
				answered++
			}
		}
		return answered >= 4
	})
	body := fetchMetrics(t, h.addr)
	m := parseScrape(t, body)
	if got := m["runlens_nodes{}"]; got != nodes {
		t.Errorf("the scrape behind the stalled ones: runlens_nodes = %v, want %d", got, nodes)
	}
	h.waitFor("the six stalled scrapes cut off and counted", func() bool {
		return h.scrape()["runlens_scrapes_timed_out_total{}"] == 6
	})
	if got := h.scrape()["runlens_scrapes_refused_total{}"]; got != 0 {
		t.Errorf("scrapes refused = %v, want 0 (six stalled: four at work, two waiting)", got)
	}
	// The stalled connections got a cut-off answer and were closed.
	for i, c := range stalled {
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		n, err := io.Copy(io.Discard, c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("stalled scrape %d: the server kept the connection open", i)
		}
		if n >= int64(full) {
			t.Errorf("stalled scrape %d got %d bytes, the whole answer (%d)", i, n, full)
		}
	}
}

// A chunked POST to the data collector endpoint that stops mid-body is cut
// off by --web.read-timeout: answered and closed, instead of holding its
// connection and the body read so far for as long as the client likes.
func TestExporterReadTimeoutCutsStalledPost(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("chef-token-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, "--history.replay=0", "--ingest.token-file="+tokenFile, "--ingest.spool.dir="+filepath.Join(t.TempDir(), "spool"), "--web.read-timeout=2s")
	h.startBinary()
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	chunk := `{"message_type":"run_converge",`
	req := "POST /data-collector/v0/ HTTP/1.1\r\nHost: runlens\r\nContent-Type: application/json\r\n" +
		"x-data-collector-token: chef-token-123\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n", len(chunk), chunk)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	// Never send the rest. The server must answer and close by itself.
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	answer, err := io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the stalled POST's connection was still open after 60 s (read %q)", answer)
	}
	if !strings.HasPrefix(string(answer), "HTTP/1.1 4") {
		t.Errorf("answer to the stalled POST: %q, want a 4xx", answer)
	}
	h.waitFor("the cut-off POST counted", func() bool {
		return h.scrape()[`runlens_ingest_requests_total{code="400"}`] == 1
	})
}

// A garbage flood fills the dead-letter queue to --amqp.dead-letter-max-length
// and no further: the rest is dropped and counted, the queue keeps flowing.
func TestExporterDeadLetterQueueStopsAtItsLimit(t *testing.T) {
	const limit = 20
	h := newHarness(t, "--history.replay=0", fmt.Sprintf("--amqp.dead-letter-max-length=%d", limit))
	h.startBinary()
	garbage := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = []byte(fmt.Sprintf("garbage %d", i))
		}
		return out
	}
	rejected := func() float64 { return h.reports("unknown", "rejected") }
	h.publish(garbage(3 * limit)...)
	h.waitFor("the flood rejected", func() bool { return rejected() == 3*limit })
	held := rabbittest.MessageCount(t, h.dlq)
	// A quorum queue may overshoot by the publishes in flight when it fills
	// (RabbitMQ 3.10 site/quorum-queues.md, "Queue Length Limit"); the
	// consumer has one in flight.
	if held < limit || held > limit+1 {
		t.Errorf("dead-letter queue holds %d, want %d (+1)", held, limit)
	}
	h.waitFor("the drops counted", func() bool {
		return h.scrape()["runlens_dead_letters_dropped_total{}"] == float64(3*limit-held)
	})
	h.publish(garbage(2 * limit)...)
	h.waitFor("the second flood rejected", func() bool { return rejected() == 5*limit })
	if again := rabbittest.MessageCount(t, h.dlq); again != held {
		t.Errorf("dead-letter queue grew from %d to %d past its limit", held, again)
	}
	h.waitFor("every drop counted", func() bool {
		return h.scrape()["runlens_dead_letters_dropped_total{}"] == float64(5*limit-held)
	})
}

// --node.max-nodes refuses the reports of nodes past it (dead-lettered with
// the reason, counted); --node.max-roles and --node.max-role-bytes keep
// runlens_node_info's roles short, counted.
func TestExporterNodeAndRoleBounds(t *testing.T) {
	h := newHarness(t, "--history.replay=0", "--node.max-nodes=3", "--node.max-roles=1", "--node.max-role-bytes=4")
	h.startBinary()
	var bodies [][]byte
	for i := range 5 {
		b := handlerReport(fmt.Sprintf("cap-%d", i), "prod", fmt.Sprint("c", i), time.Now(), "success")
		bodies = append(bodies, bytes.Replace(b, []byte(`"roles":["web","base"]`), []byte(`"roles":["web","base","toolong"]`), 1))
	}
	h.publish(bodies...)
	h.waitFor("every report", func() bool {
		return h.reports("chef_handler", "processed") == 3 && h.reports("chef_handler", "rejected") == 2
	})
	m := h.scrape()
	for k, want := range map[string]float64{
		"runlens_nodes{}":                              3,
		"runlens_nodes_refused_total{}":                2,
		`runlens_roles_dropped_total{reason="length"}`: 3, // toolong, once per applied report
		`runlens_roles_dropped_total{reason="count"}`:  3, // web (base is kept, first in sorted order)
		nodeKey("runlens_runs_total", "cap-0", "prod"): 1,
		`runlens_node_info{environment="prod",fqdn="cap-0.example.com",ip_address="10.0.0.1",node="cap-0",roles="base",source="chef"}`: 1,
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	dead := rabbittest.Get(t, h.dlq, 10)
	if len(dead) != 2 {
		t.Fatalf("dead-letter queue holds %d, want the 2 refused reports", len(dead))
	}
	for _, d := range dead {
		if r, _ := d.Headers["x-runlens-reason"].(string); !strings.Contains(r, "node limit") {
			t.Errorf("refused report's reason %q", r)
		}
	}
}

// Environments past --metrics.max-environments are counted as "other" in the
// aggregates, and the folds counted.
func TestExporterFoldsEnvironmentsPastTheBound(t *testing.T) {
	h := newHarness(t, "--history.replay=0", "--metrics.max-environments=2")
	h.startBinary()
	var bodies [][]byte
	for i := range 5 {
		bodies = append(bodies, handlerReport(fmt.Sprintf("f-%d", i), fmt.Sprintf("env-%d", i), fmt.Sprint("f", i), time.Now(), "success", "file[/a]"))
	}
	h.publish(bodies...)
	h.waitFor("every report", func() bool { return h.reports("chef_handler", "processed") == 5 })
	m := h.scrape()
	if n := countSeries(m, "runlens_run_duration_seconds_count{"); n != 3 {
		t.Errorf("%d run-duration histograms, want 3 (two environments and other)", n)
	}
	for k, want := range map[string]float64{
		`runlens_run_duration_seconds_count{environment="other"}`:                  3,
		`runlens_resource_updates_total{environment="other",resource_type="file"}`: 3,
		`runlens_series_folded_total{bound="environment"}`:                         3,
		`runlens_series_folded_total{bound="resource_type"}`:                       0,
		// Per-node series keep the node's own environment: they are bounded
		// by the node count, not by this bound.
		nodeKey("runlens_runs_total", "f-4", "env-4"): 1,
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
}

func TestBoundFlagErrors(t *testing.T) {
	for _, arg := range []string{
		"--metrics.max-environments=0", "--node.max-nodes=0", "--node.max-roles=0", "--node.max-role-bytes=0",
		"--web.max-requests=0", "--amqp.dead-letter-max-length=-1", "--amqp.dead-letter-max-bytes=-1",
		"--web.read-timeout=0s", "--web.write-timeout=0s", "--web.idle-timeout=0s",
	} {
		var out bytes.Buffer
		if code := run(t.Context(), []string{arg}, &out, &out); code != 2 {
			t.Errorf("%s exited %d, want 2", arg, code)
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		if !strings.Contains(out.String(), name) {
			t.Errorf("%s: the error does not name the flag: %s", arg, out.String())
		}
	}
}
