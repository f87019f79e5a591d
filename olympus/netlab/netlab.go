// Package netlab builds a small LAN out of Linux network namespaces, so that
// Olympus, the replicas and the clients of an experiment can run as they
// would on different hosts (DESIGN §5, step 5) while every packet stays on
// this machine.
//
// A Lab is one "switch" namespace holding a bridge, and one namespace per
// host joined to the bridge by a veth pair:
//
//	<id>-sw:        br0 with p0, p1, ... (the switch side of each veth)
//	<id>-<host>:    lo (up), eth0 = 10.77.0.<k>/24 (the host side)
//
// Nothing is created in the namespace the program runs in (no interface,
// route or bridge there), so a lab cannot disturb the machine's own
// networking, and two labs with the same subnet do not see each other. Close
// kills whatever still runs inside the lab's namespaces and deletes them,
// which also destroys the veth pairs and the bridge.
//
// Names are <prefix>-<pid>-<random>-<host> so that New can recognise and
// remove the namespaces of a lab whose program died without closing it (its
// pid is gone). It needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the ip
// command of iproute2.
package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultSubnet is the LAN's prefix when Options.Subnet is zero.
var DefaultSubnet = netip.MustParsePrefix("10.77.0.0/24")

const (
	// DefaultPrefix starts the name of every namespace a lab creates.
	DefaultPrefix = "dbft"
	hostIface     = "eth0"
	// commandTimeout bounds one ip command.
	commandTimeout = 10 * time.Second
)

// ErrNotRoot is returned by Check (wrapped) when the program is not root.
var ErrNotRoot = errors.New("network namespaces need root")

// Options describe a lab.
type Options struct {
	// Hosts names the hosts, one namespace each: lower-case letters,
	// digits and '-', at most 20 characters ("olympus", "replica-0", ...).
	Hosts []string
	// Subnet is the LAN's IPv4 prefix; host k (0-based, in Hosts order)
	// gets the (k+1)-th address of it. Zero means DefaultSubnet.
	Subnet netip.Prefix
	// Prefix starts every namespace name; "" means DefaultPrefix.
	Prefix string
}

// Lab is a running LAN of namespaces. Its methods are safe for concurrent
// use.
type Lab struct {
	// ID is the common part of the lab's namespace names,
	// <prefix>-<pid>-<random>.
	ID string
	// Switch is the namespace of the bridge.
	Switch string
	// Subnet is the LAN's prefix.
	Subnet netip.Prefix
	// Hosts in Options.Hosts order.
	Hosts []*Host

	tools tools

	mu         sync.Mutex
	created    []string // namespaces, in creation order
	bridges    []string // in the switch namespace: br0, and br1... once partitioned
	closed     bool
	closeErr   error
	closedDone chan struct{}
}

// Host is one namespace of a lab.
type Host struct {
	Name string     // as in Options.Hosts
	NS   string     // the namespace's name (for ip netns exec)
	IP   netip.Addr // its address on the LAN
	// Port is the switch side of its veth pair, in the Switch namespace.
	Port string
	lab  *Lab
}

// tools are the paths of the commands a lab runs.
type tools struct{ ip string }

// findTools finds iproute2's ip on PATH or where distributions put it
// (sbin directories are often missing from a non-root PATH).
func findTools() (tools, error) {
	if path, err := exec.LookPath("ip"); err == nil {
		return tools{ip: path}, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if st, err := os.Stat(dir + "/ip"); err == nil && st.Mode()&0o111 != 0 {
			return tools{ip: dir + "/ip"}, nil
		}
	}
	return tools{}, errors.New("no ip command (install iproute2)")
}

// Check reports whether labs can be built here: the program is root, the ip
// command exists, and a probe namespace can be created, can hold a bridge
// and a veth pair, can run a program, and can be deleted. The error says
// what is missing; it wraps ErrNotRoot when that is the reason.
func Check() error {
	if err := platformCheck(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w (running as uid %d)", ErrNotRoot, os.Geteuid())
	}
	t, err := findTools()
	if err != nil {
		return err
	}
	ctx := context.Background()
	probe := fmt.Sprintf("%s-%d-probe", DefaultPrefix, os.Getpid())
	if _, err := t.run(ctx, "netns", "add", probe); err != nil {
		return fmt.Errorf("cannot create a network namespace: %w", err)
	}
	defer t.remove(probe)
	for _, args := range [][]string{
		{"-n", probe, "link", "add", "br0", "type", "bridge"},
		{"-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1"},
		{"netns", "exec", probe, t.ip, "link", "show", "v0"},
	} {
		if _, err := t.run(ctx, args...); err != nil {
			return fmt.Errorf("network namespaces are not usable here: %w", err)
		}
	}
	if err := t.remove(probe); err != nil {
		return fmt.Errorf("cannot delete network namespace %s: %w", probe, err)
	}
	return nil
}

