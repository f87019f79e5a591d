package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/p2p"
)

const waitLimit = 20 * time.Second

// idleReplicaEnv makes the test binary stand in for bin/replica: it waits
// for SIGTERM, which is all local mode's process handling needs.
const idleReplicaEnv = "OLYMPUS_CMD_TEST_IDLE_REPLICA"

func TestMain(m *testing.M) {
	if os.Getenv(idleReplicaEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		<-ctx.Done()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "give --home DIR"},
		{[]string{"--home", "a", "--config", "b"}, "exclude each other"},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"--home", "a", "extra"}, `unexpected argument "extra"`},
		{[]string{"--config", "c.toml", "--listen", "/ip4/0.0.0.0/tcp/1"}, "--listen applies to LAN mode"},
		{[]string{"--home", "a", "--log-level", "loud"}, "--log-level"},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), tc.args, io.Discard, &stderr)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", tc.args, code, stderr.String())
		}
		first, _, _ := strings.Cut(stderr.String(), "\n")
		if !strings.HasPrefix(first, "olympus: ") || !strings.Contains(first, tc.want) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: stderr %q, want one line containing %q", tc.args, stderr.String(), tc.want)
		}
	}
}

// TestBadListenAddress: a --listen that is not a multiaddr is a usage error
// (exit 2), said in one line.
func TestBadListenAddress(t *testing.T) {
	dir := t.TempDir()
	if err := olympus.WriteTestnet(dir, olympus.TestnetOptions{Replicas: 4, ChainID: "listen-test"}); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"--home", filepath.Join(dir, olympus.OlympusDir), "--listen", "garbage"}, io.Discard, &stderr)
	if code != 2 || !strings.HasPrefix(stderr.String(), `olympus: listen address "garbage"`) || strings.Count(stderr.String(), "\n") != 1 {
		t.Fatalf("exit %d, stderr %q; want 2 and one line naming the address", code, stderr.String())
	}
}

func TestFileAndRuntimeErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"--home", missing}, io.Discard, &stderr); code != 2 {
		t.Fatalf("missing home: exit %d, want 2", code)
	}
	if got := stderr.String(); got != "olympus: home "+missing+": no such directory\n" {
		t.Fatalf("stderr %q", got)
	}

	// A busy port is a runtime error.
	dir := t.TempDir()
	if err := olympus.WriteTestnet(dir, olympus.TestnetOptions{Replicas: 4}); err != nil {
		t.Fatal(err)
	}
	// A plain socket (libp2p's own would share the port through SO_REUSEPORT).
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", busy.Addr().(*net.TCPAddr).Port)
	stderr.Reset()
	code := run(context.Background(), []string{"--home", filepath.Join(dir, "olympus"), "--listen", port}, io.Discard, &stderr)
	if code != 1 || stderr.String() != "olympus: listen "+port+": address already in use\n" {
		t.Fatalf("busy port: exit %d, stderr %q", code, stderr.String())
	}

	stderr.Reset()
	if code := run(context.Background(), []string{"--help"}, io.Discard, &stderr); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
}

// startRun runs the command in the background and returns the lines it
// prints on stdout and its exit status.
func startRun(t *testing.T, ctx context.Context, args ...string) (<-chan string, <-chan int) {
	t.Helper()
	pr, pw := io.Pipe()
	lines := make(chan string, 16)
	code := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	go func() {
		c := run(ctx, args, pw, io.Discard)
		pw.Close()
		code <- c
	}()
	return lines, code
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

func TestHomeMode(t *testing.T) {
	dir := t.TempDir()
	if err := olympus.WriteTestnet(dir, olympus.TestnetOptions{Replicas: 4}); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, olympus.OlympusDir)
	oh, err := olympus.LoadOlympusHome(home)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lines, code := startRun(t, ctx, "--home", home, "--listen", "/ip4/127.0.0.1/tcp/0", "--log-level", "error")

	line := recv(t, lines, "the listening line")
	addr, ok := strings.CutPrefix(line, "olympus listening on ")
	if !ok || !strings.HasSuffix(addr, "/p2p/"+oh.PeerID().String()) {
		t.Fatalf("line %q", line)
	}
	got, err := olympus.ReadMultiaddrs(home)
	if err != nil || len(got) != 1 || got[0] != addr {
		t.Fatalf("multiaddrs file: %v, %v", got, err)
	}

	// It is Olympus: a replica of the committee can register with it.
	rh, err := olympus.LoadReplicaHome(filepath.Join(dir, "replica-2"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := p2p.New(context.Background(), p2p.Config{HostKey: rh.HostKey})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), waitLimit)
	defer rcancel()
	if err := olympus.Register(rctx, n, addr, olympus.Registration{ID: 2, Addrs: []string{n.Addrs()[0].String()}}); err != nil {
		t.Fatal(err)
	}

	cancel() // SIGINT
	if c := recv(t, code, "exit"); c != 0 {
		t.Fatalf("exit %d after the signal", c)
	}
}

func TestLocalMode(t *testing.T) {
	t.Setenv(idleReplicaEnv, "1")
	work := t.TempDir()
	cfgPath := filepath.Join(work, "small.toml")
	if err := os.WriteFile(cfgPath, []byte("[committee]\nf = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(work, "run")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lines, code := startRun(t, ctx, "--config", cfgPath, "--out", out, "--replica-bin", os.Args[0], "--log-level", "error")

	first := recv(t, lines, "the listening lines")
	if !strings.HasPrefix(first, "olympus listening on /ip4/127.0.0.1/") {
		t.Fatalf("line %q", first)
	}
	addrs, err := olympus.ReadMultiaddrs(out)
	if err != nil || len(addrs) == 0 || "olympus listening on "+addrs[0] != first {
		t.Fatalf("multiaddrs file: %v, %v", addrs, err)
	}
	for _, p := range []string{"homes/olympus/olympus.toml", "homes/replica-3/consensus.key", "logs/replica-0.log"} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if c := recv(t, code, "exit"); c != 0 {
		t.Fatalf("exit %d after the signal", c)
	}
}
