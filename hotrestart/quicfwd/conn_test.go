package quicfwd

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// testLogger writes the package's log lines to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// sharedSocket opens a loopback UDP socket and a second handle on the very
// same socket, as a child inherits it.
func sharedSocket(t testing.TB) (parent, child *net.UDPConn) {
	t.Helper()
	a, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f, err := a.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pc, err := net.FilePacketConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); pc.Close() })
	return a, pc.(*net.UDPConn)
}

// unixPair returns both ends of a forwarding pair as connections; sendBuffer
// 0 keeps the kernel's default.
func unixPair(t testing.TB, sendBuffer int) (parentEnd, childEnd *net.UnixConn) {
	t.Helper()
	pf, cf, err := newPair(sendBuffer)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	defer cf.Close()
	p, err := FileUnixConn(pf)
	if err != nil {
		t.Fatal(err)
	}
	c, err := FileUnixConn(cf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(); c.Close() })
	return p, c
}

func newConn(t testing.TB, udp *net.UDPConn, epoch uint32) *Conn {
	t.Helper()
	c, err := New(udp, epoch, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialer returns a client socket connected to server.
func dialer(t testing.TB, server net.Addr) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, server.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recvTOS asks the kernel for each datagram's TOS byte, so that reads carry
// control messages (quic-go asks for the same to read ECN).
func recvTOS(t testing.TB, c *net.UDPConn) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_RECVTOS, 1)
	}); err != nil || serr != nil {
		t.Fatalf("IP_RECVTOS: %v %v", err, serr)
	}
}

// tagged returns a packet with tag appended, to tell packets apart.
func tagged(p []byte, tag string) []byte {
	return append(append([]byte(nil), p...), tag...)
}

func tagOf(p []byte) string {
	if i := bytes.LastIndexByte(p, '#'); i >= 0 {
		return string(p[i:])
	}
	return ""
}

// readForwarded reads one datagram from the parent's end and decodes it.
func readForwarded(t testing.TB, c *net.UnixConn) datagram {
	t.Helper()
	buf := make([]byte, maxDatagram)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("reading the forwarding socket: %v", err)
	}
	d, err := decodeDatagram(buf[:n])
	if err != nil {
		t.Fatalf("decoding a forwarded datagram: %v", err)
	}
	return d
}

func newBatch(n int) []ipv4.Message {
	ms := make([]ipv4.Message, n)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 1452)}
		ms[i].OOB = make([]byte, 128)
	}
	return ms
}

