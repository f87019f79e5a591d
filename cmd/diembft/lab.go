package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/diembft/diembft/node/fault"
	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/olympus/netlab"
	"github.com/diembft/diembft/protocol/types"
)

// labNeedsRoot is what `diembft lab` says, with exit status 2, when it is
// not run as root.
const labNeedsRoot = "diembft lab needs root (network namespaces): run it as root or use diembft run"

type labOptions struct {
	runOptions
	subnet string
}

var labOpts labOptions

// labCheck tells whether labs can run here (a variable for tests).
var labCheck = netlab.Check

var labCmd = &cobra.Command{
	Use:   "lab CONFIG",
	Short: "Run an experiment with every process on its own host of a virtual LAN (network namespaces; needs root)",
	Long: `Run the experiment CONFIG describes, as diembft run does, but with Olympus,
each replica and each client in its own Linux network namespace: hosts with
their own IP on a virtual LAN (a bridge in a namespace of its own, one veth
pair per host, --subnet), so that every message between them is real IP
traffic between hosts. Nothing is added to this machine's own network.

The committee is written as 'diembft testnet --hosts' would write it (Olympus
on the first address, replica i on the next, each listening on TCP and QUIC
on its own IP), then bin/olympus --home, bin/replica --home and bin/client run
in their namespaces. Verification and DIR are those of diembft run
(report.json, run.json, ledgers/, clients/, logs/, homes/); exit status 0 if
and only if the verdict is ok.

Faults are injected as in diembft run, by the replicas themselves (each home
gets the run's faults.json): message faults and partitions act on the
messages a replica sends and receives, and a replica stopped by a crash fault
is started again on its host after restart_after_ms.

It needs root. On SIGINT or SIGTERM it stops the run and still reports; a
second signal kills every process of the lab at once. Either way the
namespaces are deleted before it exits (a lab left behind by a killed
launcher is removed by the next one).`,
	Example: `  sudo bin/diembft lab configs/default.toml
  sudo bin/diembft lab configs/default.toml --out runs/lab1 --seed 7 --subnet 10.99.0.0/24`,
	Args: exactArgs(1, "CONFIG"),
	RunE: func(cmd *cobra.Command, args []string) error {
		if err := labCheck(); err != nil {
			if errors.Is(err, netlab.ErrNotRoot) {
				fmt.Fprintln(cmd.ErrOrStderr(), labNeedsRoot)
				return exitError{exitUsage}
			}
			return usageErrorf("network namespaces are unavailable here (%v); use diembft run", err)
		}
		subnet, err := netip.ParsePrefix(labOpts.subnet)
		if err != nil || !subnet.Addr().Is4() {
			return usageErrorf("--subnet %q: want an IPv4 prefix such as %s", labOpts.subnet, netlab.DefaultSubnet)
		}
		opts := labOpts.runOptions
		opts.config = args[0]
		opts.seedSet = cmd.Flags().Changed("seed")
		opts.logLevel = logLevel
		opts.progress = isTerminal(cmd.ErrOrStderr())

		ctx, cancel := context.WithCancel(cmd.Context())
		defer cancel()
		finished := make(chan struct{})
		defer close(finished)
		go labSignals(cancel, finished, cmd.ErrOrStderr())

		rep, _, err := runExperimentWith(ctx, opts, cmd.OutOrStdout(), cmd.ErrOrStderr(),
			func(e *experiment, ctx context.Context) { e.executeLab(ctx, subnet) })
		if err != nil {
			return err
		}
		if !rep.OK {
			return exitError{exitFail}
		}
		return nil
	},
}

func init() {
	addRunFlags(labCmd.Flags(), &labOpts.runOptions)
	labCmd.Flags().StringVar(&labOpts.subnet, "subnet", netlab.DefaultSubnet.String(), "the virtual LAN's IPv4 prefix (Olympus gets its first address)")
	rootCmd.AddCommand(labCmd)
}

