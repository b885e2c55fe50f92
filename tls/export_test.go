package tls

import "time"

// Test hooks, visible to package tls_test only.

// SetChallengeTypes pins the ACME challenge types certmagic may use, so a
// test exercises the one it means to. Call before Start.
func (m *ACME) SetChallengeTypes(http01, tlsALPN01 bool) {
	m.disableHTTP01, m.disableTLSALPN01 = !http01, !tlsALPN01
}

// SetClock replaces the Stapler's time source. Call before any use.
func (s *Stapler) SetClock(now func() time.Time) { s.now = now }

// SetClock replaces the TicketKeys' time source. Call before any use.
func (k *TicketKeys) SetClock(now func() time.Time) { k.now = now }