// TestForwardOlderSortsPackets sends a mix of packets to the child's socket
// and checks which ones the child keeps and which ones reach the parent.
func TestForwardOlderSortsPackets(t *testing.T) {
	parentCID, childCID := genCID(t, 1), genCID(t, 2)
	clientSCID := []byte{9, 9, 9, 9}
	send := []struct {
		packet []byte
		toPeer bool
	}{
		{tagged(shortHeader(childCID), "#own-1rtt"), false},
		{tagged(shortHeader(parentCID), "#parent-1rtt"), true},
		{tagged(longHeader(0, 1, unmarked, clientSCID), "#new-client-initial"), false},
		{tagged(longHeader(2, 1, parentCID, clientSCID), "#parent-handshake"), true},
		{tagged([]byte{0x00, 0x01, 0x02}, "#not-quic"), false},
		{tagged(longHeader(0, 1, parentCID, clientSCID), "#parent-initial-after-retry"), true},
		{tagged(shortHeader(unmarked), "#unknown-1rtt"), false},
	}
	var wantKept, wantForwarded []string
	for _, s := range send {
		if s.toPeer {
			wantForwarded = append(wantForwarded, tagOf(s.packet))
		} else {
			wantKept = append(wantKept, tagOf(s.packet))
		}
	}

	for _, path := range []string{"ReadBatch", "ReadFrom", "ReadMsgUDP"} {
		t.Run(path, func(t *testing.T) {
			_, udp := sharedSocket(t)
			recvTOS(t, udp)
			child := newConn(t, udp, 2)
			parentEnd, childEnd := unixPair(t, 0)
			if err := child.ForwardOlder(childEnd); err != nil {
				t.Fatal(err)
			}
			client := dialer(t, udp.LocalAddr())
			for _, s := range send {
				if _, err := client.Write(s.packet); err != nil {
					t.Fatal(err)
				}
			}
			child.SetReadDeadline(time.Now().Add(5 * time.Second))
			var kept []string
			ms := newBatch(8)
			buf, oob := make([]byte, 1452), make([]byte, 128)
			for len(kept) < len(wantKept) {
				var got [][]byte
				var addrs []net.Addr
				switch path {
				case "ReadBatch":
					n, err := child.ReadBatch(ms, 0)
					if err != nil {
						t.Fatalf("ReadBatch: %v", err)
					}
					for _, m := range ms[:n] {
						got = append(got, m.Buffers[0][:m.N])
						addrs = append(addrs, m.Addr)
						if m.NN == 0 || !validOOB(m.OOB[:m.NN]) {
							t.Errorf("packet %q came without its control messages", tagOf(m.Buffers[0][:m.N]))
						}
					}
				case "ReadFrom":
					n, addr, err := child.ReadFrom(buf)
					if err != nil {
						t.Fatalf("ReadFrom: %v", err)
					}
					got, addrs = [][]byte{buf[:n]}, []net.Addr{addr}
				case "ReadMsgUDP":
					n, oobn, _, addr, err := child.ReadMsgUDP(buf, oob)
					if err != nil {
						t.Fatalf("ReadMsgUDP: %v", err)
					}
					if oobn == 0 {
						t.Error("ReadMsgUDP returned no control messages")
					}
					got, addrs = [][]byte{buf[:n]}, []net.Addr{addr}
				}
				for i, p := range got {
					kept = append(kept, tagOf(p))
					if addrs[i].String() != client.LocalAddr().String() {
						t.Errorf("packet %q from %v; want %v", tagOf(p), addrs[i], client.LocalAddr())
					}
				}
			}
			if fmt.Sprint(kept) != fmt.Sprint(wantKept) {
				t.Errorf("child kept %v; want %v", kept, wantKept)
			}
			var forwarded []string
			for range wantForwarded {
				d := readForwarded(t, parentEnd)
				forwarded = append(forwarded, tagOf(d.payload))
				if d.src.String() != client.LocalAddr().String() {
					t.Errorf("forwarded packet %q names source %v; want %v", tagOf(d.payload), d.src, client.LocalAddr())
				}
				if path != "ReadFrom" && len(d.oob) == 0 {
					t.Errorf("forwarded packet %q lost its control messages", tagOf(d.payload))
				}
			}
			if fmt.Sprint(forwarded) != fmt.Sprint(wantForwarded) {
				t.Errorf("parent got %v; want %v", forwarded, wantForwarded)
			}
			if st := child.Stats(); st.Forwarded != uint64(len(wantForwarded)) || st.ForwardDropped != 0 || !st.Forwarding {
				t.Errorf("child stats %+v; want %d forwarded, none dropped, still forwarding", st, len(wantForwarded))
			}
		})
	}
}

