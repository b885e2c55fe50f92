package quicfwd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// pairSendBuffer is the send buffer asked for on each end of a pair (the
// kernel caps it at net.core.wmem_max). A connected datagram unix socket
// queues as many datagrams as its sender's buffer holds: the default
// (about 200 KiB) holds some 90 full-size forwarded packets.
const pairSendBuffer = 4 << 20

// NewPair creates the connected pair of SOCK_DGRAM unix sockets that
// forwarded packets travel on, both close-on-exec. The parent keeps
// parentEnd (for Handoff) and passes childEnd to the child (for ForwardOlder),
// typically with SCM_RIGHTS over the restart control socket, then closes its
// copy of childEnd; each side turns its file into a connection with
// FileUnixConn and then closes the file. The child notices that the parent
// is gone when no descriptor of parentEnd is left open.
func NewPair() (parentEnd, childEnd *os.File, err error) {
	return newPair(pairSendBuffer)
}

func newPair(sendBuffer int) (parentEnd, childEnd *os.File, err error) {
	// SOCK_CLOEXEC is not portable; the fork lock keeps a concurrent
	// fork+exec from inheriting the sockets before they are marked.
	syscall.ForkLock.RLock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, fmt.Errorf("quicfwd: creating the forwarding socket pair: %w", os.NewSyscallError("socketpair", err))
	}
	if sendBuffer > 0 {
		for _, fd := range fds {
			// Best effort: a smaller buffer only means earlier drops.
			_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, sendBuffer)
		}
	}
	return os.NewFile(uintptr(fds[0]), "quicfwd-parent"), os.NewFile(uintptr(fds[1]), "quicfwd-child"), nil
}

// FileUnixConn returns a connection on the datagram unix socket f (an end
// made by NewPair, possibly received from another process). The connection
// has its own descriptor: the caller still closes f.
func FileUnixConn(f *os.File) (*net.UnixConn, error) {
	if f == nil {
		return nil, errors.New("quicfwd: FileUnixConn needs a file, got nil")
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("quicfwd: socket from file %q: %w", f.Name(), err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("quicfwd: file %q is a %T, not a unix socket; pass an end made by NewPair", f.Name(), c)
	}
	typ, err := socketType(uc)
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("quicfwd: socket type of file %q: %w", f.Name(), err)
	}
	if typ != syscall.SOCK_DGRAM {
		uc.Close()
		return nil, fmt.Errorf("quicfwd: file %q is not a datagram socket (type %d); pass an end made by NewPair", f.Name(), typ)
	}
	return uc, nil
}

func socketType(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var typ int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		typ, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, os.NewSyscallError("getsockopt", serr)
	}
	return typ, nil
}
