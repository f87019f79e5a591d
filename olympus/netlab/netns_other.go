//go:build !linux

package netlab

import (
	"errors"
	"syscall"
)

func platformCheck() error { return errors.New("network namespaces need Linux") }

func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// Do is not available outside Linux.
func (h *Host) Do(fn func() error) error { return platformCheck() }