// TestHandoffReturnsForwardedPackets runs both generations on one socket:
// the parent's blocked batch read is switched over by Handoff and returns
// what the child forwards, with the client's address and control messages.
func TestHandoffReturnsForwardedPackets(t *testing.T) {
	pudp, cudp := sharedSocket(t)
	recvTOS(t, pudp)
	parent, child := newConn(t, pudp, 1), newConn(t, cudp, 2)
	parentEnd, childEnd := unixPair(t, 0)

	type result struct {
		tags  []string
		addr  net.Addr
		oobOK bool
		err   error
	}
	results := make(chan result, 4)
	go func() {
		ms := newBatch(8)
		for {
			n, err := parent.ReadBatch(ms, 0)
			if err != nil {
				results <- result{err: err}
				return
			}
			r := result{addr: ms[0].Addr, oobOK: ms[0].NN > 0 && validOOB(ms[0].OOB[:ms[0].NN])}
			for _, m := range ms[:n] {
				r.tags = append(r.tags, tagOf(m.Buffers[0][:m.N]))
			}
			results <- r
		}
	}()
	client := dialer(t, pudp.LocalAddr())
	parentCID := genCID(t, 1)

	// Before the restart the parent reads the socket itself.
	client.Write(tagged(shortHeader(parentCID), "#before"))
	if r := <-results; r.err != nil || fmt.Sprint(r.tags) != "[#before]" {
		t.Fatalf("before Handoff the parent read %v, %v; want [#before]", r.tags, r.err)
	}

	if err := child.ForwardOlder(childEnd); err != nil {
		t.Fatal(err)
	}
	childErr := make(chan error, 1)
	go func() {
		ms := newBatch(8)
		for {
			if _, err := child.ReadBatch(ms, 0); err != nil {
				childErr <- err
				return
			}
		}
	}()
	if err := parent.Handoff(parentEnd); err != nil {
		t.Fatal(err)
	}
	if err := parent.Handoff(parentEnd); err == nil {
		t.Error("a second Handoff succeeded; want an error")
	}
	// A datagram the parent cannot decode is counted and skipped.
	if _, err := childEnd.Write([]byte{7, 7, 7}); err != nil {
		t.Fatal(err)
	}
	client.Write(tagged(shortHeader(parentCID), "#after"))
	select {
	case r := <-results:
		if r.err != nil || fmt.Sprint(r.tags) != "[#after]" {
			t.Fatalf("after Handoff the parent read %v, %v; want [#after]", r.tags, r.err)
		}
		if r.addr.String() != client.LocalAddr().String() {
			t.Errorf("forwarded packet from %v; want %v", r.addr, client.LocalAddr())
		}
		if !r.oobOK {
			t.Error("forwarded packet came without the control messages the child read")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the parent got no forwarded packet")
	}
	ps, cs := parent.Stats(), child.Stats()
	if !ps.HandedOff || ps.Received != 1 || ps.Malformed != 1 || cs.Forwarded != 1 {
		t.Errorf("parent stats %+v, child stats %+v; want handed off, 1 received, 1 malformed, 1 forwarded", ps, cs)
	}

	// quic.Transport.Close stops its read loop with a read deadline: it must
	// reach the socket the parent now reads.
	parent.SetReadDeadline(time.Now())
	select {
	case r := <-results:
		if !errors.Is(r.err, os.ErrDeadlineExceeded) {
			t.Errorf("read after SetReadDeadline(now) = %v, %v; want a deadline error", r.tags, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SetReadDeadline did not interrupt the parent's read of the forwarded packets")
	}
	child.Close()
	<-childErr
}

// TestHandoffLosesNothing hands off while packets stream in: each one is read
// exactly once, by the parent before Handoff or by the child's handle after,
// and none sent after Handoff returned is read by the parent.
func TestHandoffLosesNothing(t *testing.T) {
	pudp, cudp := sharedSocket(t)
	parent := newConn(t, pudp, 1)
	parentEnd, _ := unixPair(t, 0)
	client := dialer(t, pudp.LocalAddr())
	const total = 200
	cid := genCID(t, 1)

	var mu sync.Mutex
	byParent, byChild := make(map[string]int), make(map[string]int)
	parentRead := make(chan struct{}, total)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, _, err := parent.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			byParent[tagOf(buf[:n])]++
			mu.Unlock()
			parentRead <- struct{}{}
		}
	}()
	var handedOff atomic.Bool
	sentAfter := make(map[string]bool) // sent once Handoff had returned
	for i := range total {
		if i == total/4 {
			// Let the parent read some, then hand off while sending goes on.
			<-parentRead
			go func() {
				if err := parent.Handoff(parentEnd); err != nil {
					t.Error(err)
				}
				handedOff.Store(true)
			}()
		}
		tag := fmt.Sprintf("#%d", i)
		sentAfter[tag] = handedOff.Load()
		if _, err := client.Write(tagged(shortHeader(cid), tag)); err != nil {
			t.Fatal(err)
		}
		runtime.Gosched()
	}
	// Whatever the parent did not read waits for the child's handle.
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(byParent) + len(byChild)
	}
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 1500)
	for count() < total && time.Now().Before(deadline) {
		cudp.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := cudp.Read(buf)
		if err != nil {
			continue
		}
		mu.Lock()
		byChild[tagOf(buf[:n])]++
		mu.Unlock()
	}
	parent.Close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	after := 0
	for i := range total {
		tag := fmt.Sprintf("#%d", i)
		if c := byParent[tag] + byChild[tag]; c != 1 {
			t.Errorf("packet %s read %d times; want once", tag, c)
		}
		if sentAfter[tag] {
			after++
			if byParent[tag] != 0 {
				t.Errorf("packet %s, sent after Handoff returned, was read by the parent", tag)
			}
		}
	}
	t.Logf("parent read %d, child's handle %d; %d sent after Handoff returned", len(byParent), len(byChild), after)
	if !parent.Stats().HandedOff || after == 0 {
		t.Errorf("handed off %v, %d packets sent after; the test did not hand off mid-stream", parent.Stats().HandedOff, after)
	}
}

