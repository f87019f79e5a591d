package p2p

import (
	"fmt"
	stdlog "log"
	"log/slog"
	"os"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/gologshim"
)

// go-libp2p logs through log/slog (gologshim), and each of its loggers binds
// a handler on first use. Installing go-log's bridge at package init binds
// them before any host exists, whether or not SetupLogging is called, so
// libp2p's output always follows go-log's levels (default: error) and format.
// The bridge writes to go-log's live core, so a later SetupLogging still
// applies to it. (go-libp2p-pubsub has its own copy of the shim; it gets the
// bridge through pubsub.WithLogger in StartPubSub.)
func init() {
	gologshim.SetDefaultHandler(logging.SlogHandler())
}

// SetupLogging configures go-log: one level for every subsystem (ours and
// libp2p's), output to stderr (plain text unless GOLOG_LOG_FMT says
// otherwise), and slog.Default routed into it. level is one of debug, info,
// warn, error. Per-subsystem levels can be changed afterwards with
// logging.SetLogLevel(name, level).
func SetupLogging(level string) error {
	lvl, err := logging.Parse(level)
	if err != nil {
		return fmt.Errorf("log level %q: %w", level, err)
	}
	cfg := logging.GetConfig()
	if os.Getenv("GOLOG_LOG_FMT") == "" {
		cfg.Format = logging.PlaintextOutput
	}
	cfg.Level = lvl
	cfg.Stderr = true
	cfg.Stdout = false
	cfg.SubsystemLevels = nil
	logging.SetupLogging(cfg)
	logging.SetAllLoggers(lvl)

	h := logging.SlogHandler()
	gologshim.SetDefaultHandler(h)
	slog.SetDefault(slog.New(h))
	// slog.SetDefault also redirects the standard log package into slog at
	// Info level, where go-log's default level would swallow it (including
	// log.Fatal's message). Keep the standard logger writing to stderr.
	stdlog.SetOutput(os.Stderr)
	return nil
}
