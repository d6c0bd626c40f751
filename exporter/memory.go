package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"time"
)

// The exporter's memory ceiling, as the README states it: what its flags let
// reports, the broker and the fleet make it hold at most (the Go heap, which
// is most of the RSS, plus a base for the runtime, the binary and the HTTP
// and AMQP buffers).
const (
	// memoryBase is the RSS of an idle exporter (measured: 16 MiB), with
	// room for the HTTP server, TLS and the scrape's buffers.
	memoryBase = 32 << 20
	// memoryPerNode is the fleet state's heap per node (measured: about
	// 900 B, cmd/runlens-bench) with the garbage collector's headroom.
	memoryPerNode = 2 << 10
	// decodeFactor is the most one report's decode holds live, per byte of
	// the report: a data collector message whose resources[] is millions of
	// empty entries ({} every three bytes) decodes to 72 bytes per entry.
	// Real reports hold about a tenth of their size (the Ohai attributes are
	// only scanned).
	decodeFactor = 24
)

// memoryCeiling is the peak RSS the flags allow with nodes tracked nodes.
// Live data is at most the deliveries held (--amqp.max-inflight-bytes, plus
// the one delivery read when the budget ran out, at most --report.max-bytes
// unless the broker lets larger messages in), one decode at a time (reports
// are decoded in parallel only while they add up to --report.max-bytes) and
// the fleet. The garbage collector keeps the heap under goMemoryLimit, twice
// the deliveries and three decodes (the one live, the previous one's
// garbage, and room to collect), so a decode's allocation past the limit
// still fits under the ceiling.
func memoryCeiling(c *config, nodes int) uint64 {
	return goMemoryLimit(c, nodes) + decodeBytes(c) + memoryBase
}

// goMemoryLimit is the soft limit limitMemory gives Go's garbage collector.
func goMemoryLimit(c *config, nodes int) uint64 {
	held := uint64(c.maxInflightBytes) + uint64(c.maxBytes)
	return uint64(nodes)*memoryPerNode + 2*held + 3*decodeBytes(c)
}

// decodeBytes is the most one report's decode holds live.
func decodeBytes(c *config) uint64 { return decodeFactor * uint64(c.maxBytes) }

// memoryLimitEvery is how often the Go memory limit follows the fleet size.
const memoryLimitEvery = 10 * time.Second

// limitMemory keeps Go's soft memory limit at goMemoryLimit for the fleet's
// current size, so the garbage collector collects before the heap reaches
// the ceiling instead of letting it grow to twice what is live. Live data under the
// ceiling costs only more frequent collections; live data over it (a
// ceiling the formula got wrong) costs at most half the CPU to the
// collector, Go's own cap, never a crash. An operator's GOMEMLIMIT wins.
func limitMemory(ctx context.Context, c *config, nodes func() int, logger *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		logger.Info("memory limit from GOMEMLIMIT", "ceiling_bytes", memoryCeiling(c, nodes()))
		return
	}
	set := func() {
		debug.SetMemoryLimit(int64(goMemoryLimit(c, nodes())))
	}
	set()
	logger.Info("memory ceiling", "bytes", memoryCeiling(c, nodes()), "go_memory_limit_bytes", goMemoryLimit(c, nodes()),
		"max_inflight_bytes", c.maxInflightBytes, "report_max_bytes", c.maxBytes)
	t := time.NewTicker(memoryLimitEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			set()
		}
	}
}
