// Command replica runs one DiemBFT replica: it reads its home directory
// (written by `diembft testnet` or by Olympus in local mode), registers its
// listen addresses with Olympus, waits for the signed roster, and runs the
// consensus event loop until SIGINT or SIGTERM. Started again on the same
// home it resumes from its disk (spec/config.md §1).
package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	stdnet "net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/spf13/cobra"

	"github.com/diembft/diembft/node"
	"github.com/diembft/diembft/node/fault"
	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/p2p"
	"github.com/diembft/diembft/protocol/leader"
)

type usageError struct{ error }

func main() {
	var home, olympusAddr, metricsAddr, logLevel, cpuProfile, traceFile, roundTrace string
	var listen []string
	var joinTimeout time.Duration
	cmd := &cobra.Command{
		Use:           "replica --home DIR [--olympus MULTIADDR]",
		Short:         "Run one DiemBFT replica",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := p2p.SetupLogging(logLevel); err != nil {
				return usageError{fmt.Errorf("--log-level: %w", err)}
			}
			if home == "" {
				return usageError{errors.New("--home is required")}
			}
			stopProfiles, err := startProfiles(home, cpuProfile, traceFile)
			if err != nil {
				return err
			}
			defer stopProfiles()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if roundTrace != "" && !filepath.IsAbs(roundTrace) {
				roundTrace = filepath.Join(home, roundTrace)
			}
			return run(ctx, home, olympusAddr, listen, metricsAddr, roundTrace, joinTimeout)
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "replica home directory (from 'diembft testnet' or Olympus local mode)")
	cmd.Flags().StringVar(&olympusAddr, "olympus", "", "Olympus multiaddr ending in /p2p/<peer-id> (default: the one in the home's replica.toml)")
	cmd.Flags().StringSliceVar(&listen, "listen", nil, "listen multiaddr(s) (default: those in replica.toml)")
	cmd.Flags().StringVar(&metricsAddr, "metrics", "", "serve Prometheus metrics on this host:port")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a pprof CPU profile of the whole run to this file (relative to --home), e.g. for diembft bench")
	cmd.Flags().StringVar(&traceFile, "trace", "", "write a runtime execution trace of the whole run to this file (relative to --home)")
	cmd.Flags().StringVar(&roundTrace, "round-trace", "", "write the round trace (microsecond timestamps of each proposal, vote and commit step) to this file (relative to --home), e.g. for diembft bench --round-trace")
	cmd.Flags().DurationVar(&joinTimeout, "join-timeout", 2*time.Minute, "how long to wait for Olympus and the other replicas")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// renewEvery is how often a running replica renews its registration and
// Ready with Olympus (olympus.KeepRegistered): a restarted Olympus serves
// the committee again within this long.
const renewEvery = 3 * time.Second

func run(ctx context.Context, homeDir, olympusAddr string, listen []string, metricsAddr, roundTrace string, joinTimeout time.Duration) error {
	home, err := olympus.LoadReplicaHome(homeDir)
	if err != nil {
		return usageError{err} // a missing or broken home is a usage error, as for bin/olympus
	}
	if olympusAddr == "" {
		olympusAddr = home.Olympus
	}
	if olympusAddr == "" {
		return usageError{errors.New("--olympus is required (the home's replica.toml names none)")}
	}
	if _, err := p2p.ParsePinned(olympusAddr); err != nil {
		return usageError{fmt.Errorf("--olympus: %w", err)}
	}
	if len(listen) == 0 {
		listen = home.Listen
	}
	var metricsLn stdnet.Listener
	if metricsAddr != "" {
		// Bound before the join, so that a bad or busy --metrics is said at
		// once (it was only after every replica had joined, and the replica
		// then ran on without metrics).
		ln, err := stdnet.Listen("tcp", metricsAddr)
		var bad *stdnet.AddrError
		if errors.As(err, &bad) {
			return usageError{fmt.Errorf("--metrics: %w", err)}
		}
		if err != nil {
			return fmt.Errorf("--metrics: %w", err)
		}
		defer ln.Close()
		metricsLn = ln
	}
	net, err := p2p.New(ctx, p2p.Config{ListenAddrs: listen, HostKey: home.HostKey, AllowNonMembers: true})
	var bad *p2p.ListenAddrError
	if errors.As(err, &bad) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	defer net.Close()

	joinCtx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	addrs := registerAddrs(net.Addrs()) // Host.Addrs can still be empty right after start; Addrs falls back to the listen addresses
	reg := olympus.Registration{
		ID: home.ID, Addrs: addrs, ChainID: home.ChainID, ConsensusKey: home.ConsensusKey.Public().(ed25519.PublicKey),
	}
	if err := olympus.Register(joinCtx, net, olympusAddr, reg); err != nil {
		return fmt.Errorf("register with olympus: %w", err)
	}
	// Renewed from now on, so that an Olympus restarted while the committee
	// is still joining learns this replica again (KeepRegistered).
	ready := make(chan struct{})
	go func() {
		if err := olympus.KeepRegistered(ctx, net, olympusAddr, reg, renewEvery, ready); err != nil {
			fmt.Fprintln(os.Stderr, "replica: olympus refused this replica's registration:", err)
		}
	}()
	roster, err := olympus.FetchRoster(joinCtx, net, olympusAddr)
	if err != nil {
		return fmt.Errorf("roster: %w", err)
	}
	if roster.ChainID != home.ChainID {
		return fmt.Errorf("roster is for chain %q, this home is for %q", roster.ChainID, home.ChainID)
	}
	if int(home.ID) >= len(roster.Members) || roster.Members[home.ID].PeerID != net.ID() ||
		!roster.Members[home.ID].ConsensusKey.Equal(home.ConsensusKey.Public()) {
		return fmt.Errorf("roster does not list this replica (id %d, peer %s) with this home's keys", home.ID, net.ID())
	}
	infos, err := roster.AddrInfos()
	if err != nil {
		return err
	}
	net.SetMembers(infos)
	if err := net.StartPubSub(ctx); err != nil {
		return err
	}
	params, err := nodeParams(roster.Params)
	if err != nil {
		return err
	}
	var peers []peer.ID
	for _, m := range roster.Members {
		peers = append(peers, m.PeerID)
	}
	// A home with faults.json (written by Olympus in local mode) runs the
	// configured fault injection; faults.jsonl records what fired.
	faults, err := fault.Open(home.Dir, int(home.ID))
	if err != nil {
		return fmt.Errorf("fault injection: %w", err)
	}
	defer faults.Close()
	r, err := node.New(node.Config{
		ID: home.ID, Home: home.Dir, ConsensusKey: home.ConsensusKey,
		Committee: roster.Committee(), Peers: peers, Params: params, Net: net,
		Faults: faults, RoundTrace: roundTrace,
		Ready: func() { close(ready) }, // KeepRegistered reports it at once, off the event loop's way
	})
	if err != nil {
		return err
	}
	if metricsLn != nil {
		srv := &http.Server{Handler: r.Metrics().Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintln(os.Stderr, "replica: metrics:", err)
			}
		}()
		defer srv.Close()
	}
	fmt.Printf("replica %d (%s) running on %s\n", home.ID, net.ID(), strings.Join(addrs, " "))
	return r.Run(ctx)
}

