// Package hotrestart replaces a running edge with a new process (a new
// binary, a new config, or both) without dropping a connection.
//
// Every generation is a Process. The first one binds its sockets; each
// later one inherits all of them (TCP listeners, the UDP sockets of HTTP/3,
// the admin listener and the control socket itself) through
// github.com/cloudflare/tableflip, and binds nothing that its parent
// serves. The protocol, over a unix seqpacket socket named by --base-id in
// an owner-only directory (see SocketPath):
//
//  1. `edge restart` (or SIGHUP) asks the newest process to restart. A
//     second request while a child is starting is refused. If that
//     process's own parent still drains, it is told to end now, so that at
//     most three generations ever live.
//  2. The process starts a child from the binary on disk with the same
//     arguments. The child greets it (hello: protocol version, pid) and is
//     welcomed with its epoch, the TLS session ticket keys and the list of
//     sockets it must inherit; an incompatible child is refused with the
//     reason, which becomes the error `edge restart` prints.
//  3. The child loads and validates its config, maps the shared stats
//     region (hotrestart/shmstats), checks every socket was inherited,
//     warms up and reports ready; on any failure it tells the parent why
//     and exits, and the parent keeps serving.
//  4. The parent then stops accepting and drains: idle cleartext HTTP/1.1
//     connections are handed to the child over the control connection
//     (SCM_RIGHTS), the rest finish within the drain timers.
package hotrestart
