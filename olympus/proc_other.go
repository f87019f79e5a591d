//go:build !linux

package olympus

import "syscall"

// childAttr puts a replica in its own process group, so that a Ctrl-C on the
// terminal reaches Olympus alone and Olympus stops the replicas in order.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
