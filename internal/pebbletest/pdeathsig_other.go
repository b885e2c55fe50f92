//go:build !linux

package pebbletest

import "os/exec"

// dieWithParent does nothing where the kernel offers no parent-death
// signal; Close still kills pebble.
func dieWithParent(*exec.Cmd) {}
