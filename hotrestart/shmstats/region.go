package shmstats

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/edgeproxy/edge/edge/stats"
)

const (
	// Magic is the first 8 bytes of every region file.
	Magic = "EDGESTAT"
	// Version is the layout version this binary reads and writes.
	Version = 1
	// MaxKeyLen is the longest key a registry entry holds.
	MaxKeyLen = 256
	// EntrySize is the size in bytes of one registry entry.
	EntrySize = entryKey + MaxKeyLen
	// headerSize is the size of the header; entries start here.
	headerSize = 64
)

// Header field offsets.
const (
	hdrMagic     = 0  // [8]byte
	hdrVersion   = 8  // uint32
	hdrEntrySize = 12 // uint32
	hdrSlots     = 16 // uint32
	hdrMaxKey    = 20 // uint32
	hdrUsed      = 24 // uint32, atomic: entries published
	hdrOwner     = 32 // uint64, atomic: last owner id handed out
)

// Entry field offsets.
const (
	entryHash   = 0  // uint64
	entryOwner  = 8  // uint64: 0 for counters
	entryKind   = 16 // uint32: stats.Kind + 1
	entryKeyLen = 20 // uint32
	entryLive   = 24 // uint32, atomic: 1 while the owner is alive
	entryKey    = 32 // [MaxKeyLen]byte
)

// ErrRegistryFull is returned (wrapped) when every registry entry is taken.
var ErrRegistryFull = errors.New("stats registry full")

// Region is one process's mapping of the shared stats file. Its methods are
// safe for concurrent use.
type Region struct {
	path  string
	f     *os.File
	mem   []byte
	slots int
	owner uint64

	mu     sync.Mutex // serialises registration within the process
	closed bool
}

// Path returns the file for baseID: edge_stats_<baseID> under /dev/shm, or
// under os.TempDir() when /dev/shm is absent.
func Path(baseID int) string {
	dir := "/dev/shm"
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "edge_stats_"+strconv.Itoa(baseID))
}

// Size returns the size in bytes of a region with the given slot count.
func Size(slots int) int {
	return headerSize + slots*EntrySize + slots*8
}

// Open maps the region for baseID with room for slots metrics, creating it
// if it does not exist. An existing file whose layout differs (magic,
// version, entry size, key size or slot count) is refused. Each Open gets a
// fresh owner id for its gauges.
func Open(baseID int, slots int) (*Region, error) {
	if slots <= 0 || slots > 1<<24 {
		return nil, fmt.Errorf("shmstats: slot count %d out of range (1..%d)", slots, 1<<24)
	}
	path := Path(baseID)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("shmstats: open %s: %w", path, err)
	}
	r, err := open(f, path, slots)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func open(f *os.File, path string, slots int) (*Region, error) {
	if err := lock(f); err != nil {
		return nil, fmt.Errorf("shmstats: lock %s: %w", path, err)
	}
	defer unlock(f)
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("shmstats: stat %s: %w", path, err)
	}
	size := Size(slots)
	fresh := fi.Size() == 0
	if fresh {
		if err := f.Truncate(int64(size)); err != nil {
			return nil, fmt.Errorf("shmstats: size %s: %w", path, err)
		}
	} else if err := checkHeader(f, path, fi.Size(), slots); err != nil {
		return nil, err
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("shmstats: mmap %s: %w", path, err)
	}
	r := &Region{path: path, f: f, mem: mem, slots: slots}
	if fresh {
		ne := binary.NativeEndian
		ne.PutUint32(mem[hdrVersion:], Version)
		ne.PutUint32(mem[hdrEntrySize:], EntrySize)
		ne.PutUint32(mem[hdrSlots:], uint32(slots))
		ne.PutUint32(mem[hdrMaxKey:], MaxKeyLen)
		copy(mem[hdrMagic:], Magic) // last: a header with magic is complete
	}
	r.owner = r.u64(hdrOwner).Add(1)
	return r, nil
}

