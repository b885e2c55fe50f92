package tls

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Ticket key defaults: a new key every 12 hours, the two previous ones
// still accepted, so a ticket stays resumable for 24 to 36 hours.
const (
	DefaultTicketRotation = 12 * time.Hour
	DefaultTicketKeep     = 2
	maxTicketKeep         = 16
)

const (
	ticketNameLen   = 16
	ticketSecretLen = 32 // AES-256-GCM
	ticketNonceLen  = 12
	ticketExportV1  = 1
	ticketExportKey = ticketNameLen + ticketSecretLen + 8
)

// TicketKeys encrypts the session tickets (TLS 1.2) and PSK identities
// (TLS 1.3) of every listener it is applied to, with keys that rotate.
//
// The current key encrypts; it and the keep previous ones decrypt. A key
// is current for the rotation period, then decrypt-only for keep periods,
// then forgotten, so a stolen key opens only tickets from a bounded
// window (forward secrecy of resumption). Rotation happens lazily, on the
// first handshake after the period is over: there is no goroutine to stop.
//
// Tickets are AES-256-GCM sealed: 16-byte key name, 12-byte random nonce,
// then the sealed tls.SessionState (the key name is the additional data).
// An unknown key name or a ticket that does not open is ignored, and the
// client does a full handshake.
//
// Export and Import carry the keys to another process: hot restart hands
// the parent's keys to the child, so clients resume across a restart. The
// exported bytes are secret (anyone holding them can decrypt recorded
// sessions that resumed): pass them only over the private control socket.
//
// A TicketKeys is safe for concurrent use; one serves the whole process.
type TicketKeys struct {
	period time.Duration
	keep   int
	now    func() time.Time // time source; tests replace it

	mu  sync.Mutex // serializes rotation and Import
	set atomic.Pointer[ticketKeySet]
}

// ticketKeySet is an immutable generation of keys; keys[0] encrypts.
type ticketKeySet struct {
	keys []*ticketKey
}

type ticketKey struct {
	name    [ticketNameLen]byte
	secret  [ticketSecretLen]byte
	created time.Time
	aead    cipher.AEAD
}

// NewTicketKeys returns keys that rotate every rotation (0: 12h) and keep
// keep previous keys (negative: none; 0: DefaultTicketKeep, at most 16).
// The first key is generated at once.
func NewTicketKeys(rotation time.Duration, keep int) (*TicketKeys, error) {
	if rotation < 0 {
		return nil, fmt.Errorf("ticket key rotation %v: want a positive period", rotation)
	}
	if rotation == 0 {
		rotation = DefaultTicketRotation
	}
	switch {
	case keep == 0:
		keep = DefaultTicketKeep
	case keep < 0:
		keep = 0
	case keep > maxTicketKeep:
		return nil, fmt.Errorf("keeping %d old ticket keys: at most %d", keep, maxTicketKeep)
	}
	k := &TicketKeys{period: rotation, keep: keep, now: time.Now}
	if err := k.Rotate(); err != nil {
		return nil, err
	}
	return k, nil
}

// Apply makes tc encrypt and decrypt session tickets with k (through
// tc.WrapSession and tc.UnwrapSession). Rotations take effect without
// touching tc again.
func (k *TicketKeys) Apply(tc *tls.Config) {
	tc.WrapSession = k.wrap
	tc.UnwrapSession = k.unwrap
}

// Rotate makes a fresh key current now, keeps the previous current key
// and older ones up to keep, and forgets the rest.
func (k *TicketKeys) Rotate() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.rotateLocked(k.now())
}

func (k *TicketKeys) rotateLocked(now time.Time) error {
	nk := &ticketKey{created: now}
	if _, err := rand.Read(nk.name[:]); err != nil {
		return fmt.Errorf("generating a session ticket key: %w", err)
	}
	if _, err := rand.Read(nk.secret[:]); err != nil {
		return fmt.Errorf("generating a session ticket key: %w", err)
	}
	if err := nk.init(); err != nil {
		return err
	}
	keys := []*ticketKey{nk}
	if old := k.set.Load(); old != nil {
		keys = append(keys, k.live(old.keys, now, k.keep)...)
	}
	k.set.Store(&ticketKeySet{keys: keys})
	return nil
}

// live returns up to n of keys that may still decrypt at now: a key
// created at c decrypts until c + (keep+1)*period.
func (k *TicketKeys) live(keys []*ticketKey, now time.Time, n int) []*ticketKey {
	life := time.Duration(k.keep+1) * k.period
	out := make([]*ticketKey, 0, n)
	for _, key := range keys {
		if len(out) == n {
			break
		}
		if now.Sub(key.created) < life {
			out = append(out, key)
		}
	}
	return out
}