// TestReadDeadlineAfterHandoffKeepsUDPUnread checks that clearing the read
// deadline (as quic.Transport.Close does) does not make the parent read the
// UDP socket again.
func TestReadDeadlineAfterHandoffKeepsUDPUnread(t *testing.T) {
	pudp, cudp := sharedSocket(t)
	parent := newConn(t, pudp, 1)
	parentEnd, _ := unixPair(t, 0)
	if err := parent.Handoff(parentEnd); err != nil {
		t.Fatal(err)
	}
	parent.SetReadDeadline(time.Now())
	parent.SetReadDeadline(time.Time{})
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 1500)
		n, _, err := parent.ReadFrom(buf)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- tagOf(buf[:n])
	}()
	client := dialer(t, pudp.LocalAddr())
	client.Write(tagged(shortHeader(genCID(t, 1)), "#udp"))
	buf := make([]byte, 1500)
	cudp.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := cudp.Read(buf)
	if err != nil || tagOf(buf[:n]) != "#udp" {
		t.Fatalf("child's handle read %q, %v; want #udp", buf[:n], err)
	}
	parent.Close()
	if r := <-got; r == "#udp" {
		t.Error("the parent read the UDP socket after Handoff")
	}
}

// TestForwardNeverBlocks fills the parent's queue: the child drops what does
// not fit and goes on serving its own packets.
func TestForwardNeverBlocks(t *testing.T) {
	_, udp := sharedSocket(t)
	child := newConn(t, udp, 2)
	_, childEnd := unixPair(t, 0) // default buffer, and nobody reads the parent's end
	if err := child.ForwardOlder(childEnd); err != nil {
		t.Fatal(err)
	}
	own := make(chan string, 1)
	go func() {
		buf := make([]byte, 1500)
		n, _, err := child.ReadFrom(buf)
		if err != nil {
			own <- err.Error()
			return
		}
		own <- tagOf(buf[:n])
	}()
	client := dialer(t, udp.LocalAddr())
	parentPkt := tagged(shortHeader(genCID(t, 1)), "#parent")
	parentPkt = append(parentPkt, make([]byte, 1200)...)
	const sent = 300
	deadline := time.Now().Add(10 * time.Second)
	for i := range sent {
		client.Write(parentPkt)
		// Pace the sender by the child's progress, so that the UDP socket's
		// own buffer never overflows.
		for st := child.Stats(); st.Forwarded+st.ForwardDropped < uint64(i+1); st = child.Stats() {
			if time.Now().After(deadline) {
				t.Fatalf("the child handled %d of %d packets", st.Forwarded+st.ForwardDropped, i+1)
			}
			runtime.Gosched()
		}
	}
	client.Write(tagged(shortHeader(genCID(t, 2)), "#own"))
	select {
	case got := <-own:
		if got != "#own" {
			t.Fatalf("child read %q; want #own", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the child's read is stuck behind a full forwarding queue")
	}
	st := child.Stats()
	if st.Forwarded == 0 || st.ForwardDropped == 0 || st.Forwarded+st.ForwardDropped != sent || !st.Forwarding {
		t.Errorf("stats %+v; want some forwarded, the rest of %d dropped, still forwarding", st, sent)
	}
	t.Logf("queue held %d packets, %d dropped", st.Forwarded, st.ForwardDropped)
}

// TestForwardingStopsWhenParentIsGone: once the parent's end is closed, the
// first packet for it is dropped and later ones go to the child's quic-go.
func TestForwardingStopsWhenParentIsGone(t *testing.T) {
	_, udp := sharedSocket(t)
	child := newConn(t, udp, 2)
	parentEnd, childEnd := unixPair(t, 0)
	if err := child.ForwardOlder(childEnd); err != nil {
		t.Fatal(err)
	}
	parentEnd.Close()
	client := dialer(t, udp.LocalAddr())
	cid := genCID(t, 1)
	client.Write(tagged(shortHeader(cid), "#first"))
	client.Write(tagged(shortHeader(cid), "#second"))
	child.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := child.ReadFrom(buf)
	if err != nil || tagOf(buf[:n]) != "#second" {
		t.Fatalf("child read %q, %v; want #second returned once forwarding stopped", buf[:n], err)
	}
	if st := child.Stats(); st.Forwarding || st.ForwardDropped != 1 || st.Forwarded != 0 {
		t.Errorf("stats %+v; want forwarding stopped after one dropped packet", st)
	}
}

func TestStopForwarding(t *testing.T) {
	_, udp := sharedSocket(t)
	child := newConn(t, udp, 2)
	_, childEnd := unixPair(t, 0)
	if err := child.ForwardOlder(childEnd); err != nil {
		t.Fatal(err)
	}
	child.StopForwarding()
	child.StopForwarding() // idempotent
	if child.Stats().Forwarding {
		t.Fatal("still forwarding after StopForwarding")
	}
	if _, err := childEnd.Write([]byte{1}); err == nil {
		t.Error("StopForwarding left the socket to the parent open")
	}
	client := dialer(t, udp.LocalAddr())
	client.Write(tagged(shortHeader(genCID(t, 1)), "#parent"))
	child.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	if n, _, err := child.ReadFrom(buf); err != nil || tagOf(buf[:n]) != "#parent" {
		t.Fatalf("child read %q, %v; want the parent's packet returned", buf[:n], err)
	}
}

func TestBadArguments(t *testing.T) {
	if _, err := New(nil, 1, nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	_, udp := sharedSocket(t)
	c := newConn(t, udp, 1)
	if err := c.ForwardOlder(nil); err == nil {
		t.Error("ForwardOlder(nil) succeeded")
	}
	if err := c.Handoff(nil); err == nil {
		t.Error("Handoff(nil) succeeded")
	}
	if _, err := c.ReadBatch([]ipv4.Message{{}}, 0); !errors.Is(err, errBuffers) {
		t.Errorf("ReadBatch without buffers: %v; want %v", err, errBuffers)
	}
	if _, err := FileUnixConn(nil); err == nil {
		t.Error("FileUnixConn(nil) succeeded")
	}
	// A stream socket would merge datagrams: refused.
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	f0, f1 := os.NewFile(uintptr(fds[0]), "s0"), os.NewFile(uintptr(fds[1]), "s1")
	defer f0.Close()
	defer f1.Close()
	if _, err := FileUnixConn(f0); err == nil {
		t.Error("FileUnixConn accepted a stream socket")
	}
	// A UDP socket is not a unix socket.
	f, err := udp.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := FileUnixConn(f); err == nil {
		t.Error("FileUnixConn accepted a UDP socket")
	}
	c.Close()
	_, childEnd := unixPair(t, 0)
	if err := c.ForwardOlder(childEnd); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ForwardOlder after Close: %v; want net.ErrClosed", err)
	}
}

func TestNewPairIsCloseOnExecDatagram(t *testing.T) {
	pf, cf, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	defer cf.Close()
	for _, f := range []*os.File{pf, cf} {
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_GETFD, 0)
		if errno != 0 || flags&syscall.FD_CLOEXEC == 0 {
			t.Errorf("%s: FD_CLOEXEC not set (flags %#x, %v)", f.Name(), flags, errno)
		}
	}
	p, err := FileUnixConn(pf)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := FileUnixConn(cf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Datagram boundaries hold.
	c.Write([]byte("one"))
	c.Write([]byte("two"))
	buf := make([]byte, 16)
	p.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"one", "two"} {
		n, err := p.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Errorf("read %q, %v; want %q", buf[:n], err, want)
		}
	}
}

