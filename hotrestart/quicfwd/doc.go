// Package quicfwd lets two generations of edge share one UDP socket for
// HTTP/3 during a hot restart, so that the draining parent's QUIC connections
// end gracefully instead of breaking when the child takes the socket over.
//
// # The problem
//
// Every HTTP/3 connection of a listener arrives on the same UDP socket, and
// the child inherits that socket. Once the child reads it, the parent's
// clients' packets reach a quic-go that has never heard of their connections:
// it drops them, or, with a StatelessResetKey, answers with a stateless
// reset, and the parent's connections die mid-drain.
//
// # The scheme
//
// Connection IDs name their generation. Each generation's quic.Transport
// gets ConnectionIDGenerator: NewCIDGenerator(epoch). Its IDs are CIDLen (8)
// bytes: 5 random bytes, the epoch byte masked by them and a 16-bit check of
// both, so all 8 bytes look random and a random ID names some epoch only with
// probability 2^-16. EpochOf reads the marker from a packet's destination
// connection ID, short header or long.
//
// Each generation gives its Transport a Conn (New) wrapping its handle on the
// shared socket instead of the socket itself. During a restart:
//
//  1. The parent makes a socket pair (NewPair) and passes childEnd to the
//     child (SCM_RIGHTS on the control socket).
//  2. The child calls ForwardOlder before its Transport reads: from then on,
//     every packet it reads whose connection ID marks another generation is
//     sent to the parent over the pair, with its source address and control
//     messages, and never reaches the child's quic-go. Everything else (its
//     own connections, new clients' Initials, non-QUIC datagrams) is its own.
//  3. The parent calls Handoff: it stops reading the UDP socket (a blocked
//     read is interrupted through its deadline, with no packet lost or read
//     twice) and from then on reads only the pair. It still writes to the
//     UDP socket, so its replies leave from the address its clients know.
//  4. When the parent has exited, the child calls StopForwarding (a write
//     refused because the parent's end is closed stops it too). Packets
//     still marked for the parent then go to the child's quic-go, which
//     answers them with a stateless reset if it has a key: the client learns
//     at once that its connection is gone.
//
// Between the child's first read and the parent's Handoff both read the
// socket. A packet for a child's connection that the parent reads in that
// window is lost (the client retransmits it); a short-header one may draw a
// stateless reset from the parent, which the client accepts if both
// generations share the StatelessResetKey. Keep the window short, or call
// Handoff before the child's Transport starts reading: packets then wait in
// the socket's receive queue for the child instead.
//
// A Conn is an OOB-capable packet conn with quic-go's batch read (recvmmsg
// on Linux), so quic-go keeps ECN, packet info (the right source address on a
// wildcard bind), GSO and the don't-fragment bit, as with a bare
// *net.UDPConn; wrapping any other way would cost all of these and batch
// reads. Its own per-packet work allocates nothing: returned packets'
// addresses come from a cache, forwarded ones are encoded into a reused
// buffer and written without blocking (a full queue drops the packet, which
// is counted), and mode changes are atomics read without a lock.
//
// # Limits
//
//   - A parent's handshake in progress finishes in the parent only if the
//     client already switched to the parent's connection ID (it does after
//     the parent's first Initial reached it, or after a Retry). A client that
//     still retransmits its first Initial, with its own destination
//     connection ID, reaches the child, which starts a new handshake; the
//     parent's half-open connection times out. (A parent that closes its
//     quic.Listener to drain refuses handshakes in flight anyway.)
//   - 0-RTT packets carry the client's destination connection ID, so they go
//     to whichever generation reads them, with their Initial: after Handoff,
//     the child. The child accepts resumption and 0-RTT only if it can read
//     the parent's session tickets (shared ticket keys) and, for address
//     validation tokens, shares the Transport's TokenGeneratorKey.
//   - A client-chosen destination connection ID passes the marker check by
//     chance (2^-16): such a new client's Initials are all forwarded to the
//     parent, which no longer accepts connections, while forwarding lasts.
//   - A client that migrates to a new address keeps its connection: routing
//     uses the connection ID, not the address, and the forwarded datagram
//     carries the new source address, so the parent validates the new path
//     as usual. A NAT rebinding is the same case.
//   - Stateless resets sent by clients carry random bytes where the
//     connection ID would be, so one meant for a parent's connection is
//     normally read by the child, which cannot match it.
//   - Two generations alive at once must differ in the low 8 bits of their
//     epoch. A middle generation that forwards and was handed off passes its
//     parent's packets on (a datagram is passed on twice at most, so a
//     misconfigured loop cannot spin), but the restart protocol normally keeps
//     two generations at most.
//   - The IPv6 zone of a link-local client address is not carried.
//   - Forwarding adds a unix datagram write and read per packet of a draining
//     connection, and its queue is bounded by the pair's send buffer
//     (NewPair asks for 4 MiB, capped by net.core.wmem_max).
package quicfwd
