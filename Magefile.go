//go:build mage

// Build, test and lint runlens. Run with `go run mage.go <target>` (no mage
// install needed) or `mage <target>`.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/magefile/mage/mg"
	"github.com/magefile/mage/sh"
)

// Default target: build everything.
var Default = Build

// fuzzTargets are run briefly by Test: package → fuzz functions.
var fuzzTargets = map[string][]string{
	"./pkg/report": {"FuzzDecode", "FuzzFastMatchesStd"},
}

// Build builds the exporter, the simulator, the demo app and the benchmark
// into bin/, and the datasource plugin into datasource/dist.
func Build() error {
	mg.SerialDeps(Plugin)
	for _, cmd := range []struct{ out, pkg string }{
		{"bin/runlens-exporter", "./exporter"},
		{"bin/runlens-sim", "./cmd/runlens-sim"},
		{"bin/runlens-bench", "./cmd/runlens-bench"},
		{"bin/runlens-demo-app", "./cmd/runlens-demo-app"},
	} {
		if err := sh.RunV("go", "build", "-o", cmd.out, cmd.pkg); err != nil {
			return err
		}
	}
	return nil
}

// pluginID is the datasource plugin's id; Grafana runs the backend binary
// named gpx_<id>_<os>_<arch> from the plugin directory.
const pluginID = "runlens-topology-datasource"

// Plugin builds the datasource plugin into datasource/dist, the layout
// Grafana loads: the frontend (module.js, plugin.json, img/) and the backend
// for linux/amd64 and linux/arm64.
func Plugin() error {
	mg.SerialDeps(PluginFrontend, PluginBackend)
	return nil
}

// PluginBackend cross-compiles the plugin's backend binaries.
func PluginBackend() error {
	for _, arch := range []string{"amd64", "arm64"} {
		env := map[string]string{"GOOS": "linux", "GOARCH": arch, "CGO_ENABLED": "0"}
		out := "datasource/dist/gpx_" + pluginID + "_linux_" + arch
		if err := sh.RunWithV(env, "go", "build", "-trimpath", "-o", out, "./datasource"); err != nil {
			return err
		}
	}
	return nil
}

// PluginFrontend installs the frontend's npm packages (from the lock file)
// and builds datasource/dist/module.js.
func PluginFrontend() error {
	return npm("ci", "run build")
}

// FrontendTest type-checks and builds the frontend, then runs its unit
// tests (one of which loads the built module.js as Grafana does).
func FrontendTest() error {
	return npm("ci", "run typecheck", "run build", "test")
}

// npm runs npm commands in datasource/.
func npm(cmds ...string) error {
	for _, c := range cmds {
		cmd := exec.Command("npm", append(strings.Fields(c), "--no-audit", "--no-fund")...)
		if strings.HasPrefix(c, "run ") || c == "test" {
			cmd = exec.Command("npm", strings.Fields(c)...)
		}
		cmd.Dir = "datasource"
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("npm %s: %w", c, err)
		}
	}
	return nil
}

// Lint fails on unformatted files and go vet findings.
func Lint() error {
	// The module's own package directories, not node_modules (an npm
	// package may ship Go files of its own).
	dirs, err := sh.Output("go", "list", "-f", "{{.Dir}}", "./...")
	if err != nil {
		return err
	}
	out, err := sh.Output("gofmt", append([]string{"-l", "Magefile.go", "mage.go"}, strings.Fields(dirs)...)...)
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) != "" {
		return fmt.Errorf("gofmt would change:\n%s", out)
	}
	return sh.RunV("go", "vet", "./...")
}

// Test runs lint, every Go test with the race detector (integration tests
// need RabbitMQ on 127.0.0.1:5672, and the Debian packages the README
// lists), the frontend's type-check and tests, each fuzz target for a short
// while, then the fault suite.
func Test() error {
	mg.SerialDeps(Lint)
	if err := sh.RunV("go", "test", "-race", "-count=1", "-timeout=20m", "./..."); err != nil {
		return err
	}
	if err := FrontendTest(); err != nil {
		return err
	}
	if err := Fuzz(); err != nil {
		return err
	}
	return Faults()
}

// Faults runs the fault suite (faults/, build tag "faults"): kill -9 of the
// exporter mid-flow, a RabbitMQ restart mid-stream, a poison flood, three
// replicas. It stops and starts the local broker, so it runs on its own,
// after every other test.
func Faults() error {
	return sh.RunV("go", "test", "-tags", "faults", "-count=1", "-timeout=15m", "-v", "./faults/")
}

// Fuzz runs each fuzz target for FUZZTIME (default 15s).
func Fuzz() error {
	d := 15 * time.Second
	if v := os.Getenv("FUZZTIME"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return fmt.Errorf("FUZZTIME: %w", err)
		}
	}
	for pkg, targets := range fuzzTargets {
		for _, t := range targets {
			if err := sh.RunV("go", "test", "-run=^$", "-fuzz=^"+t+"$", "-fuzztime="+d.String(), pkg); err != nil {
				return err
			}
		}
	}
	return nil
}

// Bench prints the exporter benchmark (drain-rate ratio, scrape time, heap per node).
func Bench() error {
	cmd := exec.Command("go", "run", "./cmd/runlens-bench")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}
