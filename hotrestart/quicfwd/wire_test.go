package quicfwd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"syscall"
	"testing"
)

// tosOOB is a control message as the kernel delivers an IP_TOS byte.
func tosOOB(tos byte) []byte {
	b := make([]byte, syscall.CmsgSpace(1))
	h := syscall.CmsgLen(1)
	if syscall.SizeofCmsghdr == 16 {
		binary.NativeEndian.PutUint64(b, uint64(h))
		binary.NativeEndian.PutUint32(b[8:], syscall.IPPROTO_IP)
		binary.NativeEndian.PutUint32(b[12:], syscall.IP_TOS)
	} else {
		binary.NativeEndian.PutUint32(b, uint32(h))
		binary.NativeEndian.PutUint32(b[4:], syscall.IPPROTO_IP)
		binary.NativeEndian.PutUint32(b[8:], syscall.IP_TOS)
	}
	b[syscall.CmsgLen(0)] = tos
	return b
}

func TestDatagramRoundTrip(t *testing.T) {
	full := bytes.Repeat([]byte{0xab}, maxPayload)
	tests := []struct {
		name    string
		src     netip.AddrPort
		oob     []byte
		payload []byte
	}{
		{"IPv4", netip.MustParseAddrPort("192.0.2.7:4433"), nil, []byte("hello")},
		{"IPv6 with ECN", netip.MustParseAddrPort("[2001:db8::1]:65535"), tosOOB(2), []byte{0x40, 1, 2, 3}},
		{"IPv4-mapped IPv6 stays 16 bytes", netip.MustParseAddrPort("[::ffff:198.51.100.1]:1"), nil, []byte{1}},
		{"largest payload quic-go reads", netip.MustParseAddrPort("127.0.0.1:9"), tosOOB(1), full[:1452]},
		{"largest payload", netip.MustParseAddrPort("[::1]:9"), tosOOB(3), full},
	}
	buf := make([]byte, maxDatagram)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := encodeDatagram(buf, tt.src, tt.oob, tt.payload)
			if n == 0 {
				t.Fatal("encodeDatagram refused a valid packet")
			}
			d, err := decodeDatagram(buf[:n])
			if err != nil {
				t.Fatalf("decodeDatagram: %v", err)
			}
			if d.src != tt.src || d.hops != 0 || !bytes.Equal(d.oob, tt.oob) || !bytes.Equal(d.payload, tt.payload) {
				t.Errorf("got src %v hops %d oob %x payload %d bytes; want %v 0 %x %d bytes",
					d.src, d.hops, d.oob, len(d.payload), tt.src, tt.oob, len(tt.payload))
			}
		})
	}
}

func TestEncodeRefuses(t *testing.T) {
	buf := make([]byte, maxDatagram)
	src := netip.MustParseAddrPort("127.0.0.1:9")
	if n := encodeDatagram(buf, src, nil, nil); n != 0 {
		t.Errorf("empty payload encoded to %d bytes; want refused", n)
	}
	if n := encodeDatagram(buf, src, nil, make([]byte, maxPayload+1)); n != 0 {
		t.Errorf("oversized payload encoded to %d bytes; want refused", n)
	}
	// Control messages the receiver would refuse are left out, the packet kept.
	n := encodeDatagram(buf, src, []byte{1, 2, 3}, []byte{0x40})
	d, err := decodeDatagram(buf[:n])
	if err != nil || len(d.oob) != 0 || !bytes.Equal(d.payload, []byte{0x40}) {
		t.Errorf("bad OOB: decode = (%+v, %v); want the packet without OOB", d, err)
	}
}

func TestDecodeMalformed(t *testing.T) {
	buf := make([]byte, maxDatagram)
	good := buf[:encodeDatagram(buf, netip.MustParseAddrPort("127.0.0.1:443"), tosOOB(2), []byte("quic"))]
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, errShort},
		{"header only, cut", good[:hdrFixed-1], errShort},
		{"address cut", good[:hdrV4-1], errShort},
		{"IPv6 address cut", mod(func(b []byte) []byte { b[1] = 6; return b[:hdrV6-1] }), errShort},
		{"wire version 2", mod(func(b []byte) []byte { b[0] = 2; return b }), errVersion},
		{"family 5", mod(func(b []byte) []byte { b[1] = 5; return b }), errFamily},
		{"port 0", mod(func(b []byte) []byte { b[4], b[5] = 0, 0; return b }), errSourcePort},
		{"too many hops", mod(func(b []byte) []byte { b[offHops] = maxHops + 1; return b }), errHops},
		{"OOB longer than the datagram", mod(func(b []byte) []byte { b[3] = 255; return b }), errShort},
		{"OOB cut mid-message", mod(func(b []byte) []byte { b[3] = 7; return b }), errOOB},
		{"no payload", good[:len(good)-4], errPayload},
		{"payload too large", append(append([]byte(nil), good...), make([]byte, maxPayload)...), errPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeDatagram(tt.b); !errors.Is(err, tt.want) {
				t.Errorf("decodeDatagram error = %v; want %v", err, tt.want)
			}
		})
	}
}

func TestValidOOB(t *testing.T) {
	two := append(tosOOB(1), tosOOB(2)...)
	badTOS := tosOOB(1)
	l := syscall.CmsgLen(2)
	if syscall.SizeofCmsghdr == 16 {
		binary.NativeEndian.PutUint64(badTOS, uint64(l))
	} else {
		binary.NativeEndian.PutUint32(badTOS, uint32(l))
	}
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"none", nil, true},
		{"one", tosOOB(1), true},
		{"two", two, true},
		{"cut header", two[:syscall.CmsgSpace(1)+4], false},
		{"length beyond buffer", tosOOB(1)[:syscall.CmsgLen(0)], false},
		{"IP_TOS of 2 bytes (quic-go would fail its read)", badTOS, false},
	}
	for _, tt := range tests {
		if got := validOOB(tt.b); got != tt.want {
			t.Errorf("%s: validOOB = %v; want %v", tt.name, got, tt.want)
		}
	}
}

// FuzzDecodeDatagram checks that no input makes decoding panic and that
// what decodes encodes back to the same bytes.
func FuzzDecodeDatagram(f *testing.F) {
	buf := make([]byte, maxDatagram)
	f.Add(buf[:encodeDatagram(buf, netip.MustParseAddrPort("127.0.0.1:443"), tosOOB(2), []byte("quic"))])
	f.Add(buf[:encodeDatagram(buf, netip.MustParseAddrPort("[::1]:443"), nil, []byte{0x40, 0})])
	f.Add([]byte{1, 4, 0, 200, 0, 1, 127, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeDatagram(b)
		if err != nil {
			return
		}
		out := make([]byte, maxDatagram)
		n := encodeDatagram(out, d.src, d.oob, d.payload)
		out[offHops] = d.hops
		if !bytes.Equal(out[:n], b) {
			t.Fatalf("decode/encode changed %x into %x", b, out[:n])
		}
	})
}