var hostName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,19}$`)

// New builds a lab: the switch namespace with its bridge, then one namespace
// per host with lo up and eth0 addressed and up, plugged into the bridge.
// On failure it removes what it created. It first removes the namespaces of
// labs whose program has died (see package doc).
func New(ctx context.Context, opts Options) (_ *Lab, err error) {
	if err := platformCheck(); err != nil {
		return nil, err
	}
	t, err := findTools()
	if err != nil {
		return nil, err
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !hostName.MatchString(prefix) {
		return nil, fmt.Errorf("netlab: prefix %q: want lower-case letters, digits and '-'", prefix)
	}
	subnet := opts.Subnet
	if !subnet.IsValid() {
		subnet = DefaultSubnet
	}
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() {
		return nil, fmt.Errorf("netlab: subnet %s: only IPv4 subnets are supported", subnet)
	}
	if len(opts.Hosts) == 0 {
		return nil, errors.New("netlab: no hosts")
	}
	// Addresses .1 .. .n; the last address of the prefix is its broadcast.
	if free := (1 << (32 - subnet.Bits())) - 2; len(opts.Hosts) > free {
		return nil, fmt.Errorf("netlab: %d hosts do not fit in %s (%d addresses)", len(opts.Hosts), subnet, free)
	}
	seen := make(map[string]bool)
	for _, h := range opts.Hosts {
		if !hostName.MatchString(h) || h == "sw" {
			return nil, fmt.Errorf("netlab: host name %q: want 1 to 20 lower-case letters, digits and '-' (and not \"sw\")", h)
		}
		if seen[h] {
			return nil, fmt.Errorf("netlab: host name %q given twice", h)
		}
		seen[h] = true
	}

	SweepStale(prefix)

	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	l := &Lab{
		ID:         fmt.Sprintf("%s-%d-%s", prefix, os.Getpid(), hex.EncodeToString(rnd[:])),
		Subnet:     subnet,
		tools:      t,
		closedDone: make(chan struct{}),
	}
	l.Switch = l.ID + "-sw"
	register(l)
	defer func() {
		if err != nil {
			_ = l.Close()
		}
	}()

	if err := l.addNS(ctx, l.Switch); err != nil {
		return nil, err
	}
	if err := l.Partition(ctx); err != nil { // creates br0, the LAN
		return nil, err
	}
	addr := subnet.Addr()
	for k, name := range opts.Hosts {
		addr = addr.Next()
		h := &Host{Name: name, NS: l.ID + "-" + name, IP: addr, Port: "p" + strconv.Itoa(k), lab: l}
		if err := l.addHost(ctx, h); err != nil {
			return nil, err
		}
		l.Hosts = append(l.Hosts, h)
	}
	return l, nil
}

func (l *Lab) addHost(ctx context.Context, h *Host) error {
	if err := l.addNS(ctx, h.NS); err != nil {
		return err
	}
	// Both ends are created from the switch namespace: no interface ever
	// appears in the program's own namespace.
	steps := []struct {
		ns   string
		args []string
	}{
		{l.Switch, []string{"link", "add", h.Port, "type", "veth", "peer", "name", hostIface, "netns", h.NS}},
		{l.Switch, []string{"link", "set", h.Port, "master", bridgeName(0), "up"}},
		{h.NS, []string{"addr", "add", netip.PrefixFrom(h.IP, l.Subnet.Bits()).String(), "dev", hostIface}},
		{h.NS, []string{"link", "set", hostIface, "up"}},
		{h.NS, []string{"link", "set", "lo", "up"}},
	}
	for _, s := range steps {
		if err := l.ipIn(ctx, s.ns, s.args...); err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
	}
	return nil
}

// addNS creates a namespace and records it for Close. It holds the lock
// throughout, so that a concurrent Close either prevents it or deletes it.
func (l *Lab) addNS(ctx context.Context, ns string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("netlab: lab is closed")
	}
	if _, err := l.tools.run(ctx, "netns", "add", ns); err != nil {
		return err
	}
	l.created = append(l.created, ns)
	return nil
}

// ipIn runs `ip -n ns args...`.
func (l *Lab) ipIn(ctx context.Context, ns string, args ...string) error {
	_, err := l.tools.run(ctx, append([]string{"-n", ns}, args...)...)
	return err
}

// run runs ip with args, with a timeout, and returns its output; the error
// carries the command line and its output.
func (t tools) run(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, t.ip, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("ip %s: %s", strings.Join(args, " "), msg)
	}
	return out.Bytes(), nil
}

// Host returns the host called name, or nil.
func (l *Lab) Host(name string) *Host {
	for _, h := range l.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Command returns a command that runs name with args inside h's namespace
// (through `ip netns exec`, which execs in place: the process's pid is the
// program's). It is in its own process group, and the kernel kills it if
// the program that started it dies, so that nothing outlives the lab.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(h.lab.tools.ip, append([]string{"netns", "exec", h.NS, name}, args...)...)
	cmd.SysProcAttr = childAttr()
	return cmd
}

// Pids lists the processes running in h's namespace.
func (h *Host) Pids() ([]int, error) { return h.lab.tools.pids(h.NS) }

func (t tools) pids(ns string) ([]int, error) {
	out, err := t.run(context.Background(), "netns", "pids", ns)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Partition splits the LAN: hosts in the same group reach each other and
// no host of another group; the hosts named in no group form one more group
// together. Each group's switch ports are moved to a bridge of their own, so
// packets between groups are dropped by the switch as a pulled cable would
// drop them (TCP and QUIC connections stall and retransmit, as on a real
// LAN). A second Partition replaces the first; Heal joins the LAN again.
func (l *Lab) Partition(ctx context.Context, groups ...[]*Host) error {
	bridge := make(map[*Host]int, len(l.Hosts))
	for g, hosts := range groups {
		for _, h := range hosts {
			if h == nil || h.lab != l {
				return errors.New("netlab: Partition: a host of another lab")
			}
			bridge[h] = g + 1
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.bridges) <= len(groups) {
		br := bridgeName(len(l.bridges))
		if err := l.ipIn(ctx, l.Switch, "link", "add", br, "type", "bridge"); err != nil {
			return err
		}
		if err := l.ipIn(ctx, l.Switch, "link", "set", br, "up"); err != nil {
			return err
		}
		l.bridges = append(l.bridges, br)
	}
	for _, h := range l.Hosts {
		if err := l.ipIn(ctx, l.Switch, "link", "set", h.Port, "master", l.bridges[bridge[h]]); err != nil {
			return err
		}
	}
	return nil
}

// Heal undoes Partition: every host reaches every other again.
func (l *Lab) Heal(ctx context.Context) error { return l.Partition(ctx) }

// bridgeName is the name of the k-th bridge of the switch: br0 is the LAN,
// the others hold the groups of a partition.
func bridgeName(k int) string { return "br" + strconv.Itoa(k) }

// Close kills every process still running in the lab's namespaces and
// deletes them, which removes the veth pairs and the bridge with them. It is
// safe to call more than once and concurrently; every call returns the
// first one's result once it is done.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.closedDone
		return l.closeErr
	}
	l.closed = true
	created := append([]string(nil), l.created...)
	l.mu.Unlock()

	var errs []error
	// Hosts first, the switch last (the reverse of creation).
	for i := len(created) - 1; i >= 0; i-- {
		if err := l.tools.remove(created[i]); err != nil {
			errs = append(errs, err)
		}
	}
	l.closeErr = errors.Join(errs...)
	unregister(l)
	close(l.closedDone)
	return l.closeErr
}

// remove kills the processes in ns and deletes it. A namespace that is
// already gone is not an error.
func (t tools) remove(ns string) error {
	if !nsExists(ns) {
		return nil
	}
	if pids, err := t.pids(ns); err == nil {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if _, err := t.run(context.Background(), "netns", "del", ns); err != nil && nsExists(ns) {
		return err
	}
	return nil
}

// netnsDir is where ip netns keeps its named namespaces.
const netnsDir = "/run/netns"

func nsExists(ns string) bool {
	_, err := os.Stat(netnsDir + "/" + ns)
	return err == nil
}

// SweepStale removes the namespaces (and kills their processes) of labs
// with this prefix whose program is no longer running: what a lab leaves
// behind when its program is killed with SIGKILL. New calls it; errors are
// ignored (a namespace that cannot be removed now is tried again next time).
func SweepStale(prefix string) {
	t, err := findTools()
	if err != nil {
		return
	}
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix+"-")
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		// This process's own labs are closed by their Close.
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // its owner still runs
		}
		_ = t.remove(e.Name())
	}
}

// open labs of this process, for CloseAll.
var open = struct {
	sync.Mutex
	labs map[*Lab]bool
}{labs: make(map[*Lab]bool)}

func register(l *Lab) {
	open.Lock()
	defer open.Unlock()
	open.labs[l] = true
}

func unregister(l *Lab) {
	open.Lock()
	defer open.Unlock()
	delete(open.labs, l)
}

// CloseAll closes every lab of this process that is still open: the last
// resort of a signal handler before the program exits.
func CloseAll() {
	open.Lock()
	labs := make([]*Lab, 0, len(open.labs))
	for l := range open.labs {
		labs = append(labs, l)
	}
	open.Unlock()
	var wg sync.WaitGroup
	for _, l := range labs {
		wg.Go(func() { _ = l.Close() })
	}
	wg.Wait()
}

// CloseOnSignal makes a SIGINT or SIGTERM close every open lab of this
// process before the process dies of the signal as it would have; for
// programs and tests that have no signal handling of their own. stop undoes
// it.
func CloseOnSignal() (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	quit := make(chan struct{})
	var once sync.Once
	go func() {
		select {
		case sig := <-sigs:
			CloseAll()
			signal.Reset(sig)
			_ = syscall.Kill(os.Getpid(), sig.(syscall.Signal))
		case <-quit:
		}
	}()
	return func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(quit)
		})
	}
}
