//go:build !linux

package quicfwd

// validOOB accepts only the empty sequence: control messages are forwarded
// on Linux only.
func validOOB(b []byte) bool { return len(b) == 0 }
