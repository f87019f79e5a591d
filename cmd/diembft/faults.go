package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/diembft/diembft/node/fault"
	"github.com/diembft/diembft/olympus/config"
)

// Fault injection, the launcher's part (issue #6): Olympus gives the
// replicas the config's failures and the seed (the launcher passes --seed,
// which may override the config's), each replica logs
// what fired in faults.jsonl, and the launcher sums those logs into
// report.json's faults[].fired and judges them against FaultRule.
//
// "Fired as configured" means:
//   - a fault with a trigger fires at most once on each replica it concerns
//     (one for a replica id or "leader", the replica leading the round when
//     the trigger fires, or two for a message fault of "leader" whose
//     trigger is not round(r); one, the replica the seed picks, for "_");
//   - a fault that never fired is as configured: its message or event
//     never came (checkFaults notes why in report.json);
//   - a partition counts the messages it cut.
//
// Replicas that misbehave (config.FaultyReplicas: set_attr, equivocate,
// crash without restart; and, once they fire, crashes without restart of
// src "leader" or of a triggered "_", collectFaults) are left out of the
// ledger agreement check.

// FaultRule is, for one configured failure, how many firings are as
// configured (run.json, so that `diembft verify` judges the same way).
type FaultRule struct {
	Min int `json:"min"`
	Max int `json:"max"` // -1: no upper bound
	// FirstRound is the first round of a rounds-given fault, to explain
	// one that never fired because the run ended before.
	FirstRound uint64 `json:"first_round,omitempty"`
	Trigger    string `json:"trigger,omitempty"`
	// Replica is the one replica the fault concerns (its src, or the one
	// the seed picks for a triggered "_"), or -1 for "leader" and for "_"
	// without a trigger. Stops marks a crash without restart, Leader a crash
	// or pause of whichever replica leads (config.Failure.ActsOnLeader).
	// Picked marks a triggered fault of src "_": Replica is the replica the
	// seed picked for it (fault.AnyReplica).
	Replica int  `json:"replica"`
	Stops   bool `json:"stops,omitempty"`
	Leader  bool `json:"leader,omitempty"`
	Picked  bool `json:"picked,omitempty"`
}

// faultRules gives the rule of each of cfg's failures.
func faultRules(cfg *config.Config) []FaultRule {
	out := []FaultRule{}
	for i, f := range cfg.Failures {
		r := FaultRule{Max: -1, Replica: max(int(f.Src), -1), Stops: f.CrashForGood(), Leader: f.ActsOnLeader()}
		if f.Prob >= 1 {
			r.Min = 1
		}
		switch {
		case f.Type == config.TypePartition:
		case f.Trigger != nil:
			r.Trigger = f.Trigger.String()
			r.Max = 1
			if r.Leader && f.Trigger.Kind == config.TriggerRound {
				r.FirstRound = uint64(f.Trigger.Args[0]) // acts in that round only
			}
			switch {
			case f.Src == config.EndpointAny: // once, on the replica the seed picks
				r.Replica, r.Picked = fault.AnyReplica(cfg.Seed, i, f, cfg.NumReplicas()), true
			case f.Src == config.EndpointLeader && !r.Leader && f.Trigger.Kind != config.TriggerRound:
				// A message fault arms on the replica leading when the
				// trigger fires: the leader of r, and the leader of r+1 if
				// it already entered r+1 (node/fault fireTriggers).
				r.Max = 2
			}
		case len(f.Rounds) > 0:
			r.FirstRound = f.Rounds[0].From
			for _, rr := range f.Rounds {
				r.FirstRound = min(r.FirstRound, rr.From)
			}
		}
		out = append(out, r)
	}
	return out
}

// StoppedReplica is a replica a crash without restart (Fault, by index)
// took down in Round.
type StoppedReplica struct {
	Replica int    `json:"replica"`
	Fault   int    `json:"fault"`
	Round   uint64 `json:"round"`
}

// Notes on a fault that never fired (report.json "note"). notFired: its
// chance never came (no matching message or event, a trigger that did not
// happen, rounds the run did not reach); crashedBefore: a crash without
// restart took its replica down first.
const (
	notFired      = "did not fire: "
	crashedBefore = "could not fire: "
)

