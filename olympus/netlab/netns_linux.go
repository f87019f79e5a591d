package netlab

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

func platformCheck() error { return nil }

func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Do runs fn on a thread that is inside h's network namespace, so that the
// sockets fn creates (a listener, a dial) belong to h: a test can listen
// and dial as a host of the lab without starting a process. Sockets keep
// their namespace after Do returns. fn must not start goroutines that
// create sockets (they would run on other threads, outside h).
func (h *Host) Do(fn func() error) error {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	target, err := os.Open(netnsDir + "/" + h.NS)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	defer target.Close()
	if err := setns(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("host %s: setns: %w", h.Name, err)
	}
	fnErr := fn()
	if err := setns(self); err != nil {
		// The thread is stuck in h's namespace: leave it locked, so that the
		// runtime ends it with this goroutine instead of reusing it.
		return fmt.Errorf("host %s: leaving the namespace: %w", h.Name, err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }
