package fault

import (
	"bufio"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/diembft/diembft/olympus/config"
)

// Files in a replica's home.
const (
	// SpecFile is written by Olympus in local mode (or by hand) before the
	// replica starts: the run's seed and failures. A home without it runs
	// without fault injection.
	SpecFile = "faults.json"
	// LogFile is appended by the replica: one Record per line for every
	// fault that fired (and the bookkeeping a restart needs).
	LogFile = "faults.jsonl"
)

// CrashExitCode is the exit status of a replica that a crash fault stopped;
// Olympus local mode restarts such a replica after the failure's
// restart_after_ms, and leaves any other unrequested exit alone.
const CrashExitCode = 86

// Spec is faults.json: what a replica needs to build its Injector. Every
// replica of a run gets all the run's failures, because partitions are
// global and "_" or "leader" sources can be any replica; each Injector
// keeps the ones that concern it.
type Spec struct {
	Seed     int64            `json:"seed"`
	Replicas int              `json:"replicas"`
	F        int              `json:"f"`
	Failures []config.Failure `json:"failures"`
	// Clients are the hex ed25519 public keys of the run's clients by client
	// number (ClientKey), so that client_request(c, m) can tell client c.
	Clients []string `json:"clients,omitempty"`
}

// SpecFromConfig is the Spec of a run of cfg; the launcher gives client c
// the key ClientKey(cfg.Seed, c).
func SpecFromConfig(cfg *config.Config) *Spec {
	s := &Spec{Seed: cfg.Seed, Replicas: cfg.NumReplicas(), F: cfg.Committee.F, Failures: cfg.Failures}
	for c := range cfg.TotalClients() {
		s.Clients = append(s.Clients, hex.EncodeToString(ClientKey(cfg.Seed, c).Public().(ed25519.PublicKey)))
	}
	return s
}

// ClientKey is client c's signing key in a run with this seed. Deriving it
// from the seed lets the replicas recognise client c for client_request
// triggers, and makes the ledgers of two runs with one seed identical.
func ClientKey(seed int64, c int) ed25519.PrivateKey {
	b := []byte("diembft/client-key/v1")
	b = binary.BigEndian.AppendUint64(b, uint64(seed))
	b = binary.BigEndian.AppendUint64(b, uint64(c))
	s := sha256.Sum256(b)
	return ed25519.NewKeyFromSeed(s[:])
}

// WriteSpec writes s to home/faults.json.
func WriteSpec(home string, s *Spec) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(home, SpecFile), append(data, '\n'), 0o644)
}

// ReadSpec reads home/faults.json; a home without one gives nil and no error.
func ReadSpec(home string) (*Spec, error) {
	data, err := os.ReadFile(filepath.Join(home, SpecFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(home, SpecFile), err)
	}
	if s.Replicas < 1 {
		return nil, fmt.Errorf("%s: replicas must be at least 1", filepath.Join(home, SpecFile))
	}
	return &s, nil
}

// Record events.
const (
	EvFire  = "fire"  // the fault acted: counted in report.json
	EvArm   = "arm"   // a trigger fired; the message or proposal it affects comes later
	EvSpent = "spent" // a trigger of a "leader" fault came while another replica led: spent here
	EvOpen  = "open"  // a partition's time window opened
	EvStart = "start" // the injector started (Failure is -1): the base of time(ms)
)

// Record is one line of faults.jsonl.
type Record struct {
	T       int64  `json:"t"` // Unix ms
	Ev      string `json:"ev"`
	Failure int    `json:"failure"` // index in the config's failures; -1 for start
	Type    string `json:"type,omitempty"`
	Replica int    `json:"replica"` // the replica that logged it
	Round   uint64 `json:"round"`
	Msg     string `json:"msg,omitempty"`   // message kind, for message faults and partitions
	Dests   []int  `json:"dests,omitempty"` // receivers hit (-3: a client)
	From    *int   `json:"from,omitempty"`  // partition: the cut message's sender
	Seed    int64  `json:"seed"`
	Detail  string `json:"detail,omitempty"`
}

// ReadLog reads a replica's faults.jsonl; a missing file is an empty log. A
// torn last line (the process died while writing it) is ignored.
func ReadLog(home string) ([]Record, error) {
	f, err := os.Open(filepath.Join(home, LogFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readRecords(f)
}

func readRecords(r io.Reader) ([]Record, error) {
	var out []Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var rec Record
		if len(sc.Bytes()) == 0 {
			continue
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			continue
		}
		out = append(out, rec)
	}
	return out, sc.Err()
}

// Fired counts, per failure index, the records of logs that say the fault
// acted (EvFire).
func Fired(logs ...[]Record) map[int]int {
	m := map[int]int{}
	for _, l := range logs {
		for _, r := range l {
			if r.Ev == EvFire && r.Failure >= 0 {
				m[r.Failure]++
			}
		}
	}
	return m
}

// LastCrash returns the failure index of the last crash fault that fired in
// the log, or -1.
func LastCrash(recs []Record) int {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Ev == EvFire && recs[i].Type == config.TypeCrash {
			return recs[i].Failure
		}
	}
	return -1
}

// IsCrashExit reports whether a replica process ended with err because a
// crash fault stopped it (exit status CrashExitCode).
func IsCrashExit(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.ExitCode() == CrashExitCode
}

// RestartAfter tells what follows a crash-fault exit of the replica whose
// home is home, in a run with failures: the failure that stopped it (its
// faults.jsonl names it) and how long after the crash to start it again on
// its home (0: it stays down). err says why the failure cannot be told; the
// replica then stays down. Olympus local mode and diembft lab both use it.
func RestartAfter(home string, failures []config.Failure) (idx int, after time.Duration, err error) {
	recs, err := ReadLog(home)
	idx = LastCrash(recs)
	if err == nil && (idx < 0 || idx >= len(failures)) {
		err = fmt.Errorf("no crash fault of the run's %d failures in %s", len(failures), LogFile)
	}
	if err != nil {
		return -1, 0, err
	}
	return idx, time.Duration(failures[idx].RestartAfterMs) * time.Millisecond, nil
}
