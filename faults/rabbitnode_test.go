//go:build faults

package faults

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runlens/runlens/internal/proctest"
)

// rabbitBin holds the RabbitMQ scripts themselves: /usr/sbin/rabbitmqctl
// and /usr/sbin/rabbitmq-server are wrappers that, run as root, switch to
// the rabbitmq user and its HOME (so its Erlang cookie, the main node's).
// Called directly, the scripts take HOME from the environment, so the extra
// nodes and the CLI calls that control them use a per-test cookie, and a
// mistaken command cannot reach the main node rabbit@localhost.
const rabbitBin = "/usr/lib/rabbitmq/bin"

// rabbitNode is an extra RabbitMQ node run by a test as its own OS process
// (rabbitmq-server in the foreground, in its own process group), with its
// own node name, ports and data under the test's temp dir. The main node
// (rabbit@localhost, 5672) is never touched.
type rabbitNode struct {
	t       *testing.T
	short   string // e.g. "rl1-3fa9c2"
	name    string // short@localhost
	port    int    // the AMQP (or AMQPS) listener
	dir     string
	env     []string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// freePort is a free loopback port (see proctest.FreeAddr).
func freePort(t *testing.T) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(proctest.FreeAddr(t))
	var n int
	fmt.Sscan(p, &n)
	return n
}

