//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package http1

import "syscall"

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

// peekCallback is called by RawConn.Read with the socket's descriptor.
func (c *conn) peekCallback(fd uintptr) bool {
	n, _, err := syscall.Recvfrom(int(fd), c.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	c.peekN, c.peekErr = n, 0
	if errno, ok := err.(syscall.Errno); ok {
		c.peekErr = errno
	} else if err != nil {
		c.peekErr = syscall.EIO
	}
	return true
}