// checkFaults judges each fault of faults (the report's copy of
// info.Faults) against its rule. A fault that fired more often than its
// rule allows is a problem. One that never fired gets a note saying why,
// and is not a problem: spec §4 asks that every fault "fired as
// configured", and a fault whose message or event never came fired as
// configured zero times. Spec §2's own example drops replica 1's proposals
// in rounds 4 and 5, which replica 1 does not lead; until 2026-12-06 that
// failed the run. The scenario library still requires its faults to fire
// (runScenario).
func checkFaults(info *RunInfo, faults []FaultReport, probs *problemList) {
	stopped := map[int]StoppedReplica{}
	for _, s := range info.Stopped {
		stopped[s.Replica] = s
	}
	for i, f := range faults {
		r := FaultRule{Min: 1, Max: -1, Replica: -1} // a run.json without rules: noted if it never fired
		if i < len(info.FaultRules) {
			r = info.FaultRules[i]
		}
		if r.Max >= 0 && f.Fired > r.Max {
			probs.add("faults that fired too often", "fault %d (%s, src %s, msg %s) fired %d times; with trigger %s it fires at most %d", i, f.Type, f.Src, f.Msg, f.Fired, r.Trigger, r.Max)
			continue
		}
		if f.Fired >= r.Min {
			continue
		}
		// Excused only if its first chance came after the crash: a trigger
		// (with prob 1 it fires as soon as it matches, so it had not), or
		// rounds that start past the crash's round.
		if s, ok := stopped[r.Replica]; ok && r.Replica >= 0 && s.Fault != i && (r.Trigger != "" || r.FirstRound > s.Round) {
			faults[i].Note = fmt.Sprintf(crashedBefore+"replica %d crashed for good (fault %d, round %d) before", r.Replica, s.Fault, s.Round)
			continue
		}
		switch {
		case r.FirstRound > info.Rounds.Highest:
			faults[i].Note = fmt.Sprintf(notFired+"the run reached round %d, its first round is %d", info.Rounds.Highest, r.FirstRound)
		case r.Leader:
			faults[i].Note = notFired + "no replica led its round when it came, having entered the round by a QC (after a timeout a round has no certain leader)"
		case r.Trigger != "" && len(info.Armed[i]) > 0:
			faults[i].Note = fmt.Sprintf(notFired+"its trigger %s armed it on replica %s, and no matching message came after", r.Trigger, replicaList(info.Armed[i]))
		case r.Trigger != "" && len(info.Spent[i]) > 0:
			faults[i].Note = fmt.Sprintf(notFired+"its trigger %s came while another replica led (on replica %s)", r.Trigger, replicaList(info.Spent[i]))
		case r.Trigger != "" && r.Picked:
			faults[i].Note = fmt.Sprintf(notFired+"its trigger %s did not happen on replica %d (src \"_\": the seed picks the replica)", r.Trigger, r.Replica)
		case r.Trigger != "":
			faults[i].Note = fmt.Sprintf(notFired+"its trigger %s did not happen", r.Trigger)
		default:
			faults[i].Note = notFired + "no message or event matched it"
		}
	}
}

// clientKeyFlag writes client i's signing key (fault.ClientKey: derived from
// the seed, so that client_request(c, m) triggers can recognise client c and
// a run's ledgers are the same every time) into clients/client-<i>.key and
// returns the client flag that uses it.
func (e *experiment) clientKeyFlag(i int) string {
	path := filepath.Join(e.dir, clientsDir, fmt.Sprintf("client-%d.key", i))
	key := fault.ClientKey(e.cfg.Seed, i)
	if err := os.WriteFile(path, []byte(hex.EncodeToString(key.Seed())+"\n"), 0o600); err != nil {
		e.problem("client %d's key: %v", i, err)
		return "--key=" // a fresh key: only client_request triggers miss it
	}
	return "--key=" + path
}

// collectFaults sums every replica's faults.jsonl into info.Faults. The
// replicas a leader crash or pause hit, or a triggered "_" fault, are known
// only now: the report names them, and a replica a crash without restart
// took down joins the faulty replicas (left out of the ledger check;
// config.FaultyReplicas has those of a replica id from the start).
func (e *experiment) collectFaults() {
	if len(e.info.Faults) == 0 {
		return
	}
	var logs [][]fault.Record
	hit := map[int][]int{} // leader fault -> replicas it fired on
	e.info.Stopped = nil
	e.info.Armed, e.info.Spent = map[int][]int{}, map[int][]int{}
	for id := range e.info.Replicas {
		home := replicaHome(e.dir, id)
		recs, err := fault.ReadLog(home)
		if err != nil {
			e.problem("replica %d's %s: %v", id, fault.LogFile, err)
			continue
		}
		logs = append(logs, recs)
		for _, r := range recs {
			if r.Failure < 0 || r.Failure >= len(e.info.FaultRules) {
				continue
			}
			switch rule := e.info.FaultRules[r.Failure]; r.Ev {
			case fault.EvArm:
				addOnce(e.info.Armed, r.Failure, id)
			case fault.EvSpent:
				addOnce(e.info.Spent, r.Failure, id)
			case fault.EvFire:
				if rule.Leader {
					addOnce(hit, r.Failure, id)
				}
				if rule.Stops {
					e.info.Stopped = append(e.info.Stopped, StoppedReplica{Replica: id, Fault: r.Failure, Round: r.Round})
				}
			}
		}
	}
	for idx, n := range fault.Fired(logs...) {
		if idx < len(e.info.Faults) {
			e.info.Faults[idx].Fired = n
		}
	}
	for _, s := range e.info.Stopped {
		if !slices.Contains(e.info.Faulty, s.Replica) {
			e.info.Faulty = append(e.info.Faulty, s.Replica)
		}
	}
	slices.Sort(e.info.Faulty)
	for idx, r := range e.info.FaultRules {
		if r.Picked && idx < len(e.info.Faults) && e.info.Faults[idx].Fired > 0 {
			e.info.Faults[idx].Note = fmt.Sprintf("on replica %d, the one the seed picked for a triggered src \"_\"", r.Replica)
		}
	}
	for idx, ids := range hit {
		e.info.Faults[idx].Note = "on replica " + replicaList(ids)
	}
}

// addOnce adds id to m[k] unless it is there.
func addOnce(m map[int][]int, k, id int) {
	if !slices.Contains(m[k], id) {
		m[k] = append(m[k], id)
	}
}

// replicaList writes replica ids as "0 2 3".
func replicaList(ids []int) string { return strings.Trim(fmt.Sprint(ids), "[]") }
