package producers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/internal/fixtures"
	"github.com/runlens/runlens/internal/proctest"
	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/pkg/report"
)

// The interpreters are Debian's, on purpose: the Python on PATH may be a
// pyenv one without python3-pika, and Chef's embedded Ruby is not here.
const (
	rubyBin   = "/usr/bin/ruby"
	pythonBin = "/usr/bin/python3"
)

// envAMQPURL overrides the broker for these tests and for the Ruby and Python
// suites they run.
const envAMQPURL = "RUNLENS_TEST_AMQP_URL"

func amqpURL() string {
	if u := os.Getenv(envAMQPURL); u != "" {
		return u
	}
	// %2F, not a bare "/": by the AMQP URI spec (which Bunny follows) a bare
	// "/" path is the empty vhost, while Go's and pika's clients read it as "/".
	return "amqp://guest:guest@127.0.0.1:5672/%2F"
}

// splitURL returns the URL without its password, and the password, the way
// the producers are configured (the password never sits in the URL).
func splitURL(t *testing.T) (string, string) {
	t.Helper()
	u, err := url.Parse(amqpURL())
	if err != nil {
		t.Fatalf("%s: %v", envAMQPURL, err)
	}
	user, pass := "guest", "guest"
	if u.User != nil {
		user = u.User.Username()
		if p, ok := u.User.Password(); ok {
			pass = p
		}
	}
	u.User = url.User(user)
	return u.String(), pass
}

func requireRuby(t *testing.T) {
	t.Helper()
	out, err := exec.Command(rubyBin, "-e", `require "bunny"; require "minitest"; puts Bunny::VERSION`).CombinedOutput()
	if err != nil {
		t.Fatalf("%s with bunny and minitest is needed (apt-get install ruby ruby-bunny): %v\n%s", rubyBin, err, out)
	}
}

func requirePython(t *testing.T) {
	t.Helper()
	out, err := exec.Command(pythonBin, "-c", "import pika; print(pika.__version__)").CombinedOutput()
	if err != nil {
		t.Fatalf("%s with pika is needed (apt-get install python3-pika): %v\n%s", pythonBin, err, out)
	}
}

// run runs a producer-side program and fails the test if it fails. The
// shared fixtures are passed on through RUNLENS_SHARED.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), fixtures.EnvShared+"="+filepath.Dir(fixtures.Dir(t)), envAMQPURL+"="+amqpURL())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: timed out\n%s", name, strings.Join(args, " "), out.String())
	}
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestChefHandlerRubySuite(t *testing.T) {
	t.Parallel()
	requireRuby(t)
	files, _ := filepath.Glob("chef/cookbooks/runlens_handler/*/*.rb")
	files = append(files, "chef/cookbooks/runlens_handler/metadata.rb")
	if len(files) < 5 {
		t.Fatalf("cookbook files missing: %v", files)
	}
	for _, f := range files {
		run(t, rubyBin, "-wc", f)
	}
	out := run(t, rubyBin, "chef/test/runlens_handler_test.rb")
	if !strings.Contains(out, " 0 failures, 0 errors, 0 skips") {
		t.Fatalf("unexpected minitest summary:\n%s", out)
	}
	t.Log(lastLine(out))
}

func TestSaltReturnerPythonSuite(t *testing.T) {
	t.Parallel()
	requirePython(t)
	for _, suite := range []string{"salt/tests/test_runlens_amqp.py", "salt/tests/test_runlens_amqp_more.py"} {
		out := run(t, pythonBin, suite, "-v")
		if !strings.HasSuffix(strings.TrimSpace(out), "\nOK") {
			t.Fatalf("%s: unexpected unittest summary:\n%s", suite, out)
		}
		t.Log(suite, lastLine(out))
	}
}

// broker is a test's own durable fanout exchange (declared as the producers
// declare it) and an exclusive queue bound to it, both deleted at the end.
type broker struct {
	ch       *amqp.Channel
	exchange string
	msgs     <-chan amqp.Delivery
}

func newBroker(t *testing.T, prefix string) *broker {
	t.Helper()
	conn, err := amqp.Dial(amqpURL())
	if err != nil {
		t.Fatalf("RabbitMQ on %s: %v", amqpURL(), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	ex := prefix + hex.EncodeToString(b)
	if err := ch.ExchangeDeclare(ex, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.ExchangeDelete(ex, false, false) })
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "", ex, false, nil); err != nil {
		t.Fatal(err)
	}
	msgs, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &broker{ch: ch, exchange: ex, msgs: msgs}
}

// take waits for n messages, then makes sure no more arrive.
func (b *broker) take(t *testing.T, n int) []amqp.Delivery {
	t.Helper()
	var got []amqp.Delivery
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case d := <-b.msgs:
			got = append(got, d)
		case <-timeout:
			t.Fatalf("got %d of %d messages", len(got), n)
		}
	}
	select {
	case d := <-b.msgs:
		t.Fatalf("unexpected extra message: %s", d.Body)
	case <-time.After(200 * time.Millisecond):
	}
	return got
}

