package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/protocol/types"
)

// testnetOpts are the flags of `diembft testnet` (spec/config.md §1).
var testnetOpts struct {
	replicas    int
	f           int
	chainID     string
	hosts       []string
	olympusHost string
	olympusPort int
	replicaPort int
	out         string
}

var testnetCmd = &cobra.Command{
	Use:   "testnet --replicas N [--f F] [--chain-id ID] [--hosts IP,IP,...] [--olympus-host IP] --out DIR",
	Short: "Write home directories for running a committee by hand across hosts",
	Long: `testnet writes one home directory per process into DIR:

  DIR/olympus/          olympus.toml (committee, parameters, members' peer ids and
                        consensus public keys), host.key
  DIR/replica-<id>/     replica.toml (id, chain id, listen addresses, Olympus's
                        multiaddr), host.key, consensus.key

for ids 0..N-1. Home directories are mode 0700 and private keys 0600; copy
each home to its host. --hosts gives the IP each replica listens on, in id
order: exactly N IPs (without --hosts every replica listens on 127.0.0.1).
Replica i listens on TCP and QUIC port --replica-port + i, Olympus on
--olympus-port of --olympus-host (default the first host).`,
	Example: `  diembft testnet --replicas 4 --out testnet
  diembft testnet --replicas 4 --hosts 10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4 --out lan`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		o := &testnetOpts
		if o.out == "" {
			return usageErrorf("--out DIR is required")
		}
		if !cmd.Flags().Changed("replicas") {
			return usageErrorf("--replicas N is required")
		}
		if cmd.Flags().Changed("chain-id") && o.chainID == "" {
			return usageErrorf("--chain-id: empty (omit the flag for the default, %q)", "local")
		}
		err := olympus.WriteTestnet(o.out, olympus.TestnetOptions{
			Replicas:    o.replicas,
			F:           o.f,
			ChainID:     o.chainID,
			Hosts:       o.hosts,
			OlympusHost: o.olympusHost,
			OlympusPort: o.olympusPort,
			ReplicaPort: o.replicaPort,
		})
		var oe *olympus.OptionError
		if errors.As(err, &oe) {
			return usageErrorf("--%s: %s", oe.Option, oe.Msg)
		}
		if err != nil {
			return err
		}
		return printTestnet(cmd.OutOrStdout(), o.out)
	},
}

func init() {
	f := testnetCmd.Flags()
	f.IntVar(&testnetOpts.replicas, "replicas", 0, "committee size N (at least 3f+1)")
	f.IntVar(&testnetOpts.f, "f", 0, "faults tolerated (default (N-1)/3)")
	f.StringVar(&testnetOpts.chainID, "chain-id", "local", "chain id")
	f.StringSliceVar(&testnetOpts.hosts, "hosts", nil, "the IP each replica listens on, in id order: one per replica (default 127.0.0.1 for all)")
	f.StringVar(&testnetOpts.olympusHost, "olympus-host", "", "IP Olympus listens on (default the first of --hosts)")
	f.IntVar(&testnetOpts.olympusPort, "olympus-port", olympus.DefaultOlympusPort, "Olympus's TCP and QUIC port")
	f.IntVar(&testnetOpts.replicaPort, "replica-port", olympus.DefaultReplicaPort, "replica i listens on TCP and QUIC port replica-port+i")
	f.StringVar(&testnetOpts.out, "out", "", "directory to write the homes into")
	rootCmd.AddCommand(testnetCmd)
}

// printTestnet says what was written and how to start each process.
func printTestnet(w io.Writer, dir string) error {
	oh, err := olympus.LoadOlympusHome(filepath.Join(dir, olympus.OlympusDir))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote a testnet of %d replicas (f = %d, chain %q) in %s\n", len(oh.Members), oh.F, oh.ChainID, dir)
	fmt.Fprintf(w, "olympus (listening on %s):\n  bin/olympus --home %s\n",
		joinAddrs(oh.Listen), filepath.Join(dir, olympus.OlympusDir))
	for i := range oh.Members {
		rh, err := olympus.LoadReplicaHome(filepath.Join(dir, olympus.ReplicaDir(types.ReplicaID(i))))
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "replica %d (listening on %s):\n  bin/replica --home %s --olympus %s\n",
			i, joinAddrs(rh.Listen), rh.Dir, rh.Olympus)
	}
	return nil
}

func joinAddrs(addrs []string) string {
	if len(addrs) == 0 {
		return "default addresses"
	}
	s := addrs[0]
	for _, a := range addrs[1:] {
		s += ", " + a
	}
	return s
}
