package quicfwd

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/edgeproxy/edge/internal/testcert"
)

const testALPN = "quicfwd-test"

// testTLS returns a server config with a fresh self-signed certificate for
// 127.0.0.1 and a client config that trusts it.
func testTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	c := testcert.Loopback(t, "quicfwd test")
	server = &tls.Config{Certificates: []tls.Certificate{c.TLS()}, NextProtos: []string{testALPN}}
	client = &tls.Config{RootCAs: c.Pool(), NextProtos: []string{testALPN}, ServerName: "127.0.0.1"}
	return server, client
}

var quicConf = &quic.Config{MaxIdleTimeout: 10 * time.Second, HandshakeIdleTimeout: 5 * time.Second}

// serveEcho answers every stream on tr with "<name>: <what the stream sent>".
func serveEcho(t testing.TB, tr *quic.Transport, name string, tlsConf *tls.Config) {
	t.Helper()
	ln, err := tr.Listen(tlsConf, quicConf)
	if err != nil {
		t.Fatalf("%s: Listen: %v", name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				for {
					str, err := conn.AcceptStream(context.Background())
					if err != nil {
						return
					}
					go func() {
						defer str.Close()
						msg, err := io.ReadAll(str)
						if err != nil {
							return
						}
						fmt.Fprintf(str, "%s: %s", name, msg)
					}()
				}
			}()
		}
	}()
}

// roundTrip sends msg on a new stream of conn and returns the answer.
func roundTrip(conn *quic.Conn, msg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return "", err
	}
	str.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(str, msg); err != nil {
		return "", err
	}
	str.Close()
	b, err := io.ReadAll(str)
	return string(b), err
}

func dialQUIC(t testing.TB, addr net.Addr, tlsConf *tls.Config) *quic.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr.String(), tlsConf, quicConf)
	if err != nil {
		t.Fatalf("dialling %v: %v", addr, err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return conn
}

// restart is a parent generation with a client connection, and a child
// started on the same UDP socket.
type restart struct {
	addr                net.Addr
	parent, child       *Conn
	parentTr, childTr   *quic.Transport
	old                 *quic.Conn
	clientTLS           *tls.Config
	parentEnd, childEnd *net.UnixConn
}

// startRestart runs the parent (epoch 1) with a client that has echoed once,
// then starts the child (epoch 2) on a second handle of the same socket and
// hands off; with forward false, the child does not forward and the parent
// still stops reading the socket (the situation without this package).
func startRestart(t *testing.T, forward bool) *restart {
	t.Helper()
	serverTLS, clientTLS := testTLS(t)
	var resetKey quic.StatelessResetKey
	rand.Read(resetKey[:])
	pudp, cudp := sharedSocket(t)
	r := &restart{addr: pudp.LocalAddr(), clientTLS: clientTLS}

	r.parent = newConn(t, pudp, 1)
	r.parentTr = &quic.Transport{Conn: r.parent, ConnectionIDGenerator: NewCIDGenerator(1), StatelessResetKey: &resetKey}
	t.Cleanup(func() { r.parentTr.Close() })
	serveEcho(t, r.parentTr, "parent", serverTLS)

	r.old = dialQUIC(t, r.addr, clientTLS)
	if got, err := roundTrip(r.old, "hello"); err != nil || got != "parent: hello" {
		t.Fatalf("first round trip = %q, %v; want \"parent: hello\"", got, err)
	}

	r.parentEnd, r.childEnd = unixPair(t, pairSendBuffer)
	r.child = newConn(t, cudp, 2)
	if forward {
		if err := r.child.ForwardOlder(r.childEnd); err != nil {
			t.Fatal(err)
		}
	}
	r.childTr = &quic.Transport{Conn: r.child, ConnectionIDGenerator: NewCIDGenerator(2), StatelessResetKey: &resetKey}
	t.Cleanup(func() { r.childTr.Close() })
	serveEcho(t, r.childTr, "child", serverTLS)
	if err := r.parent.Handoff(r.parentEnd); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestHotRestartKeepsParentConnections is the whole scheme with real quic-go
// on both sides: after the child takes the socket over, the parent's client
// connection keeps working through forwarding, and new clients reach the
// child.
func TestHotRestartKeepsParentConnections(t *testing.T) {
	r := startRestart(t, true)

	for i := range 5 {
		msg := fmt.Sprintf("still there %d", i)
		if got, err := roundTrip(r.old, msg); err != nil || got != "parent: "+msg {
			t.Fatalf("round trip %d on the parent's connection = %q, %v; want %q", i, got, err, "parent: "+msg)
		}
	}
	cs, ps := r.child.Stats(), r.parent.Stats()
	if cs.Forwarded == 0 || ps.Received == 0 || cs.ForwardDropped != 0 || ps.Malformed != 0 {
		t.Errorf("child stats %+v, parent stats %+v; want the parent's packets forwarded by the child and received", cs, ps)
	}

	fresh := dialQUIC(t, r.addr, r.clientTLS)
	if got, err := roundTrip(fresh, "new"); err != nil || got != "child: new" {
		t.Fatalf("round trip on a new connection = %q, %v; want \"child: new\"", got, err)
	}
	// Both at once.
	if got, err := roundTrip(r.old, "again"); err != nil || got != "parent: again" {
		t.Fatalf("parent's connection after a child connection = %q, %v", got, err)
	}
	if got, err := roundTrip(fresh, "again"); err != nil || got != "child: again" {
		t.Fatalf("child's connection = %q, %v", got, err)
	}
	t.Logf("child forwarded %d packets, parent received %d", r.child.Stats().Forwarded, r.parent.Stats().Received)
}

// TestWithoutForwardingParentConnectionsBreak is the control case: the same
// restart without ForwardOlder. The child's quic-go sees the parent's
// packets, knows no such connection and resets it.
func TestWithoutForwardingParentConnectionsBreak(t *testing.T) {
	r := startRestart(t, false)
	got, err := roundTrip(r.old, "still there")
	var reset *quic.StatelessResetError
	if !errors.As(err, &reset) {
		t.Fatalf("round trip without forwarding = %q, %v; want a stateless reset", got, err)
	}
	if st := r.child.Stats(); st.Forwarded != 0 {
		t.Errorf("child forwarded %d packets without ForwardOlder", st.Forwarded)
	}
}

// TestParentGoneResetsItsClients: once the parent has exited, forwarding
// stops by itself and the parent's leftover clients get a stateless reset
// instead of waiting for their idle timeout.
func TestParentGoneResetsItsClients(t *testing.T) {
	r := startRestart(t, true)
	if got, err := roundTrip(r.old, "bye"); err != nil || got != "parent: bye" {
		t.Fatalf("round trip = %q, %v", got, err)
	}
	r.parentTr.Close()
	r.parent.Close()
	start := time.Now()
	got, err := roundTrip(r.old, "anyone?")
	var reset *quic.StatelessResetError
	if !errors.As(err, &reset) {
		t.Fatalf("round trip after the parent exited = %q, %v; want a stateless reset", got, err)
	}
	if st := r.child.Stats(); st.Forwarding {
		t.Errorf("child still forwarding after the parent's socket closed: %+v", st)
	}
	t.Logf("client reset %v after the parent exited", time.Since(start))
	// The child serves on.
	fresh := dialQUIC(t, r.addr, r.clientTLS)
	if got, err := roundTrip(fresh, "new"); err != nil || !strings.HasPrefix(got, "child: ") {
		t.Fatalf("new connection = %q, %v; want the child's answer", got, err)
	}
}
