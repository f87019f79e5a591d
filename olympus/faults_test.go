package olympus

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/diembft/diembft/node/fault"
	"github.com/diembft/diembft/protocol/types"
)

// fakeCrasherEnv makes the test binary a replica that crashes the way a
// crash fault does (a record in faults.jsonl, exit status
// fault.CrashExitCode) the first time it starts on a home, and then runs as
// fakeReplica. It is handled in init, before TestMain.
const fakeCrasherEnv = "OLYMPUS_TEST_FAKE_CRASHER"

func init() {
	if os.Getenv(fakeCrasherEnv) == "" {
		return
	}
	fs := flag.NewFlagSet("replica", flag.ContinueOnError)
	home := fs.String("home", "", "")
	fs.String("olympus", "", "")
	fs.String("log-level", "", "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	recs, _ := fault.ReadLog(*home)
	if fault.LastCrash(recs) >= 0 {
		os.Exit(fakeReplica(os.Args[1:]))
	}
	spec, err := fault.ReadSpec(*home)
	if err != nil || spec == nil {
		os.Exit(3) // Olympus did not write faults.json
	}
	line, _ := json.Marshal(fault.Record{Ev: fault.EvFire, Failure: 0, Type: "crash", Seed: spec.Seed})
	f, err := os.OpenFile(filepath.Join(*home, fault.LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		os.Exit(4)
	}
	f.Write(append(line, '\n'))
	f.Close()
	os.Exit(fault.CrashExitCode)
}

// TestLocalRestartsCrashedReplicas: Olympus writes faults.json into every
// home and restarts a replica stopped by a crash fault after the failure's
// restart_after_ms; with restart_after_ms = 0 it stays down.
func TestLocalRestartsCrashedReplicas(t *testing.T) {
	for _, tc := range []struct {
		restartMs int
		restarts  bool
	}{{150, true}, {0, false}} {
		t.Run(map[bool]string{true: "restart", false: "stay down"}[tc.restarts], func(t *testing.T) {
			t.Setenv(fakeCrasherEnv, "1")
			cfg := localConfig(t, "seed = 99\n[[failures]]\ntype = \"crash\"\nsrc = 2\ntrigger = \"round(3)\"\n"+
				map[bool]string{true: "restart_after_ms = 150\n", false: ""}[tc.restarts])
			work := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			exits := make(chan exitNote, 32)
			l, err := RunLocal(ctx, cfg, work, os.Args[0], LocalOptions{
				Grace:  waitLimit,
				OnExit: func(id types.ReplicaID, _ error, requested bool) { exits <- exitNote{id, requested} },
			})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			for i := range 4 {
				spec, err := fault.ReadSpec(l.Home(types.ReplicaID(i)))
				if err != nil || spec == nil || spec.Seed != 99 || len(spec.Failures) != 1 || len(spec.Clients) != cfg.TotalClients() {
					t.Fatalf("replica %d: faults.json %+v, %v", i, spec, err)
				}
			}
			// Every fake crashes once at start.
			for range 4 {
				select {
				case e := <-exits:
					if e.requested {
						t.Fatalf("replica %d: requested exit, want a crash", e.id)
					}
				case <-time.After(waitLimit):
					t.Fatal("no crash")
				}
			}
			if !tc.restarts {
				time.Sleep(300 * time.Millisecond) // longer than any restart would wait
				for i := range 4 {
					if l.Running(types.ReplicaID(i)) {
						t.Fatalf("replica %d restarted after a crash without restart_after_ms", i)
					}
				}
				return
			}
			// (Not WaitReady: these fakes crash before they register, which
			// a real crash fault cannot do, so the roster is signed only
			// once they are back.)
			select {
			case <-l.Service.Ready():
			case <-time.After(waitLimit):
				t.Fatal("the restarted replicas never all registered")
			}
			for i := range 4 {
				if !l.Running(types.ReplicaID(i)) {
					t.Fatalf("replica %d not running after its restart", i)
				}
			}
		})
	}
}
