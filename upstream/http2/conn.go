package http2

import (
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2"
)

// conn is one pooled HTTP/2 connection.
type conn struct {
	cc *http2.ClientConn
	// active counts streams the pool has put on this connection and not yet
	// finished (response body at EOF or closed, or RoundTrip failed). It is
	// the load measure picks compare; x/net's own count sits behind the
	// connection's mutex.
	active atomic.Int32
	// retired is set once the connection left the live list (GOAWAY, lost,
	// closing). Guarded by p.mu.
	retired bool
	// opened is set once the connection joined the pool (after the
	// handshake). Guarded by p.mu.
	opened bool
	// closed is set when the socket closed. Guarded by p.mu.
	closed bool
}

// release ends one stream on c.
func (c *conn) release() { c.active.Add(-1) }

// notifyConn wraps the TCP connection under a pooled HTTP/2 connection (or
// under its TLS layer) so that the pool learns the moment it closes, however
// that happens: the peer went away, a PING went unanswered, a GOAWAY drained
// it, or the pool closed it. x/net closes the socket on every one of those
// paths; wrapping the raw connection rather than the *tls.Conn keeps x/net's
// own handling of TLS (ConnectionState, the forced close of a stuck TLS
// close) intact.
type notifyConn struct {
	net.Conn
	once    sync.Once
	onClose func()
}

func (n *notifyConn) Close() error {
	err := n.Conn.Close()
	n.once.Do(n.onClose)
	return err
}
