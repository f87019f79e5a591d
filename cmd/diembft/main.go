// Command diembft is the launcher and toolbox of the DiemBFT experiment
// platform: `run` runs a whole experiment from a config on this machine and
// judges it, `verify` re-judges a finished run from its files, `version`
// prints the version; other subcommands register themselves on rootCmd from
// their own files (spec/config.md §1).
//
// Exit status: 0 on success (for run and verify: the verdict is ok), 1 on
// failure, 2 on a usage error (bad flag, argument or config file).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/diembft/diembft/p2p"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

// logLevel is the --log-level of every subcommand (a persistent flag).
var logLevel string

// rootCmd is the diembft command. Subcommands add themselves with
// rootCmd.AddCommand in their file's init.
var rootCmd = &cobra.Command{
	Use:   "diembft",
	Short: "DiemBFT experiment launcher and tools",
	Long: `diembft runs DiemBFT experiments on this machine and checks their outcome.

  diembft run CONFIG       run Olympus, the replicas and the clients of CONFIG, verify, report
  diembft verify RUN_DIR   re-check a finished run's ledgers and client results
  diembft testnet ...      write home directories for running a committee by hand across hosts
  diembft version          print the version

More below: bench, lab, report, scenarios, twins.`,
	SilenceUsage:  true,
	SilenceErrors: true,
	// A bare `diembft` with no subcommand is a usage error, not help and 0.
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		return usageErrorf("missing subcommand")
	},
	PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
		if err := p2p.SetupLogging(logLevel); err != nil {
			return usageErrorf("--log-level: %v", err)
		}
		return nil
	},
}

var versionCmd = &cobra.Command{
	Use:   "version",
	Short: "Print the version",
	Args:  cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		fmt.Fprintf(cmd.OutOrStdout(), "diembft %s (%s, %s/%s)\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	},
}

func init() {
	rootCmd.PersistentFlags().StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn or error (also passed to the processes a run starts)")
	rootCmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	rootCmd.AddCommand(versionCmd)
}

// versionString is the -ldflags version, else the module version Go
// recorded, else "dev".
func versionString() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

// usageError marks an error as the user's (a bad flag, argument or input
// file): exit status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// usageErrorf returns a usage error; subcommands use it for bad arguments.
func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitError carries an exit status without a message: the command already
// said what it had to (e.g. a run whose verdict is not ok).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// isUsage reports whether err is a usage error, ours or one cobra makes
// itself (unknown command, wrong number of arguments, missing required flag).
func isUsage(err error) bool {
	var ue usageError
	if errors.As(err, &ue) {
		return true
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires ",
		"required flag", "invalid argument", "flag needs an argument", "if any flags in the group"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// execute runs rootCmd with args and returns the exit status, writing errors
// as one line to stderr.
func execute(args []string, stdout, stderr io.Writer) int {
	rootCmd.SetArgs(args)
	rootCmd.SetOut(stdout)
	rootCmd.SetErr(stderr)
	err := rootCmd.Execute()
	if err == nil {
		return exitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if isUsage(err) {
		fmt.Fprintf(stderr, "diembft: %v (see diembft --help)\n", oneLine(err.Error()))
		return exitUsage
	}
	fmt.Fprintf(stderr, "diembft: %v\n", oneLine(err.Error()))
	return exitFail
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}
