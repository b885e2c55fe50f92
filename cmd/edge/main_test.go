package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot(&out, &errOut)
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func TestValidateReportsEveryErrorWithPosition(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte(`listeners:
  - name: public
    address: 127.0.0.1:8080
    route_config: mian
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: nope}
clusters: []
`), 0o644)
	_, stderr, err := runCLI(t, "validate", "-c", path)
	if err == nil {
		t.Fatal("validate accepted a bad config")
	}
	for _, want := range []string{
		"bad.yaml:4:19: listeners[0].route_config: unknown route_config \"mian\"",
		"bad.yaml:12:30: route_configs[0].virtual_hosts[0].routes[0].route.cluster: unknown cluster \"nope\"",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestValidateOK(t *testing.T) {
	stdout, _, err := runCLI(t, "validate", "-c", "../../configs/sidecar.yaml")
	if err != nil || !strings.Contains(stdout, "ok (1 listeners, 1 route configs, 1 clusters)") {
		t.Errorf("validate sidecar.yaml: %q, %v", stdout, err)
	}
}

func TestValidateNeedsAFile(t *testing.T) {
	_, stderr, err := runCLI(t, "validate")
	if err == nil || !strings.Contains(stderr, "-c FILE") {
		t.Errorf("validate without -c: %q, %v", stderr, err)
	}
}

func TestVersion(t *testing.T) {
	stdout, _, err := runCLI(t, "version")
	if err != nil || !strings.HasPrefix(stdout, "edge ") {
		t.Errorf("version: %q, %v", stdout, err)
	}
}

func TestRunRejectsBadLogLevel(t *testing.T) {
	_, stderr, err := runCLI(t, "run", "--log-level", "loud")
	if err == nil || !strings.Contains(stderr, "--log-level") {
		t.Errorf("run --log-level loud: %q, %v", stderr, err)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--base-id", "-1"}, "--base-id -1: use a number from 0"},
		{[]string{"--drain-time", "-5s"}, "--drain-time -5s: use a positive duration"},
		{[]string{"--drain-time", "10s", "--parent-shutdown-time", "5s"}, "must not be shorter than --drain-time"},
	} {
		_, stderr, err := runCLI(t, append([]string{"run"}, c.args...)...)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("run %v: %q, %v; want %q", c.args, stderr, err, c.want)
		}
	}
}
