//go:build linux

package http1

import (
	"syscall"
	"unsafe"
)

// peekSocket looks at the TCP socket without blocking or consuming:
// recv(MSG_PEEK|MSG_DONTWAIT) fails with EAGAIN on a healthy idle
// connection, returns 0 once the server has closed it, and returns data if
// the server sent something unsolicited (e.g. a 408). ok is false if the
// peek could not be made.
func (c *conn) peekSocket() (alive, ok bool) {
	c.peekN, c.peekErr = 0, 0
	if err := c.rc.Read(c.peekFn); err != nil {
		return false, false
	}
	return c.peekErr == syscall.EAGAIN, true
}

// peekCallback is called by RawConn.Read with the socket's descriptor. It
// calls recvfrom directly: syscall.Recvfrom would allocate a Sockaddr.
func (c *conn) peekCallback(fd uintptr) bool {
	n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd,
		uintptr(unsafe.Pointer(&c.peekBuf[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	c.peekN, c.peekErr = int(n), errno
	return true
}
