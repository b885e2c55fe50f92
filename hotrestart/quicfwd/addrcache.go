package quicfwd

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
)

// addrCacheSize is the number of slots of an addrCache (a power of two).
const addrCacheSize = 256

// addrCache turns a client's netip.AddrPort into the *net.UDPAddr that
// quic-go wants, reusing the one made for the same address last time. Entries
// are immutable and swapped whole, so concurrent readers are safe; quic-go
// never modifies an address it is given. A miss costs two allocations, as
// the standard library's ReadFrom pays on every packet.
type addrCache struct {
	slots [addrCacheSize]atomic.Pointer[addrEntry]
}

type addrEntry struct {
	key  netip.AddrPort
	addr *net.UDPAddr
}

func (c *addrCache) get(ap netip.AddrPort) *net.UDPAddr {
	a := ap.Addr().As16()
	h := mix64(binary.LittleEndian.Uint64(a[:8]) ^ mix64(binary.LittleEndian.Uint64(a[8:])^uint64(ap.Port())))
	slot := &c.slots[h&(addrCacheSize-1)]
	if e := slot.Load(); e != nil && e.key == ap {
		return e.addr
	}
	e := &addrEntry{key: ap, addr: net.UDPAddrFromAddrPort(ap)}
	slot.Store(e)
	return e.addr
}
