package olympus

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/diembft/diembft/node/fault"
	"github.com/diembft/diembft/p2p"
)

// fakeReplicaEnv makes the test binary act as a replica process for the
// RunLocal tests: RunLocal starts os.Args[0] with the replica's flags.
const fakeReplicaEnv = "OLYMPUS_TEST_FAKE_REPLICA"

func TestMain(m *testing.M) {
	switch os.Getenv(fakeReplicaEnv) {
	case "1", "crash-fault-1":
		os.Exit(fakeReplica(os.Args[1:]))
	case "crash":
		fmt.Fprintln(os.Stderr, "starting")
		fmt.Fprintln(os.Stderr, "fatal: cannot open ledger: disk on fire")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// fakeReplica does what a replica does with Olympus: load its home, listen,
// register, fetch the roster; then it waits for SIGTERM.
func fakeReplica(args []string) int {
	fs := flag.NewFlagSet("replica", flag.ContinueOnError)
	home := fs.String("home", "", "")
	olympusAddr := fs.String("olympus", "", "")
	fs.String("log-level", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	h, err := LoadReplicaHome(*home)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	n, err := p2p.New(ctx, p2p.Config{ListenAddrs: h.Listen, HostKey: h.HostKey, AllowNonMembers: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer n.Close()
	var addrs []string
	for _, a := range n.Addrs() {
		addrs = append(addrs, a.String())
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := Register(rctx, n, *olympusAddr, Registration{ID: h.ID, Addrs: addrs}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("replica %d registered %v\n", h.ID, addrs)
	r, err := FetchRoster(rctx, n, *olympusAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("replica %d has the roster of %d\n", h.ID, len(r.Members))
	if os.Getenv(fakeReplicaEnv) == "crash-fault-1" && h.ID == 1 {
		os.Exit(fault.CrashExitCode) // a crash fault in round 1: before it reports Ready
	}
	if err := ReportReady(rctx, n, *olympusAddr, h.ID); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-ctx.Done()
	return 0
}
