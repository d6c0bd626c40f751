// Command runlens-exporter consumes configuration-management run reports from
// RabbitMQ and exposes per-node run, failure and changed-resource metrics for
// Prometheus.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(contextBackground(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, a second one kills the process as usual
		// rather than waiting for a slow graceful stop.
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
