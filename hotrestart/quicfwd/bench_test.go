package quicfwd

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/ipv4"
)

// benchChild is a forwarding child Conn on a loopback socket with a client
// and the parent's end of the pair.
func benchChild(b *testing.B) (child *Conn, client *net.UDPConn, parentEnd *net.UnixConn) {
	_, udp := sharedSocket(b)
	child, err := New(udp, 2, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { child.Close() })
	parentEnd, childEnd := unixPair(b, 0)
	if err := child.ForwardOlder(childEnd); err != nil {
		b.Fatal(err)
	}
	return child, dialer(b, udp.LocalAddr()), parentEnd
}

// BenchmarkChildRead measures the child's read path as quic-go drives it
// (ReadBatch, 8 buffers of 1452 bytes), per packet of 1200 bytes, with
// forwarding on: "returned" is a packet for the child itself, "forwarded"
// a packet for the parent followed by one for the child (both handled in one
// op, the forwarded one read back from the pair), "readfrom" the plain
// net.PacketConn path. The client's write and, for "forwarded", the parent's
// read are in the loop too.
func BenchmarkChildRead(b *testing.B) {
	own := append(shortHeader(genCID(b, 2)), make([]byte, 1200-1-CIDLen-40)...)
	parent := append(shortHeader(genCID(b, 1)), make([]byte, 1200-1-CIDLen-40)...)

	b.Run("returned", func(b *testing.B) {
		child, client, _ := benchChild(b)
		ms := newBatch(8)
		b.ReportAllocs()
		b.SetBytes(int64(len(own)))
		for b.Loop() {
			client.Write(own)
			if n, err := child.ReadBatch(ms, 0); n != 1 || err != nil {
				b.Fatal(n, err)
			}
		}
	})
	b.Run("forwarded", func(b *testing.B) {
		child, client, parentEnd := benchChild(b)
		ms := newBatch(8)
		buf := make([]byte, maxDatagram)
		b.ReportAllocs()
		for b.Loop() {
			client.Write(parent)
			client.Write(own)
			if n, err := child.ReadBatch(ms, 0); n < 1 || err != nil {
				b.Fatal(n, err)
			}
			if _, err := parentEnd.Read(buf); err != nil {
				b.Fatal(err)
			}
		}
		if st := child.Stats(); st.ForwardDropped != 0 {
			b.Fatalf("dropped %d", st.ForwardDropped)
		}
	})
	b.Run("readfrom", func(b *testing.B) {
		child, client, _ := benchChild(b)
		buf := make([]byte, 1452)
		b.ReportAllocs()
		for b.Loop() {
			client.Write(own)
			if _, _, err := child.ReadFrom(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkParentReadForwarded measures the parent's read after Handoff: a
// forwarded datagram is written to the pair and returned by ReadBatch.
func BenchmarkParentReadForwarded(b *testing.B) {
	pudp, _ := sharedSocket(b)
	parent, err := New(pudp, 1, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { parent.Close() })
	parentEnd, childEnd := unixPair(b, 0)
	if err := parent.Handoff(parentEnd); err != nil {
		b.Fatal(err)
	}
	pkt := append(shortHeader(genCID(b, 1)), make([]byte, 1200-1-CIDLen-40)...)
	d := make([]byte, maxDatagram)
	d = d[:encodeDatagram(d, netip.MustParseAddrPort("192.0.2.1:4433"), nil, pkt)]
	ms := newBatch(8)
	b.ReportAllocs()
	for b.Loop() {
		childEnd.Write(d)
		if n, err := parent.ReadBatch(ms, 0); n != 1 || err != nil {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkBareSocketBatch is the reference: the batch read quic-go does on
// a bare *net.UDPConn (x/net's ReadBatch), which allocates the address.
func BenchmarkBareSocketBatch(b *testing.B) {
	_, udp := sharedSocket(b)
	client := dialer(b, udp.LocalAddr())
	pc := ipv4.NewPacketConn(udp)
	ms := newBatch(8)
	pkt := make([]byte, 1200)
	b.ReportAllocs()
	for b.Loop() {
		client.Write(pkt)
		if n, err := pc.ReadBatch(ms, 0); n != 1 || err != nil {
			b.Fatal(n, err)
		}
	}
}
