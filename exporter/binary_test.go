package main

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/runlens/runlens/internal/proctest"
)

// The exporter built once for the tests that run it as a real process (the
// HTTP server's timeouts and the bounds are the binary's behaviour, flags
// and all).
var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

func exporterBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "runlens-exporter-test-")
		if err != nil {
			binaryErr = err
			return
		}
		binaryPath, binaryErr = proctest.BuildExporter(dir)
	})
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
	return binaryPath
}

// TestMain removes the built binary after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if binaryPath != "" {
		os.RemoveAll(filepath.Dir(binaryPath))
	}
	os.Exit(code)
}

// startBinary runs the built exporter with the harness's names and extra
// flags, and waits until it is ready. The test's cleanup kills it.
func (h *harness) startBinary() *proctest.Proc {
	h.t.Helper()
	p := proctest.Start(h.t, h.t.TempDir(), "runlens-exporter", exporterBinary(h.t), h.args()...)
	proctest.WaitReady(h.t, "http://"+h.addr+"/-/ready", 60*time.Second, p)
	return p
}
