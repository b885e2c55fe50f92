//go:build linux

package quicfwd

import (
	"encoding/binary"
	"syscall"
	"unsafe"
)

// validOOB reports whether b is a sequence of well-formed control messages,
// as quic-go parses them (golang.org/x/sys/unix.ParseOneSocketControlMessage)
// and with the body sizes it insists on (IP_TOS: 1 byte, IPV6_TCLASS: 4): a
// malformed one makes quic-go's read fail and close the Transport.
func validOOB(b []byte) bool {
	const lenSize = int(unsafe.Sizeof(syscall.Cmsghdr{}.Len))
	hdr := syscall.CmsgLen(0)
	for len(b) > 0 {
		if len(b) < syscall.SizeofCmsghdr {
			return false
		}
		var l uint64
		if lenSize == 8 {
			l = binary.NativeEndian.Uint64(b)
		} else {
			l = uint64(binary.NativeEndian.Uint32(b))
		}
		if l < uint64(hdr) || l > uint64(len(b)) {
			return false
		}
		level := int32(binary.NativeEndian.Uint32(b[lenSize:]))
		typ := int32(binary.NativeEndian.Uint32(b[lenSize+4:]))
		body := int(l) - hdr
		switch {
		case level == syscall.IPPROTO_IP && typ == syscall.IP_TOS && body != 1:
			return false
		case level == syscall.IPPROTO_IPV6 && typ == syscall.IPV6_TCLASS && body != 4:
			return false
		}
		next := syscall.CmsgSpace(body)
		if next >= len(b) {
			break
		}
		b = b[next:]
	}
	return true
}
