package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/diembft/diembft/protocol/twins"
)

var twinsOpts struct {
	scenarios                        string
	generate                         int
	seed                             uint64
	nodes, twins, partitions, rounds int
	healing                          int
	out                              string
}

var twinsCmd = &cobra.Command{
	Use:   "twins",
	Short: "Run Twins scenarios on the simulator with the real core (spec §6)",
	Long: `Run Twins scenarios: f replicas run as two nodes sharing one consensus key; each scenario fixes,
per round, the leader and a partition of the nodes. Scenarios come from --scenarios (Diem's JSON
format) or --generate N (enumerated in a fixed order, or sampled when --seed is given, deduplicated
up to renaming replicas). Exit status 0 only when there is no safety violation and every scenario
committed during its healing rounds.`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		o := twinsOpts
		var f *twins.File
		switch {
		case o.scenarios != "" && o.generate > 0:
			return usageErrorf("give --scenarios or --generate, not both")
		case o.scenarios != "":
			data, err := os.ReadFile(o.scenarios)
			if err != nil {
				return usageErrorf("--scenarios: %v", err)
			}
			if f, err = twins.Parse(data); err != nil {
				return usageErrorf("%s: %v", o.scenarios, err)
			}
		case o.generate > 0:
			var err error
			sh := twins.Shape{Nodes: o.nodes, Twins: o.twins, Partitions: o.partitions, Rounds: o.rounds}
			if f, err = twins.Generate(sh, o.generate, cmd.Flags().Changed("seed"), o.seed); err != nil {
				return usageErrorf("%v", err)
			}
		default:
			return usageErrorf("give --scenarios FILE.json or --generate N")
		}
		start := time.Now()
		var violations, uncommitted int
		for i := range f.Scenarios {
			out := twins.Run(f, &f.Scenarios[i], twins.Options{HealingRounds: o.healing, Seed: o.seed})
			if len(out.Violations) > 0 {
				violations++
				b, _ := json.Marshal(f.Scenarios[i])
				fmt.Fprintf(cmd.OutOrStdout(), "scenario %d: SAFETY VIOLATION: %s\n  %s\n", i, out.Violations[0], b)
			}
			if !out.Committed {
				uncommitted++
				if uncommitted <= 10 {
					b, _ := json.Marshal(f.Scenarios[i])
					fmt.Fprintf(cmd.OutOrStdout(), "scenario %d: no commit during healing (reached round %d)\n  %s\n", i, out.Rounds, b)
				}
			}
		}
		el := time.Since(start)
		fmt.Fprintf(cmd.OutOrStdout(), "scenarios run: %d in %.1f s (%.0f scenarios/s); safety violations: %d; not committed during healing: %d\n",
			len(f.Scenarios), el.Seconds(), float64(len(f.Scenarios))/el.Seconds(), violations, uncommitted)
		if o.out != "" {
			data, err := json.MarshalIndent(f, "", " ")
			if err != nil {
				return err
			}
			if err := os.WriteFile(o.out, data, 0o644); err != nil {
				return err
			}
		}
		if violations > 0 || uncommitted > 0 {
			return exitError{exitFail}
		}
		return nil
	},
}

func init() {
	f := twinsCmd.Flags()
	f.StringVar(&twinsOpts.scenarios, "scenarios", "", "run the scenarios of this Diem-format JSON file")
	f.IntVar(&twinsOpts.generate, "generate", 0, "generate and run N scenarios")
	f.Uint64Var(&twinsOpts.seed, "seed", 1, "sample scenarios with this seed (without --seed: enumerate); also seeds the latencies (1 when not given)")
	f.IntVar(&twinsOpts.nodes, "nodes", 4, "replicas")
	f.IntVar(&twinsOpts.twins, "twins", 1, "replicas that get a twin")
	f.IntVar(&twinsOpts.partitions, "partitions", 2, "at most this many partition groups per round")
	f.IntVar(&twinsOpts.rounds, "rounds", 8, "scenario rounds")
	f.IntVar(&twinsOpts.healing, "healing-rounds", twins.DefaultHealingRounds, "rounds with full connectivity after the scenario")
	f.StringVar(&twinsOpts.out, "out", "", "write the scenarios run to this file (Diem format)")
	rootCmd.AddCommand(twinsCmd)
}
