package hotrestart

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProtocolVersion is the version of the control protocol. A child that
// speaks another version is refused with a reason and the parent keeps
// serving.
const ProtocolVersion = 1

// maxMessage bounds one control message (a seqpacket datagram).
const maxMessage = 64 << 10

// Operations.
const (
	opRestart   = "restart"   // edge restart -> live process
	opHello     = "hello"     // child -> parent, first message
	opWelcome   = "welcome"   // parent -> child, answer to hello
	opFailed    = "failed"    // child -> parent: the child gives up
	opConn      = "conn"      // parent -> child: an idle connection (with its fd)
	opTerminate = "terminate" // child -> parent: finish now (a third generation starts)
	opResult    = "result"    // live process -> edge restart
)

// message is every control message; fields unused by an op are empty.
type message struct {
	Op      string `json:"op"`
	Version int    `json:"version,omitempty"`
	PID     int    `json:"pid,omitempty"`
	Epoch   int    `json:"epoch,omitempty"`
	// Error is the reason a request failed (result, welcome, failed).
	Error string `json:"error,omitempty"`
	// Retry says the request reached a process that is no longer the
	// newest; asking again reaches the newest.
	Retry bool `json:"retry,omitempty"`
	// TicketKeys are the parent's exported TLS session ticket keys.
	TicketKeys []byte `json:"ticket_keys,omitempty"`
	// Listeners are the parent's sockets as "network address" keys; the
	// child must inherit every one of them it also serves.
	Listeners []string `json:"listeners,omitempty"`
	// Listener names the listener a handed-over connection belongs to.
	Listener string `json:"listener,omitempty"`
	// Staples are the OCSP staples the parent serves.
	Staples [][]byte `json:"staples,omitempty"`
	// QUICKeys are the stateless reset and address token keys every
	// generation's QUIC transports share (32 bytes each).
	QUICKeys []byte `json:"quic_keys,omitempty"`
	// Packets names, in order, the UDP sockets whose forwarding socket
	// (see hotrestart/quicfwd) the welcome carries as descriptors.
	Packets []string `json:"packets,omitempty"`
	// Binary is the edge version of the sender, for messages and logs.
	Binary string `json:"binary,omitempty"`
}

// send writes m as one datagram, with fds attached when given.
func send(c *net.UnixConn, m *message, fds ...int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("control: encode %s: %w", m.Op, err)
	}
	if len(b) > maxMessage {
		return fmt.Errorf("control: %s message of %d bytes exceeds %d", m.Op, len(b), maxMessage)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("control: send %s: %w", m.Op, err)
	}
	return nil
}

// recv reads one datagram into m and returns the descriptors it carried
// (the caller owns them). An orderly end of the peer is io.EOF.
func recv(c *net.UnixConn, buf, oob []byte, m *message) ([]int, error) {
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	if oobn > 0 {
		scms, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, fmt.Errorf("control: ancillary data: %w", err)
		}
		for _, scm := range scms {
			got, err := syscall.ParseUnixRights(&scm)
			if err != nil {
				return nil, fmt.Errorf("control: ancillary data: %w", err)
			}
			fds = append(fds, got...)
		}
	}
	if n == 0 && oobn == 0 {
		return nil, errEOF
	}
	if flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0 {
		closeFDs(fds)
		return nil, errors.New("control: message truncated")
	}
	*m = message{}
	if err := json.Unmarshal(buf[:n], m); err != nil {
		closeFDs(fds)
		return nil, fmt.Errorf("control: decode: %w", err)
	}
	return fds, nil
}

var errEOF = errors.New("control: peer closed the connection")

func closeFDs(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// RuntimeDir is the owner-only directory that holds the control sockets:
// $EDGE_RUNTIME_DIR, else $XDG_RUNTIME_DIR/edge, else edge-<uid> in the
// temporary directory. It is created with mode 0700; an existing one must
// belong to this user and be closed to others.
func RuntimeDir() (string, error) {
	dir := os.Getenv("EDGE_RUNTIME_DIR")
	if dir == "" {
		if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
			dir = filepath.Join(x, "edge")
		} else {
			dir = filepath.Join(os.TempDir(), "edge-"+strconv.Itoa(os.Getuid()))
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("runtime directory %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("runtime directory %s: %w", dir, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Getuid() || fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("runtime directory %s must be a directory owned by uid %d with mode 0700 "+
			"(fix: chmod 700 it, or set EDGE_RUNTIME_DIR to another directory)", dir, os.Getuid())
	}
	return dir, nil
}

// SocketPath is the control socket of the edge started with baseID.
func SocketPath(baseID int) (string, error) {
	dir, err := RuntimeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "edge-"+strconv.Itoa(baseID)+".sock"), nil
}

// peerCred returns the credentials of the process at the other end of c.
func peerCred(c *net.UnixConn) (*syscall.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Ucred
	var serr error
	if err := rc.Control(func(fd uintptr) {
		cred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, serr
}

// parentPID reads the parent process id of pid from /proc.
func parentPID(pid int32) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strconv.Atoi(f[1])
}

// dial connects to the control socket at path.
func dial(path string, timeout time.Duration) (*net.UnixConn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("unixpacket", path)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// Result is what a successful restart reports.
type Result struct {
	// PID is the new process.
	PID int
	// Epoch is its restart generation.
	Epoch int
}

// Restart asks the edge running with baseID to hot restart and waits until
// the new process is ready or has failed (up to timeout). The error of a
// failed restart is the new process's own (a config error with its line
// and column, say); the running edge keeps serving then.
func Restart(baseID int, timeout time.Duration) (Result, error) {
	path, err := SocketPath(baseID)
	if err != nil {
		return Result{}, err
	}
	deadline := time.Now().Add(timeout)
	for {
		c, err := dial(path, 5*time.Second)
		if err != nil {
			if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
				return Result{}, fmt.Errorf("no edge is running with --base-id %d (no control socket at %s)", baseID, path)
			}
			return Result{}, fmt.Errorf("control socket %s: %w", path, err)
		}
		res, retry, err := restartOnce(c, deadline)
		c.Close()
		if !retry || time.Now().After(deadline) {
			return res, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func restartOnce(c *net.UnixConn, deadline time.Time) (Result, bool, error) {
	c.SetDeadline(deadline)
	if err := send(c, &message{Op: opRestart, Version: ProtocolVersion, PID: os.Getpid()}); err != nil {
		return Result{}, false, err
	}
	var m message
	buf := make([]byte, maxMessage)
	fds, err := recv(c, buf, nil, &m)
	closeFDs(fds)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return Result{}, false, errors.New("no answer from the running edge before the timeout; the restart may still finish: check its log")
		}
		return Result{}, false, fmt.Errorf("reading the answer: %w", err)
	}
	if m.Op != opResult {
		return Result{}, false, fmt.Errorf("unexpected answer %q from the running edge", m.Op)
	}
	if m.Error != "" {
		return Result{}, m.Retry, errors.New(m.Error)
	}
	return Result{PID: m.PID, Epoch: m.Epoch}, false, nil
}