// labSignals handles SIGINT and SIGTERM while a lab runs: the first cancels
// the run (which then stops its processes in order and reports, as diembft
// run does); a second kills everything in the lab's namespaces, deletes them
// and exits at once, so that even an impatient user leaves nothing behind.
func labSignals(cancel context.CancelFunc, finished <-chan struct{}, stderr io.Writer) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var first time.Time
	select {
	case <-sigs:
		first = time.Now()
		cancel()
	case <-finished:
		return
	}
	for {
		select {
		case sig := <-sigs:
			if time.Since(first) < sameSignal {
				continue // one signal delivered twice: GNU timeout signals the process, then its group
			}
			netlab.CloseAll()
			fmt.Fprintf(stderr, "\ndiembft: %v again: killed the lab's processes and deleted its namespaces\n", sig)
			os.Exit(exitFail)
		case <-finished:
			return
		}
	}
}

// sameSignal: a second SIGINT or SIGTERM this soon after the first is the
// same one delivered twice (timeout -s INT sends it to the launcher and to
// its process group), not an impatient user; a person cannot press Ctrl-C
// twice this fast.
const sameSignal = 200 * time.Millisecond

// labHosts names the lab's hosts: Olympus, then the replicas, then the
// clients, which is also the order of their addresses.
func labHosts(replicas, clients int) []string {
	hosts := []string{"olympus"}
	for i := range replicas {
		hosts = append(hosts, olympus.ReplicaDir(types.ReplicaID(i)))
	}
	for i := range clients {
		hosts = append(hosts, fmt.Sprintf("client-%d", i))
	}
	return hosts
}

