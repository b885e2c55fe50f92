//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package http1

// peekSocket is not implemented here; alive assumes a live connection.
func (c *conn) peekSocket() (alive, ok bool) { return true, false }

// peekCallback is unused here.
func (c *conn) peekCallback(fd uintptr) bool { return true }
