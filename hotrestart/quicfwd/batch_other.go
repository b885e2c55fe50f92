//go:build !linux

package quicfwd

import "golang.org/x/net/ipv4"

// batchReader reads one datagram per call where recvmmsg(2) is not used.
type batchReader struct{}

func (r *batchReader) init() {}

func (r *batchReader) read(c *Conn, s *readState, ms []ipv4.Message, _ int) (int, error) {
	return c.readUDPOne(s, ms)
}