// erlangHome makes a HOME holding a fresh random .erlang.cookie (mode
// 0400), shared by the nodes of one test and the rabbitmqctl calls.
func erlangHome(t *testing.T) string {
	t.Helper()
	home := filepath.Join(t.TempDir(), "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	cookie := strings.ToUpper(hex.EncodeToString(b[:]))
	if err := os.WriteFile(filepath.Join(home, ".erlang.cookie"), []byte(cookie), 0o400); err != nil {
		t.Fatal(err)
	}
	return home
}

// startRabbitNodes starts one node per listener config (rabbitmq.conf
// lines; "%PORT%" is replaced by the node's port), all at once, and waits
// until each has booted. Node names are <prefix><i>-<random>@localhost. A
// cleanup stops them all (rabbitmqctl stop, then SIGKILL to the process
// group if they do not exit), in parallel, and checks that epmd no longer
// lists them.
func startRabbitNodes(t *testing.T, home, prefix string, confs ...string) []*rabbitNode {
	t.Helper()
	var b [3]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	var nodes []*rabbitNode
	for i, conf := range confs {
		n := &rabbitNode{t: t, short: fmt.Sprintf("%s%d-%s", prefix, i+1, suffix), port: freePort(t), dir: t.TempDir(), done: make(chan struct{})}
		n.name = n.short + "@localhost"
		conf = strings.ReplaceAll(conf, "%PORT%", fmt.Sprint(n.port))
		files := map[string]string{
			"rabbitmq.conf":   conf,
			"enabled_plugins": "[].\n",
			// Replaces /etc/rabbitmq/rabbitmq-env.conf (NODENAME=rabbit@localhost).
			"rabbitmq-env.conf": "ERL_EPMD_ADDRESS=127.0.0.1\n",
		}
		for f, content := range files {
			if err := os.WriteFile(filepath.Join(n.dir, f), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		n.env = rabbitEnv(home,
			"RABBITMQ_CONF_ENV_FILE="+filepath.Join(n.dir, "rabbitmq-env.conf"),
			"RABBITMQ_NODENAME="+n.name,
			fmt.Sprintf("RABBITMQ_DIST_PORT=%d", freePort(t)),
			"RABBITMQ_MNESIA_BASE="+filepath.Join(n.dir, "mnesia"),
			"RABBITMQ_LOG_BASE="+filepath.Join(n.dir, "log"),
			"RABBITMQ_CONFIG_FILE="+filepath.Join(n.dir, "rabbitmq.conf"),
			"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(n.dir, "enabled_plugins"),
			"RABBITMQ_PID_FILE="+filepath.Join(n.dir, "pid"),
			"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		)
		n.logPath = filepath.Join(n.dir, "server.out")
		logf, err := os.Create(n.logPath)
		if err != nil {
			t.Fatal(err)
		}
		n.cmd = exec.Command(filepath.Join(rabbitBin, "rabbitmq-server"))
		n.cmd.Dir, n.cmd.Env = n.dir, n.env
		n.cmd.Stdout, n.cmd.Stderr = logf, logf
		n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := n.cmd.Start(); err != nil {
			logf.Close()
			t.Fatalf("start %s: %v", n.name, err)
		}
		go func() {
			n.waitErr = n.cmd.Wait()
			logf.Close()
			close(n.done)
		}()
		nodes = append(nodes, n)
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Add(1)
			go func() { defer wg.Done(); n.shutdown() }()
		}
		wg.Wait()
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := exec.Command("epmd", "-names").CombinedOutput()
			left := err == nil && strings.Contains(string(out), suffix)
			if !left {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("epmd still lists the test's nodes:\n%s", out)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = n.ctl(3*time.Minute, "wait", filepath.Join(n.dir, "pid"), "--timeout", "150")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s did not boot: %v\n--- %s ---\n%s", nodes[i].name, err, nodes[i].logPath, tail(nodes[i].logs(), 30))
		}
	}
	t.Logf("%d RabbitMQ nodes booted in %s", len(nodes), time.Since(start).Round(time.Millisecond))
	return nodes
}

// rabbitEnv is the environment without any RABBITMQ_* or ERL_* variable of
// ours, plus HOME and extra.
func rabbitEnv(home string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RABBITMQ_") || strings.HasPrefix(kv, "ERL_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "HOME="+home), extra...)
}

func (n *rabbitNode) logs() string {
	b, _ := os.ReadFile(n.logPath)
	s := string(b)
	if l, err := os.ReadFile(filepath.Join(n.dir, "log", n.name+".log")); err == nil {
		s += "\n--- node log ---\n" + string(l)
	}
	return s
}

func (n *rabbitNode) running() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// url is the plain AMQP URL of the node's listener.
func (n *rabbitNode) url() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", n.port) }

// ctl runs rabbitmqctl -q -n <node> args with the test's cookie.
func (n *rabbitNode) ctl(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(rabbitBin, "rabbitmqctl"), append([]string{"-q", "-n", n.name}, args...)...)
	cmd.Env, cmd.Dir = n.env, n.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl -n %s %s: %v\n%s", n.name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (n *rabbitNode) mustCtl(args ...string) string {
	n.t.Helper()
	out, err := n.ctl(2*time.Minute, args...)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// shutdown stops the node (rabbitmqctl stop), and kills its process group
// if it has not exited 30 s later.
func (n *rabbitNode) shutdown() {
	if !n.running() {
		return
	}
	if _, err := n.ctl(45*time.Second, "stop"); err != nil {
		n.t.Logf("stopping %s: %v", n.name, err)
	}
	select {
	case <-n.done:
		return
	case <-time.After(30 * time.Second):
	}
	n.t.Errorf("%s still running 30 s after rabbitmqctl stop; killing it", n.name)
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.done
}

// joinCluster makes n join seed's cluster (stop_app, join_cluster,
// start_app, await_startup).
func (n *rabbitNode) joinCluster(seed *rabbitNode) {
	n.t.Helper()
	n.mustCtl("stop_app")
	n.mustCtl("join_cluster", seed.name)
	n.mustCtl("start_app")
	n.mustCtl("await_startup")
}

// runningNodes lists the cluster's running nodes as n sees them.
func (n *rabbitNode) runningNodes() ([]string, error) {
	out, err := n.ctl(30*time.Second, "cluster_status", "--formatter", "json")
	if err != nil {
		return nil, err
	}
	var st struct {
		Running []string `json:"running_nodes"`
	}
	if err := json.Unmarshal([]byte(jsonPart(out)), &st); err != nil {
		return nil, fmt.Errorf("cluster_status: %v: %q", err, out)
	}
	return st.Running, nil
}

// queueInfo is one row of list_queues name type leader members online.
type queueInfo struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Leader  string   `json:"leader"`
	Members []string `json:"members"`
	Online  []string `json:"online"`
}

// queues lists the node's queues with their leader, members and online
// members (quorum queues and streams).
func (n *rabbitNode) queues() (map[string]queueInfo, error) {
	out, err := n.ctl(30*time.Second, "list_queues", "name", "type", "leader", "members", "online", "--formatter", "json")
	if err != nil {
		return nil, err
	}
	var rows []queueInfo
	if err := json.Unmarshal([]byte(jsonPart(out)), &rows); err != nil {
		return nil, fmt.Errorf("list_queues: %v: %q", err, out)
	}
	m := map[string]queueInfo{}
	for _, r := range rows {
		m[r.Name] = r
	}
	return m, nil
}

// jsonPart drops anything rabbitmqctl prints before the JSON document.
func jsonPart(s string) string {
	if i := strings.IndexAny(s, "[{"); i > 0 {
		return s[i:]
	}
	return s
}
