package quicfwd

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/ipv4"
)

// maxBatch is the most datagrams one ReadBatch returns (quic-go asks for 8).
const maxBatch = 16

// Read modes.
const (
	modeDirect  uint32 = iota // read the UDP socket
	modeHandoff               // read only what the next generation forwards
)

// aLongTimeAgo is a read deadline that has passed: it makes a blocked read
// return at once and a new one fail before it reads anything.
var aLongTimeAgo = time.Unix(1, 0)

var errBuffers = errors.New("quicfwd: ReadBatch needs exactly one buffer per message")

// Conn is the net.PacketConn a generation hands to quic.Transport in place of
// its handle on the shared UDP socket. It forwards the packets of other
// generations (ForwardOlder, the child) or reads only the packets forwarded to
// it (Handoff, the parent); see the package documentation.
//
// Conn keeps what quic-go gets from a *net.UDPConn: it implements
// quic.OOBCapablePacketConn and quic-go's batch read (ReadBatch, recvmmsg on
// Linux), so ECN, packet info, GSO and the don't-fragment bit stay on.
//
// All methods are safe for concurrent use. Reads are meant to come from one
// goroutine at a time, as quic.Transport does: a second concurrent reader
// works but allocates scratch buffers for itself.
type Conn struct {
	udp   *net.UDPConn
	raw   syscall.RawConn // udp's, for batched reads
	epoch byte
	log   *slog.Logger

	mode atomic.Uint32
	fwd  atomic.Pointer[forwarder]
	src  atomic.Pointer[net.UnixConn]

	busy  atomic.Bool // rs is in use by a reader
	rs    *readState
	addrs addrCache

	forwarded      atomic.Uint64
	forwardDropped atomic.Uint64
	received       atomic.Uint64
	malformed      atomic.Uint64
	warnedWrite    atomic.Bool

	ctl       sync.Mutex // serialises mode changes, read deadlines and Close
	rdeadline time.Time  // the read deadline the caller set
	closed    bool
}

// forwarder is the socket that packets of other generations go to.
type forwarder struct {
	dst *net.UnixConn
	raw syscall.RawConn
}

// readState is a reader's scratch space, reused from read to read.
type readState struct {
	batch batchReader
	aps   [maxBatch]netip.AddrPort
	buf   []byte // one forwarded datagram, encoded or received

	// writeDatagram's argument and result.
	wbuf []byte
	werr error
	wfn  func(fd uintptr) bool
}

func newReadState() *readState {
	s := &readState{buf: make([]byte, maxDatagram+1)}
	s.batch.init()
	s.wfn = s.writeDatagram
	return s
}

var (
	_ net.PacketConn            = (*Conn)(nil)
	_ quic.OOBCapablePacketConn = (*Conn)(nil)
	_ interface {
		ReadBatch([]ipv4.Message, int) (int, error)
	} = (*Conn)(nil)
)

// New wraps udp, this process's handle on the shared UDP socket, for the
// generation epoch (its low 8 bits are the marker NewCIDGenerator(epoch)
// puts in connection IDs; use the same epoch for both). The Conn owns udp and
// closes it on Close. logger (nil: discard) gets a line per mode change,
// never one per packet.
//
// It takes a *net.UDPConn rather than any net.PacketConn because it passes
// on the socket's abilities (recvmmsg, ECN, GSO) and relies on its read
// deadline to stop reading at Handoff.
func New(udp *net.UDPConn, epoch uint32, logger *slog.Logger) (*Conn, error) {
	if udp == nil {
		return nil, errors.New("quicfwd: New needs the UDP socket, got nil")
	}
	raw, err := udp.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("quicfwd: getting the UDP socket's raw connection: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Conn{
		udp:   udp,
		raw:   raw,
		epoch: byte(epoch),
		log:   logger.With("epoch", epoch),
		rs:    newReadState(),
	}, nil
}

// ForwardOlder makes the Conn (the child's) send every packet it reads whose
// destination connection ID marks another generation to dst, a SOCK_DGRAM
// unix socket whose other end the parent passes to Handoff, instead of
// returning it. Call it before quic.Transport starts reading, so that no
// packet of the parent's connections reaches this generation's quic-go, which
// would drop it or answer it with a stateless reset.
//
// The Conn owns dst from then on. Sending never blocks reads: a packet that
// finds the parent's queue full is dropped (counted in ForwardDropped), as
// the network could have dropped it. When the parent's end is gone
// (ECONNREFUSED, ENOTCONN, EPIPE, ECONNRESET), forwarding stops by itself as
// if StopForwarding had been called. Calling ForwardOlder again replaces dst.
func (c *Conn) ForwardOlder(dst *net.UnixConn) error {
	if dst == nil {
		return errors.New("quicfwd: ForwardOlder needs the unix socket to the parent, got nil")
	}
	raw, err := dst.SyscallConn()
	if err != nil {
		return fmt.Errorf("quicfwd: getting the forwarding socket's raw connection: %w", err)
	}
	c.ctl.Lock()
	defer c.ctl.Unlock()
	if c.closed {
		return fmt.Errorf("quicfwd: ForwardOlder on a closed Conn: %w", net.ErrClosed)
	}
	if old := c.fwd.Swap(&forwarder{dst: dst, raw: raw}); old != nil {
		old.dst.Close()
	}
	c.log.Info("quicfwd: forwarding packets of other generations")
	return nil
}

