package hotrestart

import (
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWelcomeRefusesAnotherProtocolVersion runs a real child process (this
// test binary, re-executed) that greets with protocol version 99: the
// parent refuses it, naming both versions, and records the reason for
// edge restart.
func TestWelcomeRefusesAnotherProtocolVersion(t *testing.T) {
	if path := os.Getenv("HOTRESTART_TEST_HELLO"); path != "" {
		c, err := dial(path, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		send(c, &message{Op: opHello, Version: 99, PID: os.Getpid(), Binary: "future"})
		var m message
		if _, err := recv(c, make([]byte, maxMessage), nil, &m); err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("welcome error: " + m.Error + "\n")
		return
	}
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := net.Listen("unixpacket", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := &Process{o: Options{Binary: "now"}, log: slog.New(slog.DiscardHandler), restarting: true}
	cmd := exec.Command(os.Args[0], "-test.run=^TestWelcomeRefusesAnotherProtocolVersion$")
	cmd.Env = append(os.Environ(), "HOTRESTART_TEST_HELLO="+path)
	out := make(chan []byte, 1)
	go func() { b, _ := cmd.CombinedOutput(); out <- b }()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	p.handle(c.(*net.UnixConn))
	got := string(<-out)
	if !strings.Contains(got, "welcome error: the new binary (future) speaks control protocol version 99 and this edge (now) speaks 1") {
		t.Errorf("the child heard:\n%s", got)
	}
	if p.child == nil || !strings.Contains(p.child.failure, "version 99") {
		t.Errorf("the refusal is not recorded for edge restart: %+v", p.child)
	}
}

// TestWelcomeRefusesAStranger: a hello from a process that is not this
// edge's child (here: this very process) gets nothing.
func TestWelcomeRefusesAStranger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := net.Listen("unixpacket", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := &Process{o: Options{Binary: "now"}, log: slog.New(slog.DiscardHandler), restarting: true,
		exportKeys: func() []byte { return []byte("secret keys") }}
	reply := make(chan message, 1)
	go func() {
		c, err := dial(path, 5*time.Second)
		if err != nil {
			reply <- message{Error: err.Error()}
			return
		}
		defer c.Close()
		send(c, &message{Op: opHello, Version: ProtocolVersion, PID: os.Getpid()})
		var m message
		recv(c, make([]byte, maxMessage), nil, &m)
		reply <- m
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	p.handle(c.(*net.UnixConn))
	m := <-reply
	if !strings.Contains(m.Error, "is not a child of this edge") || m.TicketKeys != nil {
		t.Errorf("a stranger's hello got %+v", m)
	}
}
