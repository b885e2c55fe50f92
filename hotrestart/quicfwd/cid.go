package quicfwd

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/quic-go/quic-go"
)

// CIDLen is the length in bytes of every connection ID that NewCIDGenerator
// issues. Both generations must use it: quic-go parses the destination
// connection ID of a short-header packet with its Transport's fixed length.
const CIDLen = 8

// Connection ID layout (all CIDLen bytes look random on the wire):
//
//	[0:5] random (crypto/rand): 40 bits keep IDs unique within a process
//	[5]   epoch byte XOR a mask derived from [0:5]
//	[6:8] 16-bit check derived from [0:5] and the epoch byte
//
// A random 8-byte ID therefore names some epoch only with probability 2^-16
// (the check must match the epoch byte it decodes to).
const (
	cidRandLen  = 5
	cidEpochOff = 5
	cidCheckOff = 6
)

// NewCIDGenerator returns a connection ID generator for quic.Transport's
// ConnectionIDGenerator field whose IDs carry the marker of epoch (its low 8
// bits: two generations that are alive at the same time must differ there,
// which consecutive restart epochs always do). The IDs are CIDLen bytes long.
func NewCIDGenerator(epoch uint32) quic.ConnectionIDGenerator {
	return cidGenerator{epoch: byte(epoch)}
}

type cidGenerator struct{ epoch byte }

var _ quic.ConnectionIDGenerator = cidGenerator{}

// GenerateConnectionID returns a fresh random connection ID marked with the
// generator's epoch.
func (g cidGenerator) GenerateConnectionID() (quic.ConnectionID, error) {
	var b [CIDLen]byte
	if _, err := rand.Read(b[:cidRandLen]); err != nil {
		return quic.ConnectionID{}, fmt.Errorf("quicfwd: reading random connection ID bytes: %w", err)
	}
	sealCID(&b, g.epoch)
	return quic.ConnectionIDFromBytes(b[:]), nil
}

// ConnectionIDLen returns CIDLen.
func (g cidGenerator) ConnectionIDLen() int { return CIDLen }

// sealCID writes the marker of epoch into b, whose random bytes are set.
func sealCID(b *[CIDLen]byte, epoch byte) {
	r := cidRandom(b[:])
	b[cidEpochOff] = epoch ^ byte(mix64(r))
	binary.BigEndian.PutUint16(b[cidCheckOff:], cidCheck(r, epoch))
}

// cidEpoch reports the epoch marked in a CIDLen-byte connection ID.
func cidEpoch(cid []byte) (epoch byte, ok bool) {
	r := cidRandom(cid)
	epoch = cid[cidEpochOff] ^ byte(mix64(r))
	return epoch, binary.BigEndian.Uint16(cid[cidCheckOff:]) == cidCheck(r, epoch)
}

func cidRandom(cid []byte) uint64 {
	_ = cid[cidRandLen-1]
	return uint64(cid[0]) | uint64(cid[1])<<8 | uint64(cid[2])<<16 | uint64(cid[3])<<24 | uint64(cid[4])<<32
}

func cidCheck(r uint64, epoch byte) uint16 {
	// A different input domain from the mask (bit 63 set) so that the two
	// derived values are independent.
	return uint16(mix64(r|uint64(epoch)<<40|1<<63) >> 48)
}

// mix64 is the splitmix64 finaliser: a cheap bijection with good avalanche.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// QUIC header bits (RFC 8999 for the invariants, RFC 9000 17.2 and 17.3).
const (
	headerForm = 0x80 // 1: long header (invariant)
	fixedBit   = 0x40 // must be 1 in QUIC v1 and v2; 0 means "not QUIC" (RFC 9443)
)

// EpochOf reports the generation marked in the destination connection ID of
// the QUIC packet that begins packet (the first packet of a UDP datagram;
// coalesced packets share one destination connection ID).
//
// ok is false when packet is not a QUIC packet (the fixed bit is clear), is
// too short, is a Version Negotiation packet, has a long-header destination
// connection ID that is not CIDLen bytes long, or has a connection ID whose
// check does not match: then nothing marks a generation and the packet belongs
// to whoever reads it. The destination connection ID of a client's first
// Initial (and of 0-RTT packets sent with it) is chosen by the client; it
// matches a marker only by chance (2^-16 per packet, and a stable client ID
// matches for all of its retransmissions).
func EpochOf(packet []byte) (epoch byte, ok bool) {
	if len(packet) == 0 {
		return 0, false
	}
	first := packet[0]
	if first&headerForm == 0 {
		// Short header: first byte, then the DCID with a length known only to
		// the receiver: ours is CIDLen.
		if first&fixedBit == 0 || len(packet) < 1+CIDLen {
			return 0, false
		}
		return cidEpoch(packet[1 : 1+CIDLen])
	}
	// Long header: first byte, 32-bit version, DCID length, DCID. These
	// fields are invariant across versions; the fixed bit is not, so it is
	// not required here (quic-go answers unknown versions itself).
	const dcidLenOff = 5
	if len(packet) < dcidLenOff+1+CIDLen || int(packet[dcidLenOff]) != CIDLen {
		return 0, false
	}
	if binary.BigEndian.Uint32(packet[1:5]) == 0 {
		return 0, false // Version Negotiation: only ever sent by servers
	}
	return cidEpoch(packet[dcidLenOff+1 : dcidLenOff+1+CIDLen])
}