// startProfiles starts the CPU profile and the execution trace the flags ask
// for; the returned function stops them and closes the files. They cover the
// replica's whole life, so a benchmark that excludes warm-up from its figures
// still shows start-up in the profile.
func startProfiles(home, cpuProfile, traceFile string) (func(), error) {
	var stops []func()
	stopAll := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	open := func(name string) (*os.File, error) {
		if !filepath.IsAbs(name) {
			name = filepath.Join(home, name)
		}
		return os.Create(name)
	}
	if cpuProfile != "" {
		f, err := open(cpuProfile)
		if err != nil {
			return nil, usageError{fmt.Errorf("--cpuprofile: %w", err)}
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
	}
	if traceFile != "" {
		f, err := open(traceFile)
		if err != nil {
			stopAll()
			return nil, usageError{fmt.Errorf("--trace: %w", err)}
		}
		if err := trace.Start(f); err != nil {
			f.Close()
			stopAll()
			return nil, fmt.Errorf("--trace: %w", err)
		}
		stops = append(stops, func() { trace.Stop(); f.Close() })
	}
	return stopAll, nil
}

func nodeParams(p olympus.Params) (node.Params, error) {
	mode := leader.Reputation
	switch p.Election {
	case "reputation", "":
	case "round-robin":
		mode = leader.RoundRobin
	default:
		return node.Params{}, fmt.Errorf("roster: unknown election %q", p.Election)
	}
	ms := func(v int) time.Duration { return time.Duration(v) * time.Millisecond }
	return node.Params{
		Delta: ms(p.DeltaMs), RoundTimeout: ms(p.RoundTimeoutMs), Backoff: p.Backoff, BackoffCap: p.BackoffCap,
		Election: mode, WindowSize: p.WindowSize, ExcludeSize: p.ExcludeSize, MaxRequests: p.MaxRequests,
	}, nil
}

// registerAddrs is what a replica tells Olympus: its addresses, without the
// loopback ones when it has others (a replica listening on 0.0.0.0 would
// otherwise send every other host dialling its own loopback first).
func registerAddrs(all []ma.Multiaddr) []string {
	var out, loop []string
	for _, a := range all {
		if manet.IsIPLoopback(a) {
			loop = append(loop, a.String())
		} else {
			out = append(out, a.String())
		}
	}
	if len(out) == 0 {
		return loop
	}
	return out
}