// TestConcurrentReaders runs two readers on one forwarding Conn: the second
// one gets its own scratch space (the race detector checks the sharing).
func TestConcurrentReaders(t *testing.T) {
	_, udp := sharedSocket(t)
	child := newConn(t, udp, 2)
	parentEnd, childEnd := unixPair(t, 0)
	if err := child.ForwardOlder(childEnd); err != nil {
		t.Fatal(err)
	}
	const each = 50
	var own atomic.Int64
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Go(func() {
			ms, buf := newBatch(8), make([]byte, 1500)
			for {
				var n int
				var err error
				if r == 0 {
					n, err = child.ReadBatch(ms, 0)
				} else {
					_, _, err = child.ReadFrom(buf)
					n = 1
				}
				if err != nil {
					return
				}
				own.Add(int64(n))
			}
		})
	}
	client := dialer(t, udp.LocalAddr())
	ownPkt, parentPkt := tagged(shortHeader(genCID(t, 2)), "#own"), tagged(shortHeader(genCID(t, 1)), "#parent")
	forwarded := 0
	buf := make([]byte, maxDatagram)
	for range each {
		client.Write(ownPkt)
		client.Write(parentPkt)
		parentEnd.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := parentEnd.Read(buf)
		if err != nil {
			t.Fatalf("after %d forwarded: %v", forwarded, err)
		}
		if d, err := decodeDatagram(buf[:n]); err != nil || tagOf(d.payload) != "#parent" {
			t.Fatalf("forwarded %q, %v; want #parent", buf[:n], err)
		}
		forwarded++
	}
	deadline := time.Now().Add(5 * time.Second)
	for own.Load() < each && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	child.Close()
	wg.Wait()
	if own.Load() != each {
		t.Errorf("readers returned %d own packets; want %d", own.Load(), each)
	}
}