// StopForwarding ends ForwardOlder, once the parent is gone, and closes the
// socket to it. From then on every packet read is returned to quic-go: one
// that still belongs to a parent's connection finds no connection and is
// dropped or answered with a stateless reset (if the Transport has a
// StatelessResetKey), which tells the client at once that the connection is
// gone instead of leaving it to time out.
func (c *Conn) StopForwarding() {
	if fw := c.fwd.Load(); fw != nil {
		c.stopForwarding(fw, "stopped", nil)
	}
}

func (c *Conn) stopForwarding(fw *forwarder, reason string, cause error) {
	if !c.fwd.CompareAndSwap(fw, nil) {
		return
	}
	fw.dst.Close()
	attrs := []any{"reason", reason, "forwarded", c.forwarded.Load(), "forward_dropped", c.forwardDropped.Load()}
	if cause != nil {
		attrs = append(attrs, "error", cause)
	}
	c.log.Info("quicfwd: stopped forwarding packets of other generations", attrs...)
}

// Handoff makes the Conn (the parent's) stop reading the UDP socket and from
// then on return only the packets that arrive on src, the unix socket the
// child forwards to. A read blocked on the UDP socket returns at once
// (through its read deadline) and goes on reading src; a packet the UDP
// socket already handed over is returned normally, so none is lost or
// delivered twice. After Handoff returns, this Conn starts no new read of the
// UDP socket. Writes still go to the UDP socket, the one the child reads, so
// replies leave from the address clients know.
//
// The Conn owns src from then on. Handoff can be called once.
func (c *Conn) Handoff(src *net.UnixConn) error {
	if src == nil {
		return errors.New("quicfwd: Handoff needs the unix socket from the child, got nil")
	}
	c.ctl.Lock()
	defer c.ctl.Unlock()
	if c.closed {
		return fmt.Errorf("quicfwd: Handoff on a closed Conn: %w", net.ErrClosed)
	}
	if c.mode.Load() == modeHandoff {
		return errors.New("quicfwd: Handoff called twice")
	}
	if err := src.SetReadDeadline(c.rdeadline); err != nil {
		return fmt.Errorf("quicfwd: setting the read deadline of the socket from the child: %w", err)
	}
	c.src.Store(src)
	c.mode.Store(modeHandoff)
	// The mode is published first: a reader that saw the old mode and calls
	// into the UDP socket after this line fails before reading anything.
	if err := c.udp.SetReadDeadline(aLongTimeAgo); err != nil {
		return fmt.Errorf("quicfwd: interrupting reads of the UDP socket: %w", err)
	}
	c.log.Info("quicfwd: handed the UDP socket off; reading forwarded packets only")
	return nil
}

// Stats is a snapshot of a Conn's forwarding state and counters.
type Stats struct {
	// Forwarding is true between ForwardOlder and StopForwarding (or the
	// parent's end going away).
	Forwarding bool
	// HandedOff is true after Handoff.
	HandedOff bool
	// Forwarded counts packets sent to the other generation.
	Forwarded uint64
	// ForwardDropped counts packets of another generation that could not be
	// sent (its queue was full, its socket went away, or a write failed) and
	// were dropped.
	ForwardDropped uint64
	// Received counts forwarded packets returned to quic-go after Handoff.
	Received uint64
	// Malformed counts forwarded datagrams dropped because they did not
	// decode.
	Malformed uint64
}

// Stats returns the Conn's current state and counters.
func (c *Conn) Stats() Stats {
	return Stats{
		Forwarding:     c.fwd.Load() != nil,
		HandedOff:      c.mode.Load() == modeHandoff,
		Forwarded:      c.forwarded.Load(),
		ForwardDropped: c.forwardDropped.Load(),
		Received:       c.received.Load(),
		Malformed:      c.malformed.Load(),
	}
}

// ReadFrom reads the next packet for this generation.
func (c *Conn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, _, _, ap, err := c.readMsg(p, nil)
	if err != nil {
		return n, nil, err
	}
	return n, c.addrs.get(ap), nil
}

