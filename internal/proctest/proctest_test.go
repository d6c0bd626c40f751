package proctest

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestStartTailAndExit(t *testing.T) {
	sh := Tool(t, "apt-get install dash", "sh")
	p := Start(t, t.TempDir(), "echo", sh, "-c", "echo one; echo two; echo three")
	deadline := time.Now().Add(5 * time.Second)
	for !p.Exited() {
		if time.Now().After(deadline) {
			t.Fatal("sh did not exit")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := p.Tail(2); got != "two\nthree" {
		t.Errorf("Tail(2) = %q", got)
	}
	if a := FreeAddr(t); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Errorf("FreeAddr = %q", a)
	}
}

// The exporter builds and runs: --version answers with its name.
func TestBuildExporter(t *testing.T) {
	bin, err := BuildExporter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "runlens-exporter") {
		t.Fatalf("%s --version: %v\n%s", bin, err, out)
	}
}