func decode(t *testing.T, d amqp.Delivery) *report.Run {
	t.Helper()
	if d.DeliveryMode != amqp.Persistent {
		t.Errorf("message %s: delivery mode %d, want persistent", d.MessageId, d.DeliveryMode)
	}
	if d.ContentType != "application/json" {
		t.Errorf("message %s: content type %q", d.MessageId, d.ContentType)
	}
	r, err := report.Decode(d.Body)
	if err != nil {
		t.Fatalf("report.Decode rejected message %s: %v\n%s", d.MessageId, err, d.Body)
	}
	return r
}

func byMessageID(t *testing.T, ds []amqp.Delivery) map[string]amqp.Delivery {
	t.Helper()
	m := map[string]amqp.Delivery{}
	for _, d := range ds {
		m[d.MessageId] = d
	}
	if len(m) != len(ds) {
		t.Fatalf("message ids not unique: %d messages, %d ids", len(ds), len(m))
	}
	return m
}

func TestChefHandlerEndToEnd(t *testing.T) {
	t.Parallel()
	requireRuby(t)
	b := newBroker(t, "runlens.test.producers.chef.")
	u, pass := splitURL(t)
	okID := "e2e-ok-" + b.exchange[len(b.exchange)-12:]
	failID := "e2e-fail-" + b.exchange[len(b.exchange)-12:]
	run(t, rubyBin, "chef/test/e2e_publish.rb", u, pass, b.exchange, okID, failID)
	msgs := byMessageID(t, b.take(t, 2))

	ok := decode(t, msgs[okID])
	start := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	checkRun(t, ok, report.Run{
		Format: report.FormatChefHandler, Source: report.SourceChef, ID: okID,
		Node: "web01.example.com", FQDN: "web01.example.com", IPAddress: "10.0.0.11", Environment: "production",
		Roles: []string{"base", "web"}, RunList: []string{"role[base]", "role[web]", "recipe[runlens_handler]"},
		DependsOn: []string{"db01.example.com", "role:cache"}, ClientVersion: "18.4.12", Platform: "ubuntu",
		Status: report.StatusSuccess, Start: start, End: start.Add(42500 * time.Millisecond), Duration: 42500 * time.Millisecond,
		UpdatedCount: 3,
	})
	if want := map[string]int{"file": 1, "package": 1, "service": 1}; !reflect.DeepEqual(ok.UpdatedByType, want) {
		t.Errorf("success UpdatedByType = %v, want %v", ok.UpdatedByType, want)
	}

	failed := decode(t, msgs[failID])
	start = time.Date(2024, 5, 1, 11, 0, 0, 0, time.UTC)
	checkRun(t, failed, report.Run{
		Format: report.FormatChefHandler, Source: report.SourceChef, ID: failID,
		Node: "web01.example.com", FQDN: "web01.example.com", IPAddress: "10.0.0.11", Environment: "production",
		Roles: []string{"base", "web"}, RunList: []string{"role[base]", "role[web]", "recipe[runlens_handler]"},
		DependsOn: []string{"db01.example.com", "role:cache"}, ClientVersion: "18.4.12", Platform: "ubuntu",
		Status: report.StatusFailure, Start: start, End: start.Add(3 * time.Second), Duration: 3 * time.Second,
		UpdatedCount: 1,
	})
	if failed.Error == nil || failed.Error.Class != "Stand::EnclosingDirectoryDoesNotExist" ||
		!strings.Contains(failed.Error.Message, "Parent directory /failed/file does not exist") {
		t.Errorf("failure Error = %+v", failed.Error)
	}
}

