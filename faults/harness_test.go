//go:build faults

package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/internal/proctest"
	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/snapshot"
)

// exporterBin is the exporter built once by TestMain.
var exporterBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "runlens-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(2)
	}
	if exporterBin, err = proctest.BuildExporter(dir); err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// names are one test's broker entities, deleted when the test ends.
type names struct {
	exchange, queue, dlq, stream string
}

func newNames(t *testing.T) names {
	t.Helper()
	n := names{
		exchange: rabbittest.Name(t, "faults.ex."),
		queue:    rabbittest.Name(t, "faults.q."),
		stream:   rabbittest.Name(t, "faults.hist."),
	}
	n.dlq = n.queue + ".dead"
	rabbittest.DeleteQueues(t, n.queue, n.dlq, n.stream, n.stream+snapshot.StreamSuffix)
	rabbittest.DeleteExchanges(t, n.exchange, n.queue+".dlx")
	return n
}

// declareHistory declares the stream up front (bound to the exchange, with
// the exporter's default arguments), so it keeps what is published before an
// exporter with history replay starts.
func (n names) declareHistory(t *testing.T) {
	t.Helper()
	ch, err := broker.DeclareHistory(rabbittest.Dial(t), broker.History{Stream: n.stream, Exchange: n.exchange}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = ch.Close()
}

// args are the exporter flags for these entities through amqpURL.
func (n names) args(amqpURL string, extra ...string) []string {
	return append([]string{
		"--amqp.url=" + amqpURL, "--amqp.exchange=" + n.exchange, "--amqp.queue=" + n.queue,
		"--history.stream=" + n.stream,
	}, extra...)
}

// exporter is one runlens-exporter process.
type exporter struct {
	t       *testing.T
	name    string
	addr    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// startExporter runs the exporter binary on a free loopback port and waits
// until /-/ready answers 200. The test's cleanup kills it if still running,
// and prints the tail of its log if the test failed.
func startExporter(t *testing.T, name string, args ...string) *exporter {
	t.Helper()
	e := startExporterNoWait(t, name, args...)
	e.waitReady(2 * time.Minute)
	return e
}

func startExporterNoWait(t *testing.T, name string, args ...string) *exporter {
	t.Helper()
	e := &exporter{t: t, name: name, addr: proctest.FreeAddr(t), logPath: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	logf, err := os.Create(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	// A copy: callers starting exporters at once may share args, and an
	// append into its spare capacity would hand one the other's address.
	e.cmd = exec.Command(exporterBin, append(slices.Clone(args), "--web.listen-address="+e.addr, "--log.level=info")...)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		e.waitErr = e.cmd.Wait()
		logf.Close()
		close(e.done)
	}()
	t.Cleanup(func() {
		if e.running() {
			_ = e.cmd.Process.Kill()
			<-e.done
		}
		if t.Failed() {
			t.Logf("--- tail of %s log ---\n%s", e.name, tail(e.logs(), 40))
		}
	})
	return e
}

func (e *exporter) running() bool {
	select {
	case <-e.done:
		return false
	default:
		return true
	}
}

func (e *exporter) pid() int { return e.cmd.Process.Pid }

func (e *exporter) logs() string {
	b, _ := os.ReadFile(e.logPath)
	return string(b)
}

func (e *exporter) url(path string) string { return "http://" + e.addr + path }

func (e *exporter) waitReady(timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(e.url("/-/ready"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if !e.running() {
			e.t.Fatalf("%s exited before it was ready (%v); log:\n%s", e.name, e.waitErr, tail(e.logs(), 40))
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s not ready after %s; log:\n%s", e.name, timeout, tail(e.logs(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill9 sends SIGKILL and waits for the process to be gone.
func (e *exporter) kill9() {
	e.t.Helper()
	if err := e.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		e.t.Fatalf("kill -9 %s: %v", e.name, err)
	}
	<-e.done
}

// stop sends SIGTERM (finish and ack what was received, then exit) and
// fails the test unless the exporter exits 0 within 30 s.
func (e *exporter) stop() {
	e.t.Helper()
	if !e.running() {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
		if e.waitErr != nil {
			e.t.Errorf("%s exited with %v after SIGTERM", e.name, e.waitErr)
		}
	case <-time.After(30 * time.Second):
		e.t.Errorf("%s did not exit within 30s of SIGTERM", e.name)
		_ = e.cmd.Process.Kill()
		<-e.done
	}
}

func (e *exporter) scrape(families ...string) (samples, error) {
	return scrapeURL(e.url("/metrics"), families...)
}

func (e *exporter) mustScrape(families ...string) samples {
	e.t.Helper()
	s, err := e.scrape(families...)
	if err != nil {
		e.t.Fatalf("scrape %s: %v", e.name, err)
	}
	return s
}

// procStatus reads a field of /proc/<pid>/status in bytes (VmRSS, VmHWM).
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected %s line %q", field, line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// sample is one scraped sample.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

type samples []sample

// scrapeURL fetches a /metrics page and parses it with expfmt. With
// families, only those metric families are kept: the lines of the others are
// dropped before parsing, which keeps polling a 100,000-node exporter cheap
// on the test's side.
func scrapeURL(u string, families ...string) (samples, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var body io.Reader = resp.Body
	if len(families) > 0 {
		want := map[string]bool{}
		for _, f := range families {
			want[f] = true
		}
		keep := func(name string) bool {
			if want[name] {
				return true
			}
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && want[base] {
					return true
				}
			}
			return false
		}
		var filtered bytes.Buffer
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			name := line
			if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
				name = rest
			} else if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
				name = rest
			} else if strings.HasPrefix(line, "#") {
				continue
			}
			if i := strings.IndexAny(name, "{ "); i >= 0 {
				name = name[:i]
			}
			if keep(name) {
				filtered.WriteString(line)
				filtered.WriteByte('\n')
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", u, err)
		}
		body = &filtered
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(body)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", u, err)
	}
	var out samples
	for name, mf := range mfs {
		for _, m := range mf.Metric {
			ls := make(map[string]string, len(m.Label))
			for _, l := range m.Label {
				ls[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Counter != nil:
				out = append(out, sample{name, ls, m.Counter.GetValue()})
			case m.Gauge != nil:
				out = append(out, sample{name, ls, m.Gauge.GetValue()})
			case m.Untyped != nil:
				out = append(out, sample{name, ls, m.Untyped.GetValue()})
			case m.Histogram != nil:
				out = append(out, sample{name + "_count", ls, float64(m.Histogram.GetSampleCount())})
			}
		}
	}
	return out, nil
}

// sum adds the values of metric whose labels include match (k, v pairs).
func (s samples) sum(metric string, match ...string) float64 {
	var n float64
	for _, x := range s {
		if x.name == metric && x.matches(match) {
			n += x.value
		}
	}
	return n
}

// count is the number of series of metric matching.
func (s samples) count(metric string, match ...string) int {
	n := 0
	for _, x := range s {
		if x.name == metric && x.matches(match) {
			n++
		}
	}
	return n
}

// has says whether metric has a series matching.
func (s samples) has(metric string, match ...string) bool { return s.count(metric, match...) > 0 }

func (x sample) matches(match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		if x.labels[match[i]] != match[i+1] {
			return false
		}
	}
	return true
}

// byNode maps each node to metric's value (summed over its series: a node
// has one environment).
func (s samples) byNode(metric string) map[string]float64 {
	out := map[string]float64{}
	for _, x := range s {
		if x.name == metric {
			out[x.labels["node"]] += x.value
		}
	}
	return out
}

// reports is the sum of runlens_reports_total for an outcome ("" = all).
func (s samples) reports(outcome string) float64 {
	if outcome == "" {
		return s.sum("runlens_reports_total")
	}
	return s.sum("runlens_reports_total", "outcome", outcome)
}

// publishAll publishes bodies to the exchange with publisher confirms
// (pipelined) and returns once all are confirmed.
func publishAll(ctx context.Context, exchange string, bodies [][]byte) error {
	p, err := broker.NewPublisher(ctx, rabbittest.URL, exchange, nil)
	if err != nil {
		return err
	}
	defer p.Close()
	return p.PublishAll(ctx, bodies, 0)
}

// rabbitmqctl runs rabbitmqctl -q with a time limit.
func rabbitmqctl(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// keepBrokerHealthy registers a cleanup that starts the RabbitMQ app again
// (a no-op if it runs) and waits for `rabbitmqctl await_startup` and an AMQP
// login, so a test that stopped the broker never leaves it stopped. Register
// it after rabbittest.DeleteQueues / DeleteExchanges: cleanups run last
// registered first, and those need the broker.
func keepBrokerHealthy(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		if err := rabbitmqctl("start_app"); err != nil {
			t.Errorf("restoring the broker: %v", err)
		}
		if err := rabbitmqctl("await_startup"); err != nil {
			t.Errorf("restoring the broker: %v", err)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			conn, err := amqp.Dial(rabbittest.URL)
			if err == nil {
				conn.Close()
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("broker not accepting AMQP logins a minute after start_app: %v", err)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// waitFor polls cond every interval until it holds; it fails the test with
// msg (and what cond last said) after timeout.
func waitFor(t *testing.T, timeout, interval time.Duration, msg string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, msg, why)
		}
		time.Sleep(interval)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// firstFew lists up to 10 of names, sorted, for error messages.
func firstFew(names []string) string {
	sort.Strings(names)
	if len(names) > 10 {
		return strings.Join(names[:10], ", ") + fmt.Sprintf(", … (%d in all)", len(names))
	}
	return strings.Join(names, ", ")
}

// freezeProxy is a loopback TCP proxy to the broker that can freeze: after
// Freeze returns, not one more byte reaches the broker (or the client), while
// the connections stay open until Cut. The kill -9 test uses it to know
// exactly which acks the broker can have received (see TestKill9MidFlow).
type freezeProxy struct {
	ln net.Listener

	mu     sync.RWMutex // read-held around every forwarded write; Freeze takes it
	frozen bool

	connMu sync.Mutex
	conns  []net.Conn
}

func newFreezeProxy(t *testing.T) *freezeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln}
	go p.accept()
	t.Cleanup(p.Cut)
	return p
}

func (p *freezeProxy) URL() string { return "amqp://guest:guest@" + p.ln.Addr().String() + "/" }

func (p *freezeProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", rabbittest.Broker)
		if err != nil {
			c.Close()
			continue
		}
		p.connMu.Lock()
		p.conns = append(p.conns, c, s)
		p.connMu.Unlock()
		go p.pipe(s, c)
		go p.pipe(c, s)
	}
}

func (p *freezeProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.RLock()
			if p.frozen {
				p.mu.RUnlock()
				return // drop it, and read no more: the sender's writes pile up
			}
			_, werr := dst.Write(buf[:n])
			p.mu.RUnlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				dst.Close()
			}
			return
		}
	}
}

// Freeze stops all forwarding; a write under way completes first.
func (p *freezeProxy) Freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

// Cut closes the listener and resets every connection, both sides.
func (p *freezeProxy) Cut() {
	_ = p.ln.Close()
	p.connMu.Lock()
	defer p.connMu.Unlock()
	for _, c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
	p.conns = nil
}

// promQuery runs an instant PromQL query and returns the vector's samples
// as label sets and values.
func promQuery(base, q string) ([]sample, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("query %q: %v", q, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", q, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: result type %s, want vector", q, r.Data.ResultType)
	}
	out := make([]sample, 0, len(r.Data.Result))
	for _, x := range r.Data.Result {
		s, _ := x.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %v", q, x.Value[1])
		}
		out = append(out, sample{name: x.Metric["__name__"], labels: x.Metric, value: v})
	}
	return out, nil
}
