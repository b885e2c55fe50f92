//go:build !linux

package tls_test

import "os/exec"

// dieWithParent does nothing where the kernel offers no parent-death
// signal; TestMain still kills pebble at the end.
func dieWithParent(*exec.Cmd) {}
