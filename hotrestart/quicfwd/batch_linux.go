//go:build linux

package quicfwd

import (
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
)

// mmsghdr is struct mmsghdr; Go pads it to the C layout.
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
}

// batchReader reads up to maxBatch datagrams with one recvmmsg(2), into the
// caller's buffers, without allocating: the headers, iovecs and address
// buffers are kept from call to call, and the syscall runs in a callback
// bound once (fn) so that passing it to RawConn.Read allocates nothing.
type batchReader struct {
	hdrs  [maxBatch]mmsghdr
	iovs  [maxBatch]syscall.Iovec
	names [maxBatch]syscall.RawSockaddrInet6

	// The callback's arguments and results.
	want, flags, got int
	errno            syscall.Errno
	fn               func(fd uintptr) bool
}

func (r *batchReader) init() { r.fn = r.recv }

// read fills ms[:n] (N, NN, Flags) and s.aps[:n] from one recvmmsg.
func (r *batchReader) read(c *Conn, s *readState, ms []ipv4.Message, flags int) (int, error) {
	k := min(len(ms), maxBatch)
	for {
		for i := range k {
			b := ms[i].Buffers[0]
			iov := &r.iovs[i]
			iov.Base = nil
			if len(b) > 0 {
				iov.Base = &b[0]
			}
			iov.SetLen(len(b))
			h := &r.hdrs[i].hdr
			h.Iov = iov
			h.Iovlen = 1
			h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
			h.Namelen = uint32(unsafe.Sizeof(r.names[i]))
			h.Control = nil
			if oob := ms[i].OOB; len(oob) > 0 {
				h.Control = &oob[0]
			}
			h.SetControllen(len(ms[i].OOB))
			h.Flags = 0
		}
		r.want, r.flags, r.got, r.errno = k, flags, 0, 0
		if err := c.raw.Read(r.fn); err != nil {
			return 0, err
		}
		if r.errno != 0 {
			return 0, os.NewSyscallError("recvmmsg", r.errno)
		}
		n := 0
		for i := range r.got {
			h := &r.hdrs[i]
			ap, ok := sockaddrAddrPort(&r.names[i])
			if !ok {
				continue // not an IP datagram: nothing a QUIC stack can answer
			}
			size := min(int(h.n), len(ms[i].Buffers[0]))
			oobn := min(int(h.hdr.Controllen), len(ms[i].OOB))
			if i != n {
				// Keep the batch dense (never seen on a UDP socket).
				size = copy(ms[n].Buffers[0], ms[i].Buffers[0][:size])
				oobn = copy(ms[n].OOB, ms[i].OOB[:oobn])
			}
			ms[n].N, ms[n].NN, ms[n].Flags = size, oobn, int(h.hdr.Flags)
			s.aps[n] = ap
			n++
		}
		if n > 0 {
			return n, nil
		}
	}
}

// recv is the RawConn.Read callback: false asks the poller to wait until the
// socket is readable (or the read deadline passes).
func (r *batchReader) recv(fd uintptr) bool {
	for {
		n, _, e := syscall.Syscall6(syscall.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])),
			uintptr(r.want), uintptr(r.flags), 0, 0)
		switch e {
		case 0:
			r.got = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			r.errno = e
			return true
		}
	}
}

// sockaddrAddrPort converts a raw socket address as recvmmsg fills it.
func sockaddrAddrPort(sa *syscall.RawSockaddrInet6) (netip.AddrPort, bool) {
	switch sa.Family {
	case syscall.AF_INET:
		sa4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port)), true
	case syscall.AF_INET6:
		ip := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			// Link-local peers only; net resolves a numeric zone on write.
			ip = ip.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(ip, ntohs(sa.Port)), true
	}
	return netip.AddrPort{}, false
}

// ntohs reads a port as the kernel stores it (network byte order).
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}
