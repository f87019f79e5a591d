package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

var verifyJSON bool

var verifyCmd = &cobra.Command{
	Use:   "verify RUN_DIR",
	Short: "Re-check a finished run's ledgers and client results and print the verdict",
	Long: `Re-check a finished run from its directory: the ledgers in RUN_DIR/ledgers,
the client results in RUN_DIR/clients and what RUN_DIR/run.json says about the
run. The checks are those of diembft run: every request committed, the honest
ledgers agree (a shorter one must be a prefix of a longer one), and every
accepted result equals a sequential replay of the agreed ledger. report.json
is not changed. Exit status 0 if and only if the verdict is ok.`,
	Args: exactArgs(1, "RUN_DIR"),
	RunE: func(cmd *cobra.Command, args []string) error {
		rep, err := verifyRun(args[0])
		if err != nil {
			return err
		}
		if verifyJSON {
			if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
				return err
			}
		} else {
			printSummary(cmd.OutOrStdout(), rep, "")
		}
		noteHTMLReport(verifyNoteWriter(cmd), args[0], rep) // writes report.html again (htmlreport.go)
		if !rep.OK {
			return exitError{exitFail}
		}
		return nil
	},
}

func init() {
	verifyCmd.Flags().BoolVar(&verifyJSON, "json", false, "print the recomputed report as JSON instead of the summary")
	rootCmd.AddCommand(verifyCmd)
}

// verifyRun judges the run in dir again from its files.
func verifyRun(dir string) (*Report, error) {
	if err := runDirArg(dir); err != nil {
		return nil, err
	}
	var info RunInfo
	if err := readJSON(filepath.Join(dir, runFile), &info); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, usageErrorf("%s is not a run directory of diembft run: it has no %s", dir, runFile)
		}
		return nil, usageErrorf("%v", err)
	}
	if info.Replicas < 1 {
		return nil, usageErrorf("%s: no replicas", filepath.Join(dir, runFile))
	}
	return buildReport(&info, loadEvidence(dir, &info)), nil
}

func printJSON(w io.Writer, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// runDirArg says what is wrong with a RUN_DIR argument that is not a
// directory, in its own words rather than as a file missing in it.
func runDirArg(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return usageErrorf("run directory %s does not exist", dir)
	case err != nil:
		return usageErrorf("run directory: %v", err)
	case !st.IsDir():
		return usageErrorf("%s is not a run directory: it is a file", dir)
	}
	return nil
}
