package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runlens/runlens/internal/proctest"
	"github.com/runlens/runlens/internal/rabbittest"
)

// rubyBin is Debian's Ruby: the Chef-like client needs its standard
// library only.
const rubyBin = "/usr/bin/ruby"

// chefClient is producers/chef/test/chef_http_client.rb: a data collector
// client written the way Chef's is (Net::HTTP, Chef's headers, JSON, a 5xx
// retried five times, a redirect never followed).
var chefClient = filepath.Join("..", "producers", "chef", "test", "chef_http_client.rb")

const ingestToken = "chef-token-123"

// clientResult is the client's last line.
type clientResult struct {
	Result   string `json:"result"`
	Code     int    `json:"code"`
	Attempts int    `json:"attempts"`
}

// runChefClient runs the client and returns its result and every attempt's
// status code. stepped, if not nil, is called after each attempt line.
func runChefClient(t *testing.T, method, url, bodyFile string, scale string, stepped func(code int)) (clientResult, []int) {
	t.Helper()
	if _, err := os.Stat(rubyBin); err != nil {
		t.Fatalf("%s is needed (apt-get install ruby): %v", rubyBin, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{chefClient, method, url, ingestToken}
	if bodyFile != "" {
		args = append(args, bodyFile)
	}
	cmd := exec.CommandContext(ctx, rubyBin, args...)
	cmd.Env = append(os.Environ(), "RUNLENS_RETRY_SCALE="+scale)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var res clientResult
	var codes []int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var line struct {
			Attempt int    `json:"attempt"`
			Code    int    `json:"code"`
			Result  string `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("client output %q: %v", sc.Text(), err)
		}
		switch {
		case line.Result != "":
			_ = json.Unmarshal(sc.Bytes(), &res)
		case line.Attempt > 0:
			codes = append(codes, line.Code)
			if stepped != nil {
				stepped(line.Code)
			}
		}
	}
	_ = cmd.Wait()
	if res.Result == "" {
		t.Fatalf("the client gave no result (%v); stderr:\n%s", ctx.Err(), stderr.String())
	}
	return res, codes
}

// runStart writes a run_start (fixture 01's shape) for node.
func runStart(t *testing.T, dir, node string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(fixture(t, "chef", "01-run_start-ubuntu-success.json"), &m); err != nil {
		t.Fatal(err)
	}
	m["node_name"], m["run_id"], m["id"] = node, "run-"+node, "run-"+node
	b, _ := json.Marshal(m)
	p := filepath.Join(dir, node+".json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func tokenFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(ingestToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestIngestChefClientPathForms: a Chef-like client reaches the endpoint on
// every path form Automate and Chef Infra Server use (see
// datacollector.IsPath), gets 404 (and no retry: a 4xx is final in
// lib/chef/http.rb) on a wrong server_url, including "/" where the landing
// page would answer 200, and never a redirect; erchef's ping (a GET of
// root_url/) gets 200.
func TestIngestChefClientPathForms(t *testing.T) {
	h := newHarness(t, "--ingest.token-file="+tokenFile(t), "--ingest.spool.dir="+filepath.Join(t.TempDir(), "spool"), "--history.replay=0")
	h.start()
	dir := t.TempDir()
	base := "http://" + h.addr
	forms := []string{"/data-collector/v0", "/data-collector/v0/", "/data-collector/v0//", "/data-collector/v0/organizations/acme"}
	for i, p := range forms {
		res, codes := runChefClient(t, "POST", base+p, runStart(t, dir, "form-"+string(rune('a'+i))), "1", nil)
		if res.Result != "ok" || len(codes) != 1 || codes[0] != http.StatusNoContent {
			t.Errorf("POST %s: %+v %v, want one 204", p, res, codes)
		}
	}
	for _, p := range []string{"/", "/metrics", "/data-collector", "/data-collector/v1/"} {
		res, codes := runChefClient(t, "POST", base+p, runStart(t, dir, "wrong"), "1", nil)
		if res.Result != "error" || len(codes) != 1 || codes[0] != http.StatusNotFound {
			t.Errorf("POST %s: %+v %v, want one 404", p, res, codes)
		}
	}
	if res, _ := runChefClient(t, "GET", base+"/data-collector/v0/", "", "1", nil); res.Result != "ok" || res.Code != http.StatusOK {
		t.Errorf("erchef's ping: %+v, want 200", res)
	}
	h.waitFor("every path form's run_start", func() bool { return h.reports("chef_data_collector", "processed") == float64(len(forms)) })
	m := h.scrape()
	if got := m[`runlens_ingest_requests_total{code="404"}`]; got != 4 {
		t.Errorf("404s counted: %v, want 4", got)
	}
	// Logged with the path (at most one line per 10 s: the first one).
	if !strings.Contains(h.logs.String(), `answered 404`) || !strings.Contains(h.logs.String(), `path="\"/\""`) {
		t.Errorf("the wrong path was not logged:\n%s", h.logs)
	}
}

// TestIngestChefClientBrokerDown: the broker cut off (through a
// rabbittest.Proxy; the main broker keeps running). Without a spool the
// endpoint answers 503 and the Chef-like client retries, as Chef does, until
// the broker is back; with one it answers 202 at once, and the report is
// published when the broker is back.
func TestIngestChefClientBrokerDown(t *testing.T) {
	dir := t.TempDir()
	t.Run("no spool", func(t *testing.T) {
		proxy := rabbittest.NewProxy(t)
		h := newHarness(t, "--ingest.token-file="+tokenFile(t), "--ingest.spool.dir=", "--history.replay=0", "--ingest.publish-timeout=1s")
		h.url = proxy.URL()
		h.start()
		proxy.Pause()
		proxy.CutAll()
		res, codes := runChefClient(t, "POST", "http://"+h.addr+"/data-collector/v0/", runStart(t, dir, "nospool"), "0.05", func(code int) {
			if code == http.StatusServiceUnavailable {
				proxy.Resume()
			}
		})
		if res.Result != "ok" || len(codes) < 2 || codes[0] != http.StatusServiceUnavailable || codes[len(codes)-1] != http.StatusNoContent {
			t.Fatalf("client: %+v, attempts %v; want 503 then, after a retry, 204", res, codes)
		}
		h.waitFor("the retried run_start", func() bool { return h.reports("chef_data_collector", "processed") == 1 })
		if !strings.Contains(h.logs.String(), "without --ingest.spool.dir") {
			t.Error("no warning about running without a spool")
		}
	})
	t.Run("spool", func(t *testing.T) {
		proxy := rabbittest.NewProxy(t)
		h := newHarness(t, "--ingest.token-file="+tokenFile(t), "--ingest.spool.dir="+filepath.Join(t.TempDir(), "spool"), "--history.replay=0", "--ingest.publish-timeout=1s")
		h.url = proxy.URL()
		h.start()
		proxy.Pause()
		proxy.CutAll()
		res, codes := runChefClient(t, "POST", "http://"+h.addr+"/data-collector/v0/", runStart(t, dir, "spooled"), "0.05", nil)
		if res.Result != "ok" || len(codes) != 1 || codes[0] != http.StatusAccepted {
			t.Fatalf("client: %+v, attempts %v; want one 202", res, codes)
		}
		if got := h.scrape()["runlens_ingest_spool_messages{}"]; got != 1 {
			t.Errorf("runlens_ingest_spool_messages = %v", got)
		}
		proxy.Resume()
		h.waitFor("the spooled run_start", func() bool { return h.reports("chef_data_collector", "processed") == 1 })
	})
}

// TestIngestOwnListener: /metrics keeps TLS and basic auth on the web
// listener while Chef posts with its token alone to --ingest.listen-address,
// which takes its TLS from the same web config (never its basic auth) and
// serves nothing else; 401s are counted there.
func TestIngestOwnListener(t *testing.T) {
	dir := t.TempDir()
	cfg, caPool, hash := tlsBasicAuthWebConfig(t, dir)
	ingestAddr := proctest.FreeAddr(t)
	h := newHarness(t, "--web.config.file="+cfg, "--history.replay=0", "--ingest.token-file="+tokenFile(t), "--ingest.spool.dir="+filepath.Join(t.TempDir(), "spool"), "--ingest.listen-address="+ingestAddr)
	h.launch()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool}}}
	do := func(method, url, token, user string, body []byte) int {
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		if token != "" {
			req.Header.Set("x-data-collector-token", token)
		}
		if user != "" {
			req.SetBasicAuth(user, "scrape-pw")
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	web, ingest := "https://"+h.addr, "https://"+ingestAddr
	// Ready, not just listening: until the consumer has declared its queue,
	// a report published to the fanout exchange reaches no queue (seen under
	// load: the posted run_start was never counted).
	h.waitFor("the https listeners and a ready exporter", func() bool {
		return do("GET", web+"/-/ready", "", "prometheus", nil) == 200 && do("GET", ingest+"/data-collector/v0/", "", "", nil) == 200
	})
	start := fixture(t, "chef", "01-run_start-ubuntu-success.json")
	for name, c := range map[string]struct {
		method, url, token, user string
		want                     int
	}{
		"chef posts with its token only": {"POST", ingest + "/data-collector/v0/", ingestToken, "", 204},
		"wrong token":                    {"POST", ingest + "/data-collector/v0/", "nope", "", 401},
		"no metrics on ingest":           {"GET", ingest + "/metrics", "", "prometheus", 404},
		"metrics need basic auth":        {"GET", web + "/metrics", "", "", 401},
		"no ingest on the web listener":  {"POST", web + "/data-collector/v0/", ingestToken, "prometheus", 404},
	} {
		if got := do(c.method, c.url, c.token, c.user, start); got != c.want {
			t.Errorf("%s: %d, want %d", name, got, c.want)
		}
	}
	if do("GET", "http://"+ingestAddr+"/data-collector/v0/", "", "", nil) == 200 {
		t.Error("the ingest listener served plain HTTP although the web config asks for TLS")
	}
	scrape := func() string {
		req, _ := http.NewRequest("GET", web+"/metrics", nil)
		req.SetBasicAuth("prometheus", "scrape-pw")
		resp, err := client.Do(req)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	h.waitFor("the posted run_start and the 401", func() bool {
		m := scrape()
		return strings.Contains(m, `runlens_reports_total{format="chef_data_collector",outcome="processed"} 1`) &&
			strings.Contains(m, `runlens_ingest_requests_total{code="401"} 1`)
	})

	// A dedicated ingest web config must not carry basic auth: Chef could
	// never pass it.
	bad := filepath.Join(dir, "ingest-web.yml")
	_ = os.WriteFile(bad, []byte("basic_auth_users:\n  chef: "+string(hash)+"\n"), 0o600)
	var logs bytes.Buffer
	code := run(context.Background(), []string{"--ingest.token-file=" + tokenFile(t), "--ingest.spool.dir=" + filepath.Join(t.TempDir(), "spool"), "--ingest.listen-address=" + proctest.FreeAddr(t),
		"--ingest.web-config.file=" + bad, "--web.listen-address=" + proctest.FreeAddr(t), "--amqp.url=" + rabbittest.URL,
		"--amqp.exchange=" + h.exchange, "--amqp.queue=" + h.queue, "--history.replay=0"}, io.Discard, &logs)
	if code == 0 || !strings.Contains(logs.String(), "basic_auth_users are not supported on the ingest listener") {
		t.Errorf("exit %d with basic auth on the ingest listener; logs:\n%s", code, logs.String())
	}
}