// checkHeader refuses a file whose layout is not this binary's.
func checkHeader(f *os.File, path string, fileSize int64, slots int) error {
	var h [headerSize]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return fmt.Errorf("shmstats: read header of %s (%d bytes): %w", path, fileSize, err)
	}
	ne := binary.NativeEndian
	if string(h[hdrMagic:hdrMagic+8]) != Magic {
		return fmt.Errorf("shmstats: %s is not an edge stats region (magic %q, want %q)", path, h[hdrMagic:hdrMagic+8], Magic)
	}
	if v := ne.Uint32(h[hdrVersion:]); v != Version {
		return fmt.Errorf("shmstats: %s: incompatible stats layout: file has version %d, this binary %d", path, v, Version)
	}
	if es, mk := ne.Uint32(h[hdrEntrySize:]), ne.Uint32(h[hdrMaxKey:]); es != EntrySize || mk != MaxKeyLen {
		return fmt.Errorf("shmstats: %s: incompatible stats layout: file has entry size %d and key size %d, this binary %d and %d", path, es, mk, EntrySize, MaxKeyLen)
	}
	if n := ne.Uint32(h[hdrSlots:]); int(n) != slots {
		return fmt.Errorf("shmstats: %s: incompatible stats layout: file has %d slots, this binary %d", path, n, slots)
	}
	if fileSize != int64(Size(slots)) {
		return fmt.Errorf("shmstats: %s: incompatible stats layout: file is %d bytes, want %d", path, fileSize, Size(slots))
	}
	return nil
}

// Remove deletes the region file for baseID. Mappings stay valid until
// closed; the next Open starts from zero.
func Remove(baseID int) error {
	if err := os.Remove(Path(baseID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("shmstats: %w", err)
	}
	return nil
}

// Path returns the file this region maps.
func (r *Region) Path() string { return r.path }

// Owner returns this mapping's owner id (its gauges carry it).
func (r *Region) Owner() uint64 { return r.owner }

// Slots returns the slot count.
func (r *Region) Slots() int { return r.slots }

// Slot returns the slot for key and kind, finding the entry an earlier
// process (or handle) created or appending one. Counters share one slot per
// key across every process; gauges get one slot per key per Open (see the
// package doc). Slot is a stats.Allocator.
func (r *Region) Slot(key string, kind stats.Kind) (*atomic.Uint64, error) {
	if len(key) > MaxKeyLen {
		return nil, fmt.Errorf("shmstats: key %.40q... is %d bytes, longer than the %d a registry entry holds", key, len(key), MaxKeyLen)
	}
	if kind != stats.KindCounter && kind != stats.KindGauge {
		return nil, fmt.Errorf("shmstats: key %q: unknown kind %d", key, kind)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("shmstats: %s: region closed", r.path)
	}
	if err := lock(r.f); err != nil {
		return nil, fmt.Errorf("shmstats: lock %s: %w", r.path, err)
	}
	defer unlock(r.f)

	h := hashKey(key)
	owner := uint64(0)
	if kind == stats.KindGauge {
		owner = r.owner
	}
	used := int(r.u32(hdrUsed).Load())
	free := -1 // a dead gauge entry for this key
	for i := 0; i < used; i++ {
		e := r.entry(i)
		if binary.NativeEndian.Uint64(e[entryHash:]) != h || r.entryKey(e) != key {
			continue
		}
		if k := stats.Kind(binary.NativeEndian.Uint32(e[entryKind:]) - 1); k != kind {
			return nil, fmt.Errorf("shmstats: key %q registered as kind %d, now asked for kind %d", key, k, kind)
		}
		if binary.NativeEndian.Uint64(e[entryOwner:]) == owner {
			return r.slot(i), nil
		}
		if kind == stats.KindGauge && free < 0 && r.live(i).Load() == 0 {
			free = i
		}
	}
	if free >= 0 {
		e := r.entry(free)
		r.slot(free).Store(0)
		binary.NativeEndian.PutUint64(e[entryOwner:], owner)
		r.live(free).Store(1)
		return r.slot(free), nil
	}
	if used >= r.slots {
		return nil, fmt.Errorf("shmstats: %s: cannot register %q: all %d entries in use: %w", r.path, key, r.slots, ErrRegistryFull)
	}
	e := r.entry(used)
	ne := binary.NativeEndian
	ne.PutUint64(e[entryHash:], h)
	ne.PutUint64(e[entryOwner:], owner)
	ne.PutUint32(e[entryKind:], uint32(kind)+1)
	ne.PutUint32(e[entryKeyLen:], uint32(len(key)))
	copy(e[entryKey:], key)
	r.slot(used).Store(0)
	r.live(used).Store(1)
	r.u32(hdrUsed).Store(uint32(used + 1)) // publish
	return r.slot(used), nil
}

// GaugeSum returns the sum of key's gauge over every live owner: during a
// drain, the parent's and the child's values together.
// It returns 0 once the region is closed.
func (r *Region) GaugeSum(key string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0
	}
	h := hashKey(key)
	used := int(r.u32(hdrUsed).Load())
	var sum int64
	for i := 0; i < used; i++ {
		e := r.entry(i)
		if binary.NativeEndian.Uint64(e[entryHash:]) != h ||
			stats.Kind(binary.NativeEndian.Uint32(e[entryKind:])-1) != stats.KindGauge ||
			r.entryKey(e) != key || r.live(i).Load() == 0 {
			continue
		}
		sum += int64(r.slot(i).Load())
	}
	return sum
}

