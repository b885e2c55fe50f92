package quicfwd

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// A forwarded datagram, one per unix datagram (integers big-endian):
//
//	[0]    wire version (1)
//	[1]    address family: 4 or 6
//	[2]    hops: how many times the datagram has been forwarded after the
//	       first (a middle generation passes on what is not its own)
//	[3]    OOB length: the receiving socket's control messages (ECN bits,
//	       destination address), passed on so that the generation that owns
//	       the connection sees what it would have read itself
//	[4:6]  client's UDP source port
//	[6:..] client's IP: 4 or 16 bytes (an IPv4-mapped IPv6 address stays 16)
//	then   OOB bytes, then the UDP payload (1 to maxPayload bytes)
//
// Parent and child run on the same host, so the OOB bytes are in the layout of
// the kernel both read from. The IPv6 zone is not carried.
const (
	wireVersion = 1
	hdrFixed    = 6
	hdrV4       = hdrFixed + 4
	hdrV6       = hdrFixed + 16
	offHops     = 2
	maxHops     = 2
	maxOOB      = 255
	// maxPayload is the largest UDP payload forwarded: quic-go reads at most
	// 1452 bytes per datagram (protocol.MaxPacketBufferSize), and a standard
	// 1500-byte MTU cannot carry more than 1472.
	maxPayload = 1500
	// maxDatagram bounds an encoded datagram.
	maxDatagram = hdrV6 + maxOOB + maxPayload
)

var (
	errShort      = errors.New("quicfwd: forwarded datagram shorter than its header")
	errVersion    = errors.New("quicfwd: forwarded datagram of an unknown wire version")
	errFamily     = errors.New("quicfwd: forwarded datagram with an unknown address family")
	errHops       = errors.New("quicfwd: forwarded datagram passed on too many times")
	errOOB        = errors.New("quicfwd: forwarded datagram with malformed control messages")
	errPayload    = errors.New("quicfwd: forwarded datagram with an empty or oversized payload")
	errSourcePort = errors.New("quicfwd: forwarded datagram with source port 0")
)

// datagram is a decoded forwarded datagram; oob and payload alias the buffer.
type datagram struct {
	src     netip.AddrPort
	hops    byte
	oob     []byte
	payload []byte
}

// encodeDatagram writes a forwarded datagram into dst (at least maxDatagram
// bytes) and returns its length, or 0 when payload is empty or too large.
// Control messages that do not fit the one-byte length, or that the
// receiver would refuse (validOOB), are left out.
func encodeDatagram(dst []byte, src netip.AddrPort, oob, payload []byte) int {
	if len(payload) == 0 || len(payload) > maxPayload {
		return 0
	}
	if len(oob) > maxOOB || !validOOB(oob) {
		oob = nil
	}
	_ = dst[maxDatagram-1]
	dst[0] = wireVersion
	dst[offHops] = 0
	dst[3] = byte(len(oob))
	binary.BigEndian.PutUint16(dst[4:6], src.Port())
	ip := src.Addr()
	n := hdrFixed
	if ip.Is4() {
		dst[1] = 4
		a := ip.As4()
		n += copy(dst[n:], a[:])
	} else {
		dst[1] = 6
		a := ip.As16()
		n += copy(dst[n:], a[:])
	}
	n += copy(dst[n:], oob)
	n += copy(dst[n:], payload)
	return n
}

// decodeDatagram checks and parses a forwarded datagram. It never panics,
// whatever b holds.
func decodeDatagram(b []byte) (datagram, error) {
	var d datagram
	if len(b) < hdrFixed {
		return d, errShort
	}
	if b[0] != wireVersion {
		return d, errVersion
	}
	port := binary.BigEndian.Uint16(b[4:6])
	if port == 0 {
		return d, errSourcePort
	}
	n := hdrFixed
	switch b[1] {
	case 4:
		if len(b) < hdrV4 {
			return d, errShort
		}
		d.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[n:hdrV4])), port)
		n = hdrV4
	case 6:
		if len(b) < hdrV6 {
			return d, errShort
		}
		d.src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[n:hdrV6])), port)
		n = hdrV6
	default:
		return d, errFamily
	}
	d.hops = b[offHops]
	if d.hops > maxHops {
		return d, errHops
	}
	oobLen := int(b[3])
	if len(b)-n < oobLen {
		return d, errShort
	}
	d.oob = b[n : n+oobLen]
	if !validOOB(d.oob) {
		return d, errOOB
	}
	d.payload = b[n+oobLen:]
	if len(d.payload) == 0 || len(d.payload) > maxPayload {
		return d, errPayload
	}
	return d, nil
}
