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

// Build builds the exporter, the simulator and the benchmark into bin/.
func Build() error {
	for _, cmd := range []struct{ out, pkg string }{
		{"bin/runlens-exporter", "./exporter"},
		{"bin/runlens-sim", "./cmd/runlens-sim"},
		{"bin/runlens-bench", "./cmd/runlens-bench"},
	} {
		if err := sh.RunV("go", "build", "-o", cmd.out, cmd.pkg); err != nil {
			return err
		}
	}
	return nil
}

// Lint fails on unformatted files and go vet findings.
func Lint() error {
	out, err := sh.Output("gofmt", "-l", ".")
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) != "" {
		return fmt.Errorf("gofmt would change:\n%s", out)
	}
	return sh.RunV("go", "vet", "./...")
}

// Test runs lint, every test with the race detector (integration tests need
// RabbitMQ on 127.0.0.1:5672), then each fuzz target for a short while.
func Test() error {
	mg.SerialDeps(Lint)
	if err := sh.RunV("go", "test", "-race", "-count=1", "-timeout=20m", "./..."); err != nil {
		return err
	}
	return Fuzz()
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
