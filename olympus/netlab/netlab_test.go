package netlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// needLab skips the test when labs cannot be built here (not root, no
// iproute2, no namespaces).
func needLab(t *testing.T) {
	t.Helper()
	if err := Check(); err != nil {
		t.Skipf("skipping: network namespaces unavailable: %v", err)
	}
}

func newLab(t *testing.T, opts Options) *Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return l
}

// listen starts a TCP echo server in h's namespace on ip (any port).
func listen(t *testing.T, h *Host, ip string) string {
	t.Helper()
	var ln net.Listener
	err := h.Do(func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(ip, "0"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// dial connects from h to addr and exchanges one line, within timeout.
func dial(h *Host, addr string, timeout time.Duration) error {
	var c net.Conn
	err := h.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	msg := "hello from " + h.Name + "\n"
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

func TestLabConnectivityAndPartition(t *testing.T) {
	needLab(t)
	l := newLab(t, Options{Hosts: []string{"a", "b", "c"}})
	a, b, c := l.Host("a"), l.Host("b"), l.Host("c")
	for i, h := range l.Hosts {
		if want := fmt.Sprintf("10.77.0.%d", i+1); h.IP.String() != want {
			t.Errorf("host %s has IP %s, want %s", h.Name, h.IP, want)
		}
		if !nsExists(h.NS) || !strings.HasPrefix(h.NS, l.ID+"-") {
			t.Errorf("host %s: namespace %s missing", h.Name, h.NS)
		}
	}

	// A process started in a namespace sees its host's interface only.
	out, err := b.Command("ip", "-4", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr in %s: %v: %s", b.NS, err, out)
	}
	if !strings.Contains(string(out), "eth0") || !strings.Contains(string(out), b.IP.String()+"/24") ||
		strings.Contains(string(out), a.IP.String()+"/") {
		t.Errorf("addresses in %s:\n%s", b.NS, out)
	}

	addr := listen(t, a, a.IP.String())
	for _, h := range []*Host{b, c} {
		if err := dial(h, addr, 10*time.Second); err != nil {
			t.Fatalf("%s -> %s: %v", h.Name, addr, err)
		}
	}
	// Loopback works inside a namespace (lo is up).
	if err := dial(c, listen(t, c, "127.0.0.1"), 10*time.Second); err != nil {
		t.Errorf("loopback in %s: %v", c.NS, err)
	}

	ctx := context.Background()
	if err := l.Partition(ctx, []*Host{a, b}); err != nil {
		t.Fatal(err)
	}
	if err := dial(b, addr, 10*time.Second); err != nil {
		t.Errorf("b -> a in the same group: %v", err)
	}
	if err := dial(c, addr, 300*time.Millisecond); err == nil {
		t.Errorf("c -> a across the partition succeeded")
	}
	if err := l.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dial(c, addr, 10*time.Second); err != nil {
		t.Errorf("c -> a after Heal: %v", err)
	}
}

func TestCloseKillsProcessesAndRemovesNamespaces(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := New(ctx, Options{Hosts: []string{"x"}, Subnet: DefaultSubnet})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The shell says "in" once ip netns exec has entered the namespace and
	// exec'd it, then becomes sleep.
	cmd := l.Host("x").Command("sh", "-c", "echo in; exec sleep 600")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "in\n" {
		t.Fatalf("read %q, %v from the process in the namespace", line, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	pids, err := l.Host("x").Pids()
	if err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Errorf("pids in %s: %v, %v; want [%d] (ip netns exec execs in place)", l.Host("x").NS, pids, err, cmd.Process.Pid)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Errorf("sleep ended with %v, want killed", err)
		}
	case <-ctx.Done():
		t.Fatal("the process in the namespace survived Close")
	}
	for _, ns := range []string{l.Switch, l.Host("x").NS} {
		if nsExists(ns) {
			t.Errorf("namespace %s still exists after Close", ns)
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSweepStaleRemovesDeadOwnersNamespaces(t *testing.T) {
	needLab(t)
	tl, err := findTools()
	if err != nil {
		t.Fatal(err)
	}
	// A pid that is certainly dead: a process that has been waited for.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	const prefix = "dbftsweeptest"
	stale := fmt.Sprintf("%s-%d-abcdef-h", prefix, dead.Process.Pid)
	alive := fmt.Sprintf("%s-%d-abcdef-h", prefix, os.Getppid())
	for _, ns := range []string{stale, alive} {
		if _, err := tl.run(context.Background(), "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tl.remove(ns) })
	}
	SweepStale(prefix)
	if nsExists(stale) {
		t.Errorf("%s (owner pid %d is dead) survived SweepStale", stale, dead.Process.Pid)
	}
	if !nsExists(alive) {
		t.Errorf("%s (owner pid %d is alive) was removed", alive, os.Getppid())
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	if err := platformCheck(); err != nil {
		t.Skip(err)
	}
	if _, err := findTools(); err != nil {
		t.Skip(err)
	}
	for _, o := range []Options{
		{},
		{Hosts: []string{"Bad_Name"}},
		{Hosts: []string{"a", "a"}},
		{Hosts: []string{"sw"}},
		{Hosts: []string{"a", "b", "c"}, Subnet: netip.MustParsePrefix("10.77.0.0/30")},
	} {
		if _, err := New(context.Background(), o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}
