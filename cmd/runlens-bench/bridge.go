package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/internal/fixtures"
)

// bridge runs the original design's Node.js bridge (../shared/anchors/
// seed-bridge: amqplib consumer, socket.io emit, a client counting events),
// from a copy in a temporary directory with its locked dependencies
// installed there, as the anchor's README says; nothing of it enters the
// repository.
type bridge struct {
	dir string // the copy
}

// setupBridge copies the bridge and runs npm ci. Without Node.js and npm it
// returns nil (and says so), unless required.
func setupBridge(w io.Writer, required bool) (*bridge, error) {
	node, nodeErr := exec.LookPath("node")
	_, npmErr := exec.LookPath("npm")
	if nodeErr != nil || npmErr != nil {
		if required {
			return nil, errors.New("-bridge on: node and npm must be on PATH")
		}
		fmt.Fprintf(w, "   seed bridge skipped: Node.js 20+ with npm is not on PATH\n")
		return nil, nil
	}
	fx, err := fixtures.Path()
	if err != nil {
		return nil, err
	}
	src := filepath.Join(filepath.Dir(fx), "anchors", "seed-bridge")
	tmp, err := os.MkdirTemp("", "runlens-seed-bridge-")
	if err != nil {
		return nil, err
	}
	b := &bridge{dir: filepath.Join(tmp, "seed-bridge")}
	if err := copyDir(src, b.dir); err != nil {
		b.close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = b.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		b.close()
		return nil, fmt.Errorf("npm ci in %s: %v\n%s", b.dir, err, tail(out, 2000))
	}
	version, _ := exec.Command(node, "--version").Output()
	fmt.Fprintf(w, "   seed bridge: %s copied to %s, npm ci done, node %s", src, b.dir, version)
	return b, nil
}

func (b *bridge) close() { _ = os.RemoveAll(filepath.Dir(b.dir)) }

func copyDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			continue // node_modules of a previous install, if any
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

var bridgeRate = regexp.MustCompile(`seed-bridge (\d+) msgs in ([0-9.]+) s = (\d+) msg/s`)

// drain starts the bridge's server on a fresh exchange and queue (it
// declares both: the queue classic and durable), preloads the queue while
// the server waits for its client (WAIT_CLIENT=1), then runs the client,
// which counts the events and prints the rate from the first one.
func (b *bridge) drain(url string, bodies [][]byte, log *slog.Logger) (float64, error) {
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	exchange, queue := "runlens.bench.bridge."+suffix, "runlens.bench.bridge."+suffix
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	var serverLog bytes.Buffer
	server := exec.Command("node", "server.js")
	server.Dir = b.dir
	server.Env = append(os.Environ(), "RABBITMQ_URL="+url, "EXCHANGE="+exchange, "QUEUE="+queue, "WAIT_CLIENT=1", "PORT="+strconv.Itoa(port))
	server.Stdout, server.Stderr = &serverLog, &serverLog
	if err := server.Start(); err != nil {
		return 0, err
	}
	conn, err := amqp.Dial(url)
	if err != nil {
		_ = server.Process.Kill()
		return 0, err
	}
	defer conn.Close()
	defer func() {
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(queue, false, false, false)
			_ = ch.ExchangeDelete(exchange, false, false)
		}
	}()
	defer func() {
		_ = server.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = server.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = server.Process.Kill()
			<-done
		}
	}()
	if err := waitQueueBound(conn, exchange, queue, 30*time.Second); err != nil {
		return 0, fmt.Errorf("%v; server output: %s", err, tail(serverLog.Bytes(), 1000))
	}
	if err := publish(url, exchange, bodies, log); err != nil {
		return 0, err
	}
	client := exec.Command("node", "client.js", strconv.Itoa(len(bodies)))
	client.Dir = b.dir
	client.Env = append(os.Environ(), "BRIDGE=http://127.0.0.1:"+strconv.Itoa(port))
	out, err := client.Output()
	m := bridgeRate.FindSubmatch(out)
	if err != nil || m == nil {
		return 0, fmt.Errorf("bridge client: %v: %s; server output: %s", err, tail(out, 500), tail(serverLog.Bytes(), 1000))
	}
	got, _ := strconv.Atoi(string(m[1]))
	secs, _ := strconv.ParseFloat(string(m[2]), 64)
	if got != len(bodies) || secs <= 0 {
		return 0, fmt.Errorf("bridge client: %s", m[0])
	}
	return float64(got) / secs, nil
}

// waitQueueBound waits until the server has declared its queue and bound it
// to the exchange: a publish before would be lost.
func waitQueueBound(conn *amqp.Connection, exchange, queue string, timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		if _, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil); err == nil {
			// The server declares the exchange, then the queue, then binds
			// it: bind it here too (binding is idempotent), so the preload
			// cannot come before the server's bind.
			err = ch.QueueBind(queue, "", exchange, false, nil)
			_ = ch.Close()
			return err
		}
	}
	return fmt.Errorf("the bridge did not declare queue %s within %s", queue, timeout)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