// TestMiddleGenerationPassesOn runs three generations on one socket: the
// newest forwards everything not its own to the middle one, which keeps its
// own packets and passes its parent's on.
func TestMiddleGenerationPassesOn(t *testing.T) {
	udp1, udp2 := sharedSocket(t)
	f, err := udp1.File()
	if err != nil {
		t.Fatal(err)
	}
	pc3, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	g1, g2, g3 := newConn(t, udp1, 1), newConn(t, udp2, 2), newConn(t, pc3.(*net.UDPConn), 3)
	end12, end21 := unixPair(t, 0) // g1 reads end12, g2 forwards on end21
	end23, end32 := unixPair(t, 0) // g2 reads end23, g3 forwards on end32
	if err := g2.ForwardOlder(end21); err != nil {
		t.Fatal(err)
	}
	if err := g1.Handoff(end12); err != nil {
		t.Fatal(err)
	}
	if err := g3.ForwardOlder(end32); err != nil {
		t.Fatal(err)
	}
	if err := g2.Handoff(end23); err != nil {
		t.Fatal(err)
	}
	reads := func(c *Conn) chan string {
		ch := make(chan string, 4)
		go func() {
			buf := make([]byte, 1500)
			for {
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					close(ch)
					return
				}
				ch <- tagOf(buf[:n])
			}
		}()
		return ch
	}
	r1, r2, r3 := reads(g1), reads(g2), reads(g3)
	client := dialer(t, udp1.LocalAddr())
	client.Write(tagged(shortHeader(genCID(t, 1)), "#g1"))
	client.Write(tagged(shortHeader(genCID(t, 2)), "#g2"))
	client.Write(tagged(shortHeader(genCID(t, 3)), "#g3"))
	for _, c := range []struct {
		ch   chan string
		want string
	}{{r1, "#g1"}, {r2, "#g2"}, {r3, "#g3"}} {
		select {
		case got := <-c.ch:
			if got != c.want {
				t.Errorf("got %s; want %s", got, c.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s never arrived", c.want)
		}
	}

	// A datagram that has been passed on too often is dropped, not looped.
	buf := make([]byte, maxDatagram)
	n := encodeDatagram(buf, netip.MustParseAddrPort("127.0.0.1:9"), nil, tagged(shortHeader(genCID(t, 1)), "#loop"))
	buf[offHops] = maxHops
	before := g2.Stats().ForwardDropped
	end32.Write(buf[:n])
	client.Write(tagged(shortHeader(genCID(t, 2)), "#g2-again"))
	select {
	case got := <-r2:
		if got != "#g2-again" {
			t.Errorf("got %s; want #g2-again", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("#g2-again never arrived")
	}
	if g2.Stats().ForwardDropped != before+1 {
		t.Errorf("the looping datagram was not dropped: %+v", g2.Stats())
	}
	select {
	case got := <-r1:
		t.Errorf("g1 got %s; want nothing", got)
	default:
	}
}

// TestReadUDPOne covers the one-datagram batch read used where recvmmsg is
// not (it is what ReadBatch calls on other systems).
func TestReadUDPOne(t *testing.T) {
	_, udp := sharedSocket(t)
	recvTOS(t, udp)
	c := newConn(t, udp, 2)
	client := dialer(t, udp.LocalAddr())
	client.Write([]byte("#one"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	ms := newBatch(2)
	n, err := c.readUDPOne(c.rs, ms)
	if err != nil || n != 1 || string(ms[0].Buffers[0][:ms[0].N]) != "#one" || ms[0].NN == 0 {
		t.Fatalf("readUDPOne = %d, %v, %q, oob %d; want 1 packet #one with control messages", n, err, ms[0].Buffers[0][:ms[0].N], ms[0].NN)
	}
	if c.rs.aps[0].String() != client.LocalAddr().String() {
		t.Errorf("source %v; want %v", c.rs.aps[0], client.LocalAddr())
	}
}
