// Package topology_test runs scripts/topology.sh --check: the whole
// double-proxy topology on loopback (a POP, a data-centre front proxy and
// two sidecars, all the real edge binary, in front of two demo services),
// and asserts the evidence that requests crossed every hop.
package topology_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// portOffsets are the ports the script uses, relative to its base.
var portOffsets = []int{0, 1, 10, 11, 20, 21, 22, 30, 31, 32}

// build compiles one of the repository's commands into dir.
func build(t *testing.T, dir, pkg, name string) string {
	t.Helper()
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// freeBase finds a base port whose every topology port is free on loopback.
func freeBase(t *testing.T) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(400)*100
		if portsFree(base) {
			return base
		}
	}
	t.Fatal("found no free range of loopback ports")
	return 0
}

func portsFree(base int) bool {
	for _, off := range portOffsets {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+off))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

// runScript runs scripts/topology.sh with args and env, bounded by
// timeout: on expiry the script gets SIGTERM, whose trap stops the
// processes it started.
func runScript(t *testing.T, timeout time.Duration, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join("..", "topology.sh")}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("scripts/topology.sh %s did not finish in %v; output:\n%s", strings.Join(args, " "), timeout, out.String())
	}
	return out.String(), err
}

// TestTopologyCheck runs the loopback topology and checks, from the script's
// output, that each service saw the user's address in X-Forwarded-For, an
// x-forwarded-client-cert naming the POP and the data centre, and the
// marker every edge's route config adds; then that every process stopped.
func TestTopologyCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("builds edge and runs the topology")
	}
	for _, tool := range []string{"curl", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed by scripts/topology.sh (.ci/run installs it)", tool)
		}
	}
	dir := t.TempDir()
	edgeBin := build(t, dir, "./cmd/edge", "edge")
	serviceBin := build(t, dir, "./scripts/topology/service", "service")
	user := "127.0.0.1"
	if runtime.GOOS == "linux" {
		user = "127.0.0.2" // all of 127/8 is local: the user is told apart from the hops
	}
	base := freeBase(t)
	start := time.Now()
	out, err := runScript(t, 90*time.Second, []string{
		"EDGE_BIN=" + edgeBin, "SERVICE_BIN=" + serviceBin,
		fmt.Sprintf("EDGE_TOPOLOGY_PORT_BASE=%d", base), "TOPOLOGY_USER_ADDR=" + user,
	}, "--check")
	if err != nil {
		t.Fatalf("scripts/topology.sh --check: %v; output:\n%s", err, out)
	}
	t.Logf("scripts/topology.sh --check passed in %v", time.Since(start).Round(time.Millisecond))
	for _, want := range []string{
		// What each service saw.
		`"service": "a"`,
		`"service": "b"`,
		`"proto": "HTTP/1.1"`, // sidecar a -> service a
		`"proto": "HTTP/2.0"`, // sidecar b -> service b (h2c)
		`"x_forwarded_for": "` + user + `, 127.0.0.1, 127.0.0.1"`,
		`"x_forwarded_proto": "https"`,
		`"x_forwarded_client_cert_elements": 2`,
		`DNS=pop.edge.internal`,
		`DNS=dc.edge.internal`,
		`"hops": "pop, datacenter, sidecar-a"`,
		`"hops": "pop, datacenter, sidecar-b"`,
		// What the script checked.
		"ok: service a: user " + user + " -> pop -> datacenter -> sidecar-a -> service a",
		"ok: service b: user " + user + " -> pop -> datacenter -> sidecar-b -> service b",
		"ok: pop answered 2 requests with 2xx on listener users",
		"ok: datacenter answered 2 requests with 2xx on listener pops",
		"ok: sidecar-a answered 1 requests",
		"ok: sidecar-b answered 1 requests",
		"ok: the data centre refuses a client without a POP certificate",
		"ok: sidecar a refuses a client that is not the data centre",
		"PASS: requests to both services crossed every hop",
		"stopped service-a service-b sidecar-a sidecar-b datacenter pop",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
	if !portsFree(base) {
		t.Errorf("a topology port from %d on is still in use after the script ended", base)
	}
}

// TestTopologyPortInUse checks that the script refuses to start, naming the
// port and the fix, when one of its ports is taken.
func TestTopologyPortInUse(t *testing.T) {
	base := freeBase(t)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+10))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, err := runScript(t, 30*time.Second, []string{
		"EDGE_BIN=/nonexistent", "SERVICE_BIN=/nonexistent", fmt.Sprintf("EDGE_TOPOLOGY_PORT_BASE=%d", base),
	}, "--check")
	if err == nil {
		t.Fatalf("the script succeeded with port %d taken; output:\n%s", base+10, out)
	}
	if want := fmt.Sprintf("127.0.0.1:%d is in use; choose other ports with EDGE_TOPOLOGY_PORT_BASE", base+10); !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}
