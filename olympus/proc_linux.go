package olympus

import "syscall"

// childAttr puts a replica in its own process group, so that a Ctrl-C on the
// terminal reaches Olympus alone and Olympus stops the replicas in order,
// and has the kernel kill it if Olympus dies without stopping it (no orphan
// replicas holding ports).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