func (key *ticketKey) init() error {
	block, err := aes.NewCipher(key.secret[:])
	if err != nil {
		return fmt.Errorf("session ticket key: %w", err)
	}
	key.aead, err = cipher.NewGCM(block)
	if err != nil {
		return fmt.Errorf("session ticket key: %w", err)
	}
	return nil
}

// current returns the key set, rotating first if the current key's
// period is over.
func (k *TicketKeys) current() *ticketKeySet {
	set := k.set.Load()
	now := k.now()
	if now.Sub(set.keys[0].created) < k.period {
		return set
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if set = k.set.Load(); now.Sub(set.keys[0].created) >= k.period {
		if err := k.rotateLocked(now); err != nil {
			return set // the random source failed: keep the old key rather than fail handshakes
		}
		set = k.set.Load()
	}
	return set
}

// wrap implements tls.Config.WrapSession.
func (k *TicketKeys) wrap(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	plain, err := ss.Bytes()
	if err != nil {
		return nil, err
	}
	key := k.current().keys[0]
	out := make([]byte, ticketNameLen+ticketNonceLen, ticketNameLen+ticketNonceLen+len(plain)+key.aead.Overhead())
	copy(out, key.name[:])
	if _, err := rand.Read(out[ticketNameLen:]); err != nil {
		return nil, fmt.Errorf("session ticket nonce: %w", err)
	}
	return key.aead.Seal(out, out[ticketNameLen:], plain, out[:ticketNameLen]), nil
}

// unwrap implements tls.Config.UnwrapSession. Tickets it cannot open are
// ignored (nil, nil): the client gets a full handshake.
func (k *TicketKeys) unwrap(identity []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
	if len(identity) < ticketNameLen+ticketNonceLen {
		return nil, nil
	}
	set := k.current()
	now := k.now()
	life := time.Duration(k.keep+1) * k.period
	for _, key := range set.keys {
		if [ticketNameLen]byte(identity[:ticketNameLen]) != key.name {
			continue
		}
		if now.Sub(key.created) >= life {
			return nil, nil
		}
		plain, err := key.aead.Open(nil, identity[ticketNameLen:ticketNameLen+ticketNonceLen],
			identity[ticketNameLen+ticketNonceLen:], identity[:ticketNameLen])
		if err != nil {
			return nil, nil
		}
		ss, err := tls.ParseSessionState(plain)
		if err != nil {
			return nil, nil
		}
		return ss, nil
	}
	return nil, nil
}

// Export returns the keys (current first) in a versioned binary form for
// Import in another process. The bytes are secret.
func (k *TicketKeys) Export() []byte {
	set := k.set.Load()
	out := make([]byte, 2, 2+len(set.keys)*ticketExportKey)
	out[0], out[1] = ticketExportV1, byte(len(set.keys))
	for _, key := range set.keys {
		out = append(out, key.name[:]...)
		out = append(out, key.secret[:]...)
		out = binary.BigEndian.AppendUint64(out, uint64(key.created.UnixNano()))
	}
	return out
}

// ErrTicketKeysFormat is returned (wrapped) by Import for bytes that are
// not an Export of a compatible version.
var ErrTicketKeysFormat = errors.New("not exported session ticket keys")

// Import replaces k's keys with exported ones: their current key becomes
// k's current key, with its original creation time, so the next rotation
// happens when the exporter's would have. Keys too old for k's rotation
// settings are dropped. On error k is unchanged.
func (k *TicketKeys) Import(data []byte) error {
	if len(data) < 2 || data[0] != ticketExportV1 {
		return fmt.Errorf("session ticket keys: %w (version %v)", ErrTicketKeysFormat, data[:min(len(data), 1)])
	}
	n := int(data[1])
	if n == 0 || len(data) != 2+n*ticketExportKey {
		return fmt.Errorf("session ticket keys: %w (%d bytes for %d keys)", ErrTicketKeysFormat, len(data), n)
	}
	keys := make([]*ticketKey, 0, n)
	for p := data[2:]; len(p) > 0; p = p[ticketExportKey:] {
		key := &ticketKey{}
		copy(key.name[:], p)
		copy(key.secret[:], p[ticketNameLen:])
		key.created = time.Unix(0, int64(binary.BigEndian.Uint64(p[ticketNameLen+ticketSecretLen:])))
		if err := key.init(); err != nil {
			return err
		}
		keys = append(keys, key)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	cur := keys[0]
	rest := k.live(keys[1:], now, k.keep)
	k.set.Store(&ticketKeySet{keys: append([]*ticketKey{cur}, rest...)})
	if now.Sub(cur.created) >= k.period {
		return k.rotateLocked(now) // the imported current key has had its time; it stays as a previous one
	}
	return nil
}
