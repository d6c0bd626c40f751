package incident

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/runlens/runlens/internal/proctest"
)

// Blocks writes the incidents' metrics as OpenMetrics in dir and turns them
// into TSDB blocks with promtool (`tsdb create-blocks-from openmetrics`);
// it returns the TSDB directory, for `prometheus --storage.tsdb.path`.
func Blocks(promtool, dir string, incs ...*Incident) (string, error) {
	om := filepath.Join(dir, "apm.om")
	f, err := os.Create(om)
	if err != nil {
		return "", err
	}
	err = WriteOpenMetrics(f, incs...)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	tsdb := filepath.Join(dir, "data")
	if out, err := exec.Command(promtool, "tsdb", "create-blocks-from", "openmetrics", om, tsdb).CombinedOutput(); err != nil {
		return "", fmt.Errorf("promtool tsdb create-blocks-from openmetrics: %v\n%s", err, out)
	}
	return tsdb, nil
}

// PrometheusConfig is a configuration that scrapes nothing: the data is
// in the blocks.
const PrometheusConfig = "global:\n  scrape_interval: 1m\n"

// PrometheusArgs are the arguments that serve tsdb with cfg on addr.
func PrometheusArgs(cfg, tsdb, addr string) []string {
	return []string{"--config.file=" + cfg, "--storage.tsdb.path=" + tsdb, "--storage.tsdb.retention.time=30d",
		"--web.listen-address=" + addr, "--log.level=warn"}
}

// ServeBlocks serves the incidents' metrics with a real prometheus (the
// Debian package) for the test's duration and returns its URL.
func ServeBlocks(t testing.TB, incs ...*Incident) string {
	t.Helper()
	promtool := proctest.Tool(t, "apt-get install prometheus", "promtool")
	bin := proctest.Tool(t, "apt-get install prometheus", "prometheus")
	dir := t.TempDir()
	tsdb, err := Blocks(promtool, dir, incs...)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(PrometheusConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := proctest.FreeAddr(t)
	prom := proctest.Start(t, dir, "prometheus", bin, PrometheusArgs(cfg, tsdb, addr)...)
	url := "http://" + addr
	proctest.WaitReady(t, url+"/-/ready", 30*time.Second, prom)
	return url
}
