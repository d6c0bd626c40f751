// Package proctest runs real programs for tests (Prometheus, Alertmanager,
// the exporter binary): started with their output in a log file, killed and
// waited for at the end of the test, and waited on until they answer.
package proctest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Proc is a started program.
type Proc struct {
	Name string
	Log  string // path of the file holding its stdout and stderr
	Cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Exited reports whether the program has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Tail returns the last lines of the program's output.
func (p *Proc) Tail(lines int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return err.Error()
	}
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// Start runs bin with args, its output in dir/name.log. The test's cleanup
// kills it and waits for it, and shows the output's tail if the test failed.
func Start(t testing.TB, dir, name, bin string, args ...string) *Proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{Name: name, Log: logPath, Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not exit after kill", name, cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("%s output (last 60 lines):\n%s", name, p.Tail(60))
		}
	})
	return p
}

// WaitReady polls url until it answers 200, failing the test after timeout
// or as soon as one of procs has exited (with its output).
func WaitReady(t testing.TB, url string, timeout time.Duration, procs ...*Proc) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	client := http.Client{Timeout: 2 * time.Second}
	detail := ""
	for {
		for _, p := range procs {
			if p.Exited() {
				t.Fatalf("%s exited: %v\n%s", p.Name, p.err, p.Tail(40))
			}
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			detail = resp.Status
		} else {
			detail = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, url, detail)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Tool returns the path of the first of names found on PATH, failing the
// test with hint (an install command) when none is.
func Tool(t testing.TB, hint string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatalf("none of %v found: %s", names, hint)
	return ""
}

// Go returns the go command that runs this test, to build binaries with.
func Go() string {
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "go"
}

// ExporterPackage is the exporter's import path, for BuildExporter.
const ExporterPackage = "github.com/runlens/runlens/exporter"

// BuildExporter builds the exporter binary into dir (from any directory of
// the module) and returns its path: the one way the tests and benchmarks
// that run it as a real process get it.
func BuildExporter(dir string) (string, error) {
	bin := filepath.Join(dir, "runlens-exporter")
	if out, err := exec.Command(Go(), "build", "-o", bin, ExporterPackage).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", ExporterPackage, err, out)
	}
	return bin, nil
}