// ReadMsgUDP reads the next packet for this generation with its control
// messages, as (*net.UDPConn).ReadMsgUDP does.
func (c *Conn) ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	n, oobn, flags, ap, err := c.readMsg(b, oob)
	if err != nil {
		return n, oobn, flags, nil, err
	}
	return n, oobn, flags, c.addrs.get(ap), nil
}

// ReadMsgUDPAddrPort is ReadMsgUDP returning a netip.AddrPort.
func (c *Conn) ReadMsgUDPAddrPort(b, oob []byte) (n, oobn, flags int, addr netip.AddrPort, err error) {
	return c.readMsg(b, oob)
}

func (c *Conn) readMsg(b, oob []byte) (n, oobn, flags int, ap netip.AddrPort, err error) {
	for {
		m := c.mode.Load()
		if m == modeHandoff {
			s := c.acquire()
			n, oobn, flags, ap, err = c.readHandoff(s, b, oob)
			c.release(s)
		} else {
			n, oobn, flags, ap, err = c.udp.ReadMsgUDPAddrPort(b, oob)
			if err == nil {
				if fw := c.fwd.Load(); fw != nil && c.foreign(b[:n]) {
					s := c.acquire()
					c.forward(s, fw, ap, oob[:oobn], b[:n])
					c.release(s)
					continue
				}
			}
		}
		if err != nil && c.mode.Load() != m {
			continue // interrupted by Handoff: read the other source
		}
		return n, oobn, flags, ap, err
	}
}

// ReadBatch is the batch read quic-go uses when the connection offers it
// (instead of wrapping the socket itself, which would bypass this Conn). It
// fills ms[:n] and returns n >= 1, or an error.
func (c *Conn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	for i := range ms {
		if len(ms[i].Buffers) != 1 {
			return 0, errBuffers
		}
	}
	s := c.acquire()
	defer c.release(s)
	for {
		m := c.mode.Load()
		var err error
		if m == modeHandoff {
			var ap netip.AddrPort
			m0 := &ms[0]
			m0.N, m0.NN, m0.Flags, ap, err = c.readHandoff(s, m0.Buffers[0], m0.OOB)
			if err == nil {
				m0.Addr = c.addrs.get(ap)
				return 1, nil
			}
		} else {
			var n int
			n, err = s.batch.read(c, s, ms, flags)
			if err == nil {
				if n = c.sortBatch(s, ms[:n]); n > 0 {
					return n, nil
				}
				continue // every datagram was forwarded
			}
		}
		if c.mode.Load() != m {
			continue // interrupted by Handoff: read the other source
		}
		return 0, err
	}
}

// sortBatch forwards the datagrams of other generations, moves the others to
// the front of ms, sets their addresses and returns how many there are.
func (c *Conn) sortBatch(s *readState, ms []ipv4.Message) int {
	fw := c.fwd.Load()
	w := 0
	for i := range ms {
		m := &ms[i]
		pkt := m.Buffers[0][:m.N]
		if fw != nil && c.foreign(pkt) {
			c.forward(s, fw, s.aps[i], m.OOB[:m.NN], pkt)
			fw = c.fwd.Load() // nil if the parent went away
			continue
		}
		if w != i {
			d := &ms[w]
			d.N = copy(d.Buffers[0], pkt)
			d.NN = copy(d.OOB, m.OOB[:m.NN])
			d.Flags = m.Flags
		}
		ms[w].Addr = c.addrs.get(s.aps[i])
		w++
	}
	return w
}

// readUDPOne reads one datagram into ms[0] (the batch read where recvmmsg is
// not used).
func (c *Conn) readUDPOne(s *readState, ms []ipv4.Message) (int, error) {
	m := &ms[0]
	n, oobn, flags, ap, err := c.udp.ReadMsgUDPAddrPort(m.Buffers[0], m.OOB)
	if err != nil {
		return 0, err
	}
	m.N, m.NN, m.Flags = n, oobn, flags
	s.aps[0] = ap
	return 1, nil
}

// readHandoff returns the next forwarded packet that is this generation's,
// passing on those of another generation when this one forwards too.
func (c *Conn) readHandoff(s *readState, b, oob []byte) (n, oobn, flags int, ap netip.AddrPort, err error) {
	src := c.src.Load()
	for {
		k, err := src.Read(s.buf)
		if err != nil {
			return 0, 0, 0, ap, err
		}
		if k > maxDatagram {
			c.malformed.Add(1)
			continue
		}
		d, err := decodeDatagram(s.buf[:k])
		if err != nil {
			c.malformed.Add(1)
			continue
		}
		if fw := c.fwd.Load(); fw != nil && c.foreign(d.payload) {
			// A middle generation passes on its parent's packets as they came.
			if d.hops >= maxHops {
				c.forwardDropped.Add(1)
				continue
			}
			s.buf[offHops]++
			c.writeForward(s, fw, s.buf[:k])
			continue
		}
		n = copy(b, d.payload)
		if n < len(d.payload) {
			flags = syscall.MSG_TRUNC
		}
		if len(d.oob) <= len(oob) {
			oobn = copy(oob, d.oob)
		}
		c.received.Add(1)
		return n, oobn, flags, d.src, nil
	}
}