// TestChefHandlerHTTPEndToEnd: the handler's http transport (Net::HTTP, no
// gem) posts to the real exporter binary's data collector endpoint, which
// publishes to the exchange: the same reports arrive as over AMQP.
func TestChefHandlerHTTPEndToEnd(t *testing.T) {
	t.Parallel()
	requireRuby(t)
	b := newBroker(t, "runlens.test.producers.chefhttp.")
	bin, err := proctest.BuildExporter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("e2e-http-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	queue, stream := rabbittest.Name(t, "runlens.test.producers.q."), rabbittest.Name(t, "runlens.test.producers.hist.")
	rabbittest.DeleteQueues(t, queue, queue+".dead", stream)
	rabbittest.DeleteExchanges(t, queue+".dlx")
	web, ingest := proctest.FreeAddr(t), proctest.FreeAddr(t)
	proc := proctest.Start(t, dir, "exporter", bin, "--amqp.url="+amqpURL(), "--amqp.exchange="+b.exchange,
		"--amqp.queue="+queue, "--history.stream="+stream, "--history.replay=0", "--web.listen-address="+web,
		"--ingest.token-file="+token, "--ingest.listen-address="+ingest, "--ingest.spool.dir="+filepath.Join(dir, "spool"))
	proctest.WaitReady(t, "http://"+web+"/-/ready", 60*time.Second, proc)

	okID, failID := "http-ok-"+b.exchange[len(b.exchange)-12:], "http-fail-"+b.exchange[len(b.exchange)-12:]
	cmd := exec.Command(rubyBin, "chef/test/e2e_publish.rb", "unused", "unused", "unused", okID, failID)
	cmd.Env = append(os.Environ(), "RUNLENS_E2E_HTTP_URL=http://"+ingest+"/data-collector/v0/", "RUNLENS_E2E_HTTP_TOKEN=e2e-http-token")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("e2e_publish.rb over http: %v\n%s", err, out)
	}
	msgs := b.take(t, 2)
	byRun := map[string]*report.Run{}
	for _, d := range msgs {
		if d.Headers["x-runlens-source"] != "data-collector" {
			t.Errorf("message without the data collector's header: %v", d.Headers)
		}
		r := decode(t, d)
		byRun[r.ID] = r
	}
	if ok := byRun[okID]; ok == nil || ok.Status != report.StatusSuccess || ok.UpdatedCount != 3 || ok.Node != "web01.example.com" {
		t.Errorf("success report: %+v", ok)
	}
	if failed := byRun[failID]; failed == nil || failed.Status != report.StatusFailure || failed.Error == nil {
		t.Errorf("failure report: %+v", failed)
	}
}

func TestSaltReturnerEndToEnd(t *testing.T) {
	t.Parallel()
	requirePython(t)
	b := newBroker(t, "runlens.test.producers.salt.")
	u, pass := splitURL(t)
	f01 := fixtures.Dir(t, "salt", "01-ret-state.apply-success-with-changes.json")
	f02 := fixtures.Dir(t, "salt", "02-ret-state.apply-failure-one-state-false.json")
	run(t, pythonBin, "salt/tests/e2e_publish.py", u, pass, b.exchange, f01)
	// A minion-side return has no _stamp: the returner adds it.
	before := time.Now().Add(-time.Second)
	run(t, pythonBin, "salt/tests/e2e_publish.py", "--drop-stamp", u, pass, b.exchange, f02)
	after := time.Now().Add(time.Second)
	msgs := byMessageID(t, b.take(t, 2))

	ok := decode(t, msgs["20211109174620871797/d10-master-01.example.local"])
	end := time.Date(2021, 11, 9, 17, 46, 21, 35412000, time.UTC)
	checkRun(t, ok, report.Run{
		Format: report.FormatSalt, Source: report.SourceSalt, ID: "20211109174620871797/d10-master-01.example.local",
		Node: "d10-master-01.example.local", Environment: "base", Status: report.StatusSuccess,
		Start: end.Add(-13695 * time.Microsecond), End: end, Duration: 13695 * time.Microsecond,
		UpdatedCount: 2, TotalResources: 2,
	})

	failed := decode(t, msgs["20181227105933129338/MacPro"])
	if failed.End.Before(before) || failed.End.After(after) {
		t.Errorf("02 end %v: want the returner's _stamp, between %v and %v", failed.End, before, after)
	}
	checkRun(t, failed, report.Run{
		Format: report.FormatSalt, Source: report.SourceSalt, ID: "20181227105933129338/MacPro",
		Node: "MacPro", Environment: "base", Status: report.StatusFailure,
		Start: failed.End.Add(-27032272 * time.Microsecond), End: failed.End, Duration: 27032272 * time.Microsecond,
		UpdatedCount: 1, FailedCount: 1, TotalResources: 4,
	})
	if failed.Error == nil || failed.Error.Class != "salt.retcode.2" {
		t.Errorf("02 Error = %+v, want class salt.retcode.2 (success:true in the return notwithstanding)", failed.Error)
	}
}

// checkRun compares the fields of want that describe a run's identity and
// outcome; lists, type counts and the error are checked by the callers.
func checkRun(t *testing.T, got *report.Run, want report.Run) {
	t.Helper()
	type view struct {
		Format                                    report.Format
		Source                                    report.Source
		ID, Node, FQDN, IPAddress, Environment    string
		ClientVersion, Platform                   string
		Roles, RunList, DependsOn                 []string
		Status                                    report.Status
		Start, End                                time.Time
		Duration                                  time.Duration
		UpdatedCount, FailedCount, TotalResources int
	}
	v := func(r *report.Run) view {
		return view{r.Format, r.Source, r.ID, r.Node, r.FQDN, r.IPAddress, r.Environment, r.ClientVersion, r.Platform,
			r.Roles, r.RunList, r.DependsOn, r.Status, r.Start, r.End, r.Duration,
			r.UpdatedCount, r.FailedCount, r.TotalResources}
	}
	if g, w := v(got), v(&want); !reflect.DeepEqual(g, w) {
		t.Errorf("decoded run %s:\n got %+v\nwant %+v", want.ID, g, w)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
