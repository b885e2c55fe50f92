// Package shmstats keeps edge's stats slab in a file mapped MAP_SHARED, so
// that counters carry on across hot restarts: a child that registers the
// same metric as its parent gets the very same 64-bit slot, and counts
// continue instead of resetting or being counted twice.
//
// # Layout
//
// The region is one file, <dir>/edge_stats_<baseID>, where dir is /dev/shm
// (os.TempDir() when /dev/shm is absent), mode 0600. All integers are in the
// machine's byte order (the file never leaves the host). It holds, in order:
//
//   - a 64-byte header: magic "EDGESTAT", layout version, entry size, slot
//     count, maximum key length, the number of registry entries in use and
//     the last process owner id handed out;
//   - the registry: slot count fixed-size entries of EntrySize bytes, each
//     {hash, owner, kind, key length, live flag, key bytes up to MaxKeyLen};
//   - the slab: slot count uint64s, 8-byte aligned. Registry entry i owns
//     slab slot i.
//
// # Invariants
//
//   - Entries are only appended (or, for gauges, reclaimed) while holding an
//     exclusive flock on the file, which the kernel drops if the holder dies,
//     so a crashed process never wedges registration. An entry is fully
//     written before the entry count that makes it visible is stored.
//   - An entry is never removed and its key never changes, so a slot pointer
//     stays valid for as long as the mapping does.
//   - A region whose magic, layout version, entry size, key size or slot
//     count differs from this binary's is refused, never reinterpreted
//     (the error names the file and both values).
//   - Counters: exactly one entry per key (owner 0), shared by every process.
//     A counter only ever increases; nothing resets it while the file exists.
//   - Gauges: one entry per key per live process (owner = the id Open gave
//     that process), so during a drain each process moves only its own
//     value and GaugeSum adds the live ones. Close zeroes this process's
//     gauges and marks them dead; a later process registering the same gauge
//     reclaims a dead entry instead of appending, so the registry grows with
//     the number of processes alive at once, not with the number of restarts.
//
// # Non-goals
//
// Gauges of a process that dies without Close stay live until the file is
// removed (they are not reaped by pid). The metric help text and labels are
// not stored: each process registers its own metrics; the region only maps
// keys to slots. Using a slot after Close unmaps the region is a crash, so
// Close only when nothing touches the stats any more.
package shmstats