// foreign reports whether pkt's connection ID marks another generation.
func (c *Conn) foreign(pkt []byte) bool {
	e, ok := EpochOf(pkt)
	return ok && e != c.epoch
}

// forward encodes a packet of another generation and sends it.
func (c *Conn) forward(s *readState, fw *forwarder, src netip.AddrPort, oob, pkt []byte) {
	k := encodeDatagram(s.buf, src, oob, pkt)
	if k == 0 {
		c.forwardDropped.Add(1)
		return
	}
	c.writeForward(s, fw, s.buf[:k])
}

// writeForward sends one datagram without waiting: the reads that feed this
// generation's own connections must not stall behind a slow parent.
func (c *Conn) writeForward(s *readState, fw *forwarder, d []byte) {
	s.wbuf, s.werr = d, nil
	err := fw.raw.Write(s.wfn)
	s.wbuf = nil
	if err == nil {
		err = s.werr
	}
	if err == nil {
		c.forwarded.Add(1)
		return
	}
	c.forwardDropped.Add(1)
	switch {
	case errors.Is(err, syscall.EAGAIN):
		// The parent's queue is full: drop, as a congested network would.
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOTCONN),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET):
		c.stopForwarding(fw, "the parent's socket is gone", err)
	case errors.Is(err, net.ErrClosed):
		// StopForwarding or Close raced with this write.
	default:
		if c.warnedWrite.CompareAndSwap(false, true) {
			c.log.Warn("quicfwd: forwarding a packet failed; dropping it (later failures are only counted)", "error", err)
		}
	}
}

// writeDatagram is the RawConn.Write callback: one non-blocking write,
// whatever its outcome (true: do not wait for the socket to be writable).
func (s *readState) writeDatagram(fd uintptr) bool {
	for {
		_, err := syscall.Write(int(fd), s.wbuf)
		if err == syscall.EINTR {
			continue
		}
		s.werr = err
		return true
	}
}

// acquire returns the reader's scratch space, or fresh space for a reader
// that runs concurrently with another.
func (c *Conn) acquire() *readState {
	if c.busy.CompareAndSwap(false, true) {
		return c.rs
	}
	return newReadState()
}

func (c *Conn) release(s *readState) {
	if s == c.rs {
		c.busy.Store(false)
	}
}

// WriteTo writes a packet to the UDP socket.
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) { return c.udp.WriteTo(p, addr) }

// WriteMsgUDP writes a packet with control messages to the UDP socket.
func (c *Conn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	return c.udp.WriteMsgUDP(b, oob, addr)
}

// LocalAddr returns the UDP socket's local address.
func (c *Conn) LocalAddr() net.Addr { return c.udp.LocalAddr() }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline of reads: of the UDP socket, or after
// Handoff of the socket from the child (quic.Transport.Close relies on it to
// stop its read loop).
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.ctl.Lock()
	defer c.ctl.Unlock()
	c.rdeadline = t
	if c.mode.Load() == modeHandoff {
		// The UDP socket's deadline stays in the past.
		return c.src.Load().SetReadDeadline(t)
	}
	return c.udp.SetReadDeadline(t)
}

// SetWriteDeadline sets the deadline of writes to the UDP socket.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.udp.SetWriteDeadline(t) }

// SetReadBuffer sets the UDP socket's receive buffer size.
func (c *Conn) SetReadBuffer(bytes int) error { return c.udp.SetReadBuffer(bytes) }

// SetWriteBuffer sets the UDP socket's send buffer size.
func (c *Conn) SetWriteBuffer(bytes int) error { return c.udp.SetWriteBuffer(bytes) }

// SyscallConn returns the UDP socket's raw connection. quic-go uses it for
// socket options only (buffer sizes, DF, ECN, packet info, GSO); reading
// through it would bypass the Conn.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.udp.SyscallConn() }

// Close closes this process's handle on the UDP socket (the socket lives on
// in the other generation) and the forwarding sockets the Conn owns.
func (c *Conn) Close() error {
	c.ctl.Lock()
	if c.closed {
		c.ctl.Unlock()
		return fmt.Errorf("quicfwd: closing: %w", net.ErrClosed)
	}
	c.closed = true
	c.ctl.Unlock()
	err := c.udp.Close()
	if src := c.src.Load(); src != nil {
		err = errors.Join(err, src.Close())
	}
	if fw := c.fwd.Swap(nil); fw != nil {
		err = errors.Join(err, fw.dst.Close())
	}
	if err != nil {
		return fmt.Errorf("quicfwd: closing: %w", err)
	}
	return nil
}
