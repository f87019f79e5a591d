// Command olympus runs Olympus, the committee's rendezvous, key authority and
// roster signer.
//
// LAN mode serves a committee written by `diembft testnet`:
//
//	olympus --home DIR [--listen MULTIADDR]
//
// Local mode runs a whole experiment committee on this machine, starting the
// replicas as child processes and stopping them when it is stopped:
//
//	olympus --config CONFIG [--out DIR]
//
// On start it prints one line per listen address,
// "olympus listening on <multiaddr>/p2p/<peer-id>", and writes the same
// lines to DIR/multiaddrs (the home in LAN mode, the run directory in local
// mode). SIGINT or SIGTERM stops it. Exit status: 0 after a clean stop, 1 on
// a runtime error (a busy port, a replica that dies before the committee is
// complete), 2 on a usage error (a bad flag, or an unusable home or config).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	logging "github.com/ipfs/go-log/v2"
	"github.com/spf13/cobra"

	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/olympus/config"
	"github.com/diembft/diembft/p2p"
)

var log = logging.Logger("olympus")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a bad command line: exit status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

type options struct {
	home       string
	listen     []string
	configPath string
	out        string
	replicaBin string
	logLevel   string
	seed       int64 // --seed: overrides the config's seed (local mode)
	seedSet    bool
}

// run is the whole command; ctx is cancelled by SIGINT or SIGTERM.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	cmd := &cobra.Command{
		Use:   "olympus (--home DIR [--listen MULTIADDR] | --config CONFIG [--out DIR])",
		Short: "Run Olympus: rendezvous, key authority and roster signer of a DiemBFT committee",
		Long: `Olympus knows the committee (chain id, f, members' peer ids and consensus keys),
records where each replica listens, and once all have registered signs the
roster with its libp2p key. Replicas and clients pin it by its /p2p/<peer-id>.

LAN mode (--home): serve the committee of a home written by 'diembft testnet'.
Local mode (--config): write homes for the experiment's committee under --out,
start Olympus on 127.0.0.1 and the replicas as child processes; SIGINT or
SIGTERM stops the replicas (SIGTERM, then SIGKILL after a grace period) and
Olympus.

On start Olympus prints "olympus listening on <multiaddr>" for every listen
address and writes the same lines to DIR/multiaddrs.`,
		Example: `  olympus --home testnet/olympus
  olympus --home testnet/olympus --listen /ip4/0.0.0.0/tcp/9000
  olympus --config configs/default.toml --out runs/try1`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected argument %q (olympus takes flags only)", args[0])
			}
			return nil
		},
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.seedSet = cmd.Flags().Changed("seed")
			if err := o.check(); err != nil {
				return err
			}
			if err := p2p.SetupLogging(o.logLevel); err != nil {
				return usageError{fmt.Errorf("--log-level: %w", err)}
			}
			if o.home != "" {
				return runHome(cmd.Context(), &o, stdout)
			}
			return runLocal(cmd.Context(), &o, stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.home, "home", "", "Olympus home directory written by 'diembft testnet' (LAN mode)")
	f.StringSliceVar(&o.listen, "listen", nil, "multiaddr to listen on instead of the home's (repeat or comma-separate; LAN mode)")
	f.StringVar(&o.configPath, "config", "", "experiment config, TOML or legacy (local mode)")
	f.StringVar(&o.out, "out", "", "run directory for local mode (default runs/<config-name>-<timestamp>)")
	f.StringVar(&o.replicaBin, "replica-bin", "", "replica binary for local mode (default: 'replica' next to this binary)")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.Int64Var(&o.seed, "seed", 0, "override the config's seed, which drives its probabilistic faults (local mode)")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)

	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "olympus: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func (o *options) check() error {
	switch {
	case o.home == "" && o.configPath == "":
		return usagef("give --home DIR (LAN mode) or --config CONFIG (local mode)")
	case o.home != "" && o.configPath != "":
		return usagef("--home and --config exclude each other")
	case o.home != "" && (o.out != "" || o.replicaBin != "" || o.seedSet):
		return usagef("--out, --replica-bin and --seed apply to local mode (--config) only")
	case o.configPath != "" && len(o.listen) > 0:
		return usagef("--listen applies to LAN mode (--home) only; local mode listens on 127.0.0.1")
	}
	return nil
}

// announce writes the listening lines to dir/multiaddrs, then prints them:
// whoever reads them on stdout finds the file already there.
func announce(stdout io.Writer, dir string, addrs []string) error {
	if err := olympus.WriteMultiaddrs(dir, addrs); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(dir, olympus.MultiaddrsFile), err)
	}
	for _, a := range addrs {
		fmt.Fprintln(stdout, olympus.ListeningLine(a))
	}
	return nil
}

func runHome(ctx context.Context, o *options, stdout io.Writer) error {
	home, err := olympus.LoadOlympusHome(o.home)
	if err != nil {
		return usageError{err} // a bad input file, like a bad flag (as diembft run)
	}
	for _, w := range home.Warnings {
		log.Warn(w)
	}
	svc, err := olympus.StartService(ctx, home, o.listen)
	var bad *p2p.ListenAddrError
	if errors.As(err, &bad) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	defer svc.Close()
	if err := announce(stdout, o.home, svc.Addrs()); err != nil {
		return err
	}
	go func() {
		select {
		case <-svc.Ready():
			log.Infow("every replica registered; serving the signed roster to them, and to clients once they all accept requests", "replicas", len(home.Members))
		case <-ctx.Done():
		}
	}()
	<-ctx.Done()
	log.Infow("stopping")
	return nil
}

func runLocal(ctx context.Context, o *options, stdout io.Writer) error {
	cfg, err := config.Load(o.configPath)
	if err != nil {
		return usageError{err}
	}
	if o.seedSet {
		cfg.Seed = o.seed
	}
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	out := o.out
	if out == "" {
		if out, err = olympus.NewRunDir(cfg.Name); err != nil {
			return err
		}
	}
	bin := o.replicaBin
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("cannot locate the replica binary (pass --replica-bin): %w", err)
		}
		bin = filepath.Join(filepath.Dir(exe), "replica")
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("replica binary %s: not found (run 'make build', or pass --replica-bin)", bin)
		}
	}
	l, err := olympus.RunLocal(ctx, cfg, out, bin, olympus.LocalOptions{LogLevel: o.logLevel})
	if err != nil {
		return err
	}
	defer l.Close()
	// RunLocal wrote out/multiaddrs already; announce rewrites the same lines.
	if err := announce(stdout, l.Dir, l.Addrs); err != nil {
		return err
	}
	log.Infow("replicas started", "replicas", l.N(), "run", l.Dir, "logs", filepath.Join(l.Dir, olympus.LogsDir))

	if _, err := l.WaitReady(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped by a signal before the committee was complete
		}
		return err
	}
	log.Infow("every replica accepts requests; serving the signed roster", "replicas", l.N())
	<-ctx.Done()
	log.Infow("stopping the replicas")
	return nil
}
