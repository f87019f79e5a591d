package main

import "syscall"

// childAttr puts a child in its own process group (a Ctrl-C on the terminal
// reaches the launcher alone, which stops everything in order) and has the
// kernel kill it if the launcher dies, so a second Ctrl-C or a kill -9 of
// the launcher leaves no orphans.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
