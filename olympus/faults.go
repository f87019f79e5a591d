package olympus

import (
	"fmt"
	"time"

	"github.com/diembft/diembft/node/fault"
	"github.com/diembft/diembft/olympus/config"
)

// Fault injection in local mode: Olympus gives every replica the run's
// failures (faults.json in its home, read by bin/replica at start; package
// node/fault decides and the replica acts), and restarts a replica that a
// crash fault stopped once the failure's restart_after_ms has passed.

// writeFaultSpecs writes faults.json into every replica's home when cfg has
// failures.
func writeFaultSpecs(cfg *config.Config, procs []*replicaProc) error {
	if len(cfg.Failures) == 0 {
		return nil
	}
	spec := fault.SpecFromConfig(cfg)
	for _, p := range procs {
		if err := fault.WriteSpec(p.home, spec); err != nil {
			return fmt.Errorf("replica %d: %s: %v", p.id, fault.SpecFile, unwrapPath(err))
		}
	}
	return nil
}

// afterCrash runs when replica p's process exited with
// fault.CrashExitCode: a crash fault stopped it. Its faults.jsonl names the
// failure, and a positive restart_after_ms restarts it on its own home
// after that long; without restart it stays down.
func (l *Local) afterCrash(p *replicaProc, err error) {
	idx, after, err := fault.RestartAfter(p.home, l.failures)
	if err != nil {
		log.Warnw("crash fault: cannot tell which failure stopped the replica; it stays down", "id", p.id, "err", err)
		return
	}
	if after <= 0 {
		log.Warnw("crash fault: replica stays down", "id", p.id, "failure", idx)
		return
	}
	log.Warnw("crash fault: restarting the replica from its disk", "id", p.id, "failure", idx, "after", after)
	time.AfterFunc(after, func() {
		if err := l.Restart(p.id); err != nil {
			log.Warnw("crash fault: restart failed", "id", p.id, "err", err)
		}
	})
}