// MarkDead zeroes this owner's gauges and marks them dead, so GaugeSum no
// longer counts them and a later process may reclaim their entries. The
// region stays mapped; counters are untouched. Close calls it.
func (r *Region) MarkDead() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	return r.markDead()
}

func (r *Region) markDead() error {
	if err := lock(r.f); err != nil {
		return fmt.Errorf("shmstats: lock %s: %w", r.path, err)
	}
	defer unlock(r.f)
	used := int(r.u32(hdrUsed).Load())
	for i := 0; i < used; i++ {
		e := r.entry(i)
		if stats.Kind(binary.NativeEndian.Uint32(e[entryKind:])-1) == stats.KindGauge &&
			binary.NativeEndian.Uint64(e[entryOwner:]) == r.owner && r.live(i).Load() == 1 {
			r.live(i).Store(0)
			r.slot(i).Store(0)
		}
	}
	return nil
}

// Close marks this owner's gauges dead, unmaps the region and closes the
// file. Every slot pointer it handed out is invalid afterwards. The file
// itself stays, with its counters.
func (r *Region) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	errDead := r.markDead()
	errUnmap := syscall.Munmap(r.mem)
	r.mem = nil
	errClose := r.f.Close()
	if err := errors.Join(errDead, errUnmap, errClose); err != nil {
		return fmt.Errorf("shmstats: close %s: %w", r.path, err)
	}
	return nil
}

func (r *Region) entry(i int) []byte {
	off := headerSize + i*EntrySize
	return r.mem[off : off+EntrySize : off+EntrySize]
}

func (r *Region) entryKey(e []byte) string {
	n := binary.NativeEndian.Uint32(e[entryKeyLen:])
	if n > MaxKeyLen {
		n = MaxKeyLen
	}
	return string(e[entryKey : entryKey+int(n)])
}

func (r *Region) slot(i int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&r.mem[headerSize+r.slots*EntrySize+i*8]))
}

func (r *Region) live(i int) *atomic.Uint32 {
	return r.u32(headerSize + i*EntrySize + entryLive)
}

func (r *Region) u32(off int) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&r.mem[off]))
}

func (r *Region) u64(off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&r.mem[off]))
}

func hashKey(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64()
}

func lock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}

func unlock(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