// executeLab runs the experiment's processes on a lab LAN: it builds the
// namespaces, writes the committee's homes for their addresses into
// DIR/homes (the layout of diembft run, so that the replica files are
// collected the same way), starts Olympus and the replicas in their
// namespaces, runs the clients in theirs with diembft run's client phase, and
// stops everything. Whatever goes wrong becomes a problem of the report.
func (e *experiment) executeLab(ctx context.Context, subnet netip.Prefix) {
	bins, workloads, deadline, ok := e.prepare()
	if !ok {
		return
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	e.status.phase("building the lab network")
	n := e.cfg.NumReplicas()
	lab, err := netlab.New(dctx, netlab.Options{Hosts: labHosts(n, len(workloads)), Subnet: subnet})
	if err != nil {
		e.problem("lab network: %v", err)
		return
	}
	defer func() {
		if err := lab.Close(); err != nil {
			e.problem("removing the lab network: %v", err)
		}
	}()
	olympusHost := lab.Hosts[0]
	replicaIPs := make([]string, n)
	for i := range n {
		replicaIPs[i] = lab.Hosts[1+i].IP.String()
	}
	e.status.note(fmt.Sprintf("lab %s on %s: olympus %s, replicas %s, clients %s", lab.ID, lab.Subnet,
		olympusHost.IP, ipRange(lab.Hosts[1:1+n]), ipRange(lab.Hosts[1+n:])))

	homes := filepath.Join(e.dir, olympus.HomesDir)
	params := olympus.ParamsFromConfig(e.cfg)
	if err := olympus.WriteTestnet(homes, olympus.TestnetOptions{
		Replicas: n, F: e.cfg.Committee.F, ChainID: e.cfg.Committee.ChainID,
		Hosts: replicaIPs, OlympusHost: olympusHost.IP.String(), Params: &params,
	}); err != nil {
		e.problem("writing the committee's homes: %v", err)
		return
	}

	if len(e.cfg.Failures) > 0 {
		// The replicas inject the faults themselves (node/fault), as in
		// diembft run: every home gets the run's failures and seed.
		spec := fault.SpecFromConfig(e.cfg)
		for i := range n {
			if err := fault.WriteSpec(replicaHome(e.dir, i), spec); err != nil {
				e.problem("replica %d's %s: %v", i, fault.SpecFile, err)
				return
			}
		}
	}

	// start runs a process on the lab host of the same name.
	start := func(name, bin string, args []string, logPath string) (*proc, error) {
		h := lab.Host(name)
		if h == nil {
			return nil, fmt.Errorf("no lab host %s", name)
		}
		return startCmd(name, h.Command(bin, args...), logPath)
	}
	logPath := func(name string) string { return filepath.Join(e.dir, logsDir, name+".log") }

	e.status.phase("starting olympus")
	olympusHome := filepath.Join(homes, olympus.OlympusDir)
	oly, err := start("olympus", bins.olympus, []string{"--home", olympusHome, "--log-level", e.opts.logLevel}, logPath("olympus"))
	if err != nil {
		e.problem("%v", err)
		return
	}
	// The replicas' supervisors (crash faults' restarts) end with running,
	// before the replicas are stopped.
	running, stopSupervisors := context.WithCancel(ctx)
	defer stopSupervisors()
	var supervisors sync.WaitGroup
	var replicas []*labReplica
	defer func() {
		e.status.phase("stopping the replicas and olympus")
		stopSupervisors()
		supervisors.Wait()
		var wg sync.WaitGroup
		for _, r := range replicas {
			if r.restartErr != nil {
				e.problem("replica %d: restart after a crash fault: %v", r.id, r.restartErr)
			}
			if early := r.p.exitedEarly(); early != "" && !fault.IsCrashExit(r.p.err) {
				e.problem("replica %d exited during the run (%s): %s", r.id, early, olympus.LastLogLine(r.p.logPath))
			}
			wg.Go(func() { r.p.stop(stopGrace) })
		}
		wg.Wait()
		if early := oly.exitedEarly(); early != "" {
			e.problem("olympus exited during the run (%s): %s", early, olympus.LastLogLine(oly.logPath))
		}
		oly.stop(stopGrace)
		e.collectReplicaFiles()
	}()

	addr, err := e.waitOlympus(dctx, oly, olympusHome)
	if err != nil {
		e.problem("%v", err)
		return
	}
	e.status.note("olympus listening on " + addr)

	e.status.phase("starting the replicas")
	for i := range n {
		name := olympus.ReplicaDir(types.ReplicaID(i))
		r := &labReplica{id: i, name: name, home: filepath.Join(homes, name), log: logPath(name)}
		r.args = []string{
			"--home", r.home,
			"--olympus", addr,
			"--log-level", e.opts.logLevel,
			"--join-timeout", max(time.Until(deadline), time.Second).Round(time.Millisecond).String(),
		}
		if r.p, err = start(name, bins.replica, r.args, r.log); err != nil {
			e.problem("%v", err)
			return
		}
		replicas = append(replicas, r)
		supervisors.Go(func() { e.superviseLabReplica(running, r, bins.replica, start) })
	}
	e.runClients(ctx, dctx, bins.client, addr, workloads, start)
}

// labReplica is a replica's process on its lab host; p is replaced when a
// crash fault's restart starts it again. p and restartErr belong to the
// replica's supervisor until the supervisors have ended.
type labReplica struct {
	id              int
	name, home, log string
	args            []string
	p               *proc
	restartErr      error // the restart after a crash fault failed
}

// superviseLabReplica restarts r after a crash fault, as Olympus's local
// mode does in diembft run: a replica that exits with fault.CrashExitCode is
// started again on its home (and its host) after its failure's
// restart_after_ms, and stays down when that is 0. It returns when r ends
// any other way or running is done.
func (e *experiment) superviseLabReplica(running context.Context, r *labReplica, bin string,
	start func(name, bin string, args []string, logPath string) (*proc, error)) {
	for {
		select {
		case <-r.p.done:
		case <-running.Done():
			return
		}
		if !fault.IsCrashExit(r.p.err) {
			return
		}
		idx, after, err := fault.RestartAfter(r.home, e.cfg.Failures)
		if err != nil {
			e.status.note(fmt.Sprintf("replica %d: crash fault: cannot tell which failure stopped it (%v); it stays down", r.id, err))
			return
		}
		if after <= 0 {
			e.status.note(fmt.Sprintf("replica %d: crashed by fault %d; it stays down", r.id, idx))
			return
		}
		e.status.note(fmt.Sprintf("replica %d: crashed by fault %d; restarting it from its disk in %v", r.id, idx, after))
		t := time.NewTimer(after)
		select {
		case <-t.C:
		case <-running.Done():
			t.Stop()
			return
		}
		p, err := start(r.name, bin, r.args, r.log)
		if err != nil {
			r.restartErr = err
			return
		}
		r.p = p
	}
}

// ipRange shows the addresses of consecutive hosts: "10.77.0.2-5".
func ipRange(hosts []*netlab.Host) string {
	switch len(hosts) {
	case 0:
		return "none"
	case 1:
		return hosts[0].IP.String()
	}
	first, last := hosts[0].IP.String(), hosts[len(hosts)-1].IP.String()
	if i := strings.LastIndexByte(first, '.'); i >= 0 && strings.HasPrefix(last, first[:i+1]) {
		return first + "-" + last[i+1:]
	}
	return first + "-" + last
}
