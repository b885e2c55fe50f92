package hotrestart

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRuntimeDirMustBeOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rt")
	t.Setenv("EDGE_RUNTIME_DIR", dir)
	got, err := RuntimeDir()
	if err != nil || got != dir {
		t.Fatalf("RuntimeDir = %q, %v", got, err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("created with mode %v, want 0700", fi.Mode().Perm())
	}
	os.Chmod(dir, 0o755)
	if _, err := RuntimeDir(); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Errorf("a directory open to others: err %v, want the fix named", err)
	}
}

// TestMessagesCarryDescriptors sends a message with a descriptor over a
// seqpacket pair and checks both arrive together, and that the peer's
// credentials are this process's.
func TestMessagesCarryDescriptors(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	a, b := conn(fds[0]), conn(fds[1])
	defer a.Close()
	defer b.Close()

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := send(a, &message{Op: opConn, Listener: "public"}, int(w.Fd())); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var m message
	got, err := recv(b, make([]byte, maxMessage), make([]byte, syscall.CmsgSpace(4*4)), &m)
	if err != nil {
		t.Fatal(err)
	}
	if m.Op != opConn || m.Listener != "public" || len(got) != 1 {
		t.Fatalf("got %+v with %d descriptors", m, len(got))
	}
	// The descriptor is the pipe's write end: what is written through it
	// comes out of r.
	wf := os.NewFile(uintptr(got[0]), "passed")
	wf.WriteString("through")
	wf.Close()
	buf := make([]byte, 16)
	n, _ := r.Read(buf)
	if string(buf[:n]) != "through" {
		t.Errorf("read %q through the passed descriptor", buf[:n])
	}
	cred, err := peerCred(b)
	if err != nil || int(cred.Pid) != os.Getpid() || int(cred.Uid) != os.Getuid() {
		t.Errorf("peer credentials %+v, %v", cred, err)
	}
	if ppid, err := parentPID(int32(os.Getpid())); err != nil || ppid != os.Getppid() {
		t.Errorf("parentPID = %d, %v; want %d", ppid, err, os.Getppid())
	}
}
