package quicfwd

import (
	"crypto/rand"
	"encoding/binary"
	"testing"
)

// genCID returns a connection ID from NewCIDGenerator(epoch).
func genCID(t testing.TB, epoch uint32) []byte {
	t.Helper()
	g := NewCIDGenerator(epoch)
	id, err := g.GenerateConnectionID()
	if err != nil {
		t.Fatalf("GenerateConnectionID: %v", err)
	}
	if id.Len() != g.ConnectionIDLen() || id.Len() != CIDLen {
		t.Fatalf("connection ID length %d, ConnectionIDLen %d; want %d", id.Len(), g.ConnectionIDLen(), CIDLen)
	}
	return id.Bytes()
}

// shortHeader builds a 1-RTT packet to dcid with some payload.
func shortHeader(dcid []byte) []byte {
	p := []byte{0x40 | 0x01} // fixed bit, 2-byte packet number
	p = append(p, dcid...)
	return append(p, make([]byte, 40)...)
}

// longHeader builds a long-header packet of the given type (0 Initial,
// 1 0-RTT, 2 Handshake) and version.
func longHeader(typ byte, version uint32, dcid, scid []byte) []byte {
	p := []byte{0x80 | 0x40 | typ<<4}
	p = binary.BigEndian.AppendUint32(p, version)
	p = append(p, byte(len(dcid)))
	p = append(p, dcid...)
	p = append(p, byte(len(scid)))
	p = append(p, scid...)
	return append(p, make([]byte, 1200-len(p))...)
}

// unmarked is a fixed 8-byte ID that carries no marker (checked below).
var unmarked = []byte{0x83, 0x94, 0x1d, 0x6a, 0x07, 0xc2, 0x55, 0xe1}

func TestEpochOf(t *testing.T) {
	if _, ok := cidEpoch(unmarked); ok {
		t.Fatal("the fixture unmarked carries a marker; pick other bytes")
	}
	p1, p2 := genCID(t, 1), genCID(t, 2)
	clientSCID := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	tests := []struct {
		name   string
		packet []byte
		epoch  byte
		ok     bool
	}{
		{"short header, epoch 1", shortHeader(p1), 1, true},
		{"short header, epoch 2", shortHeader(p2), 2, true},
		{"short header, epoch 256 is marker 0", shortHeader(genCID(t, 256)), 0, true},
		{"short header, epoch 255", shortHeader(genCID(t, 255)), 255, true},
		{"short header, unmarked ID", shortHeader(unmarked), 0, false},
		{"short header, fixed bit clear (not QUIC)", append([]byte{0x01}, shortHeader(p1)[1:]...), 0, false},
		{"short header, truncated ID", shortHeader(p1)[:CIDLen], 0, false},
		{"Initial with the client's own DCID", longHeader(0, 1, unmarked, clientSCID), 0, false},
		{"Initial with a 16-byte client DCID", longHeader(0, 1, append(append([]byte{}, unmarked...), p1...), clientSCID), 0, false},
		{"Initial after Retry (server-chosen DCID)", longHeader(0, 1, p1, clientSCID), 1, true},
		{"0-RTT with the client's DCID", longHeader(1, 1, unmarked, clientSCID), 0, false},
		{"Handshake to epoch 2", longHeader(2, 1, p2, clientSCID), 2, true},
		{"QUIC v2 Handshake to epoch 1", longHeader(3, 0x6b3343cf, p1, clientSCID), 1, true},
		{"unknown version, marked DCID", longHeader(0, 0x1a2a3a4a, p1, clientSCID), 1, true},
		{"Version Negotiation", longHeader(0, 0, p1, clientSCID), 0, false},
		{"long header, truncated DCID", longHeader(2, 1, p1, nil)[:6+CIDLen-1], 0, false},
		{"long header, no DCID length", []byte{0xc0, 0, 0, 0, 1}, 0, false},
		{"empty", nil, 0, false},
		{"one byte", []byte{0x40}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			epoch, ok := EpochOf(tt.packet)
			if ok != tt.ok || (ok && epoch != tt.epoch) {
				t.Errorf("EpochOf = (%d, %v); want (%d, %v)", epoch, ok, tt.epoch, tt.ok)
			}
		})
	}
}

func TestCIDsDifferAndKeepTheirEpoch(t *testing.T) {
	seen := make(map[string]bool)
	for _, epoch := range []uint32{0, 1, 2, 7, 255} {
		for range 2000 {
			id := genCID(t, epoch)
			if seen[string(id)] {
				t.Fatalf("connection ID %x issued twice", id)
			}
			seen[string(id)] = true
			if e, ok := cidEpoch(id); !ok || e != byte(epoch) {
				t.Fatalf("cidEpoch(%x) = (%d, %v); want (%d, true)", id, e, ok, epoch)
			}
		}
	}
	// The marker bytes are masked by the random ones: they differ from ID to
	// ID, so they do not tell an observer which IDs belong together.
	markers := make(map[string]bool)
	for range 16 {
		markers[string(genCID(t, 1)[cidEpochOff:])] = true
	}
	if len(markers) < 8 {
		t.Errorf("16 IDs of one epoch show only %d different marker byte strings; want them to look random", len(markers))
	}
}

// TestRandomIDsRarelyCarryAMarker bounds how often a client-chosen ID is
// taken for a generation's: about 2^-16.
func TestRandomIDsRarelyCarryAMarker(t *testing.T) {
	const n = 1 << 18
	buf := make([]byte, n*CIDLen)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	marked := 0
	for i := range n {
		if _, ok := cidEpoch(buf[i*CIDLen : (i+1)*CIDLen]); ok {
			marked++
		}
	}
	// Expected 4 (n / 2^16); the chance of more than 20 is below 1e-8.
	if marked > 20 {
		t.Errorf("%d of %d random IDs carry a marker; want about %d", marked, n, n>>16)
	}
}
