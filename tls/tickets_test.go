package tls_test

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/edgeproxy/edge/edge/config"
	edgetls "github.com/edgeproxy/edge/tls"
)

// ticketFixture is a certificate and a way to build listener configs
// with given ticket keys.
type ticketFixture struct {
	ca  *pki
	cfg *config.Config
	l   *config.ListenerTLS
}

func newTicketFixture(t *testing.T) *ticketFixture {
	dir := t.TempDir()
	ca := newPKI(t, dir, "ca")
	c := ca.issue("srv", leafOpts{dns: []string{"resume.test"}})
	return &ticketFixture{ca: ca, cfg: testConfig(dir), l: &config.ListenerTLS{
		Certificates: []config.CertificateFiles{{CertFile: c.certFile, KeyFile: c.keyFile}},
	}}
}

func (f *ticketFixture) server(t *testing.T, k *edgetls.TicketKeys) *tls.Config {
	t.Helper()
	sc, err := edgetls.ServerConfigWith(f.cfg, "listeners[0].tls", f.l, nil, edgetls.ServerOptions{TicketKeys: k})
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func (f *ticketFixture) client(version uint16) *tls.Config {
	return &tls.Config{ServerName: "resume.test", RootCAs: f.ca.pool(), MaxVersion: version,
		ClientSessionCache: tls.NewLRUClientSessionCache(4)}
}

// resumes handshakes and reports whether the session was resumed.
func resumes(t *testing.T, sc, cc *tls.Config) bool {
	t.Helper()
	srv, cli := handshake(t, sc, cc)
	if srv.err != nil || cli.err != nil {
		t.Fatalf("handshake: server %v, client %v", srv.err, cli.err)
	}
	if srv.state.DidResume != cli.state.DidResume {
		t.Fatalf("server DidResume %v, client %v", srv.state.DidResume, cli.state.DidResume)
	}
	return cli.state.DidResume
}

func TestTicketKeysResumption(t *testing.T) {
	f := newTicketFixture(t)
	for _, v := range []struct {
		name    string
		version uint16
	}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}} {
		t.Run(v.name, func(t *testing.T) {
			clock := newFakeClock()
			k, err := edgetls.NewTicketKeys(0, 0) // 12h, keep 2
			if err != nil {
				t.Fatal(err)
			}
			k.SetClock(clock.now)
			sc := f.server(t, k)
			cc := f.client(v.version)
			steps := []struct {
				name   string
				before func()
				want   bool
			}{
				{"first connection: full handshake", nil, false},
				{"second connection resumes", nil, true},
				{"resumes after one rotation (ticket under the previous key)", func() { k.Rotate() }, true},
				{"no resumption once the ticket's key is forgotten", func() { k.Rotate(); k.Rotate(); k.Rotate() }, false},
				{"resumes again", nil, true},
				{"lazy rotation after 13h: previous key still accepted", func() { clock.advance(13 * time.Hour) }, true},
				{"after 40h every key has expired", func() { clock.advance(40 * time.Hour) }, false},
			}
			for _, s := range steps {
				if s.before != nil {
					s.before()
				}
				if got := resumes(t, sc, cc); got != s.want {
					t.Errorf("%s: DidResume = %v, want %v", s.name, got, s.want)
				}
			}
		})
	}
}

func TestTicketKeysExportImport(t *testing.T) {
	f := newTicketFixture(t)
	for _, v := range []struct {
		name    string
		version uint16
	}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}} {
		t.Run(v.name, func(t *testing.T) {
			parentKeys, err := edgetls.NewTicketKeys(0, 0)
			if err != nil {
				t.Fatal(err)
			}
			parentKeys.Rotate() // a previous key travels too
			parent := f.server(t, parentKeys)

			childKeys, _ := edgetls.NewTicketKeys(0, 0)
			if err := childKeys.Import(parentKeys.Export()); err != nil {
				t.Fatalf("Import: %v", err)
			}
			child := f.server(t, childKeys)
			otherKeys, _ := edgetls.NewTicketKeys(0, 0)
			other := f.server(t, otherKeys)

			cc := f.client(v.version)
			if resumes(t, parent, cc) {
				t.Fatalf("first handshake resumed")
			}
			if !resumes(t, child, cc) {
				t.Errorf("server with the imported keys did not resume the parent's session")
			}
			if resumes(t, other, cc) {
				t.Errorf("server with its own keys resumed a session it cannot decrypt")
			}
			// Go's defaults (no TicketKeys) do not share keys between
			// configs either: that is what the import fixes.
			cc2 := f.client(v.version)
			resumes(t, f.server(t, nil), cc2)
			if resumes(t, f.server(t, nil), cc2) {
				t.Errorf("two configs with Go's default ticket keys shared a session")
			}
		})
	}
}

func TestTicketKeysImportErrors(t *testing.T) {
	k, _ := edgetls.NewTicketKeys(time.Hour, 1)
	good := k.Export()
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"wrong version", append([]byte{9}, good[1:]...)},
		{"truncated", good[:len(good)-1]},
		{"no keys", []byte{1, 0}},
	} {
		if err := k.Import(tt.data); !errors.Is(err, edgetls.ErrTicketKeysFormat) {
			t.Errorf("%s: Import error %v, want ErrTicketKeysFormat", tt.name, err)
		}
	}
	if err := k.Import(good); err != nil {
		t.Errorf("Import of a valid export: %v", err)
	}
	if _, err := edgetls.NewTicketKeys(-time.Second, 0); err == nil {
		t.Errorf("NewTicketKeys with a negative period: no error")
	}
	if _, err := edgetls.NewTicketKeys(0, 100); err == nil {
		t.Errorf("NewTicketKeys keeping 100 keys: no error")
	}
}

func BenchmarkTicketKeys(b *testing.B) {
	k, _ := edgetls.NewTicketKeys(0, 0)
	tc := &tls.Config{}
	k.Apply(tc)
	// A real session state, captured from a handshake.
	var ss *tls.SessionState
	dir := b.TempDir()
	ca := newPKI(b, dir, "ca")
	c := ca.issue("srv", leafOpts{dns: []string{"resume.test"}})
	sc := &tls.Config{Certificates: []tls.Certificate{c.tlsCert}, MaxVersion: tls.VersionTLS13}
	sc.WrapSession = func(cs tls.ConnectionState, s *tls.SessionState) ([]byte, error) {
		ss = s
		return tc.WrapSession(cs, s)
	}
	srvC, cliC := net.Pipe()
	go func() {
		s := tls.Server(srvC, sc)
		s.Handshake()
		s.Write([]byte{1})
		s.Close()
	}()
	cl := tls.Client(cliC, &tls.Config{RootCAs: ca.pool(), ServerName: "resume.test", ClientSessionCache: tls.NewLRUClientSessionCache(1)})
	var one [1]byte
	cl.Read(one[:])
	cl.Close()
	if ss == nil {
		b.Fatal("no session state captured")
	}
	var cs tls.ConnectionState
	ticket, err := tc.WrapSession(cs, ss)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("wrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tc.WrapSession(cs, ss); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unwrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if s, err := tc.UnwrapSession(ticket, cs); s == nil || err != nil {
				b.Fatal("ticket did not open", err)
			}
		}
	})
}
